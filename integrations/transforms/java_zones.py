"""Time zone offsets and short names as Java's legacy ``TimeZone`` gives them, read from tzdata.

tzdata offsets from 1900 on, the TZif footer's DST rule continued past the last listed transition,
and before 1900 the zone's current standard offset (Java does not use local mean time).
"""

from __future__ import annotations

import re
import struct
import zoneinfo
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa

from integrations.transforms.java_calendar import day_of_week, gregorian_date, gregorian_days

_UTC1900_MS = -2_208_988_800_000     # Java's TimeZone knows no offsets before 1900


@dataclass(frozen=True)
class _Rule:
    """A POSIX TZ rule (the TZif footer): how DST continues after the last listed transition."""

    std_off: int               # seconds east of UTC
    dst_off: int
    start: tuple[str, int, int, int]   # (kind, a, b, c): ("M", month, week, weekday) | ("J", n) | ("D", n)
    start_time: int            # seconds after local midnight (standard time)
    end: tuple[str, int, int, int]
    end_time: int              # seconds after local midnight (daylight time)

    def _day(self, spec, y):
        kind, a, b, c = spec
        if kind == "J":
            leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
            return gregorian_days(y, 1, 1) + a - 1 + ((a >= 60) & leap)
        if kind == "D":
            return gregorian_days(y, 1, 1) + a
        first = gregorian_days(y, a, 1)
        day = first + (c - day_of_week(first)) % 7 + 7 * (b - 1)
        if b == 5:   # the last such weekday of the month
            day = np.where(day >= gregorian_days(y + (a == 12), a % 12 + 1, 1), day - 7, day)
        return day

    def is_dst(self, utc_ms: np.ndarray) -> np.ndarray:
        """Whether the rule puts each instant in daylight time."""
        s = utc_ms // 1000
        y, _, _ = gregorian_date((s + self.std_off) // 86_400)
        start = self._day(self.start, y) * 86_400 + self.start_time - self.std_off
        end = self._day(self.end, y) * 86_400 + self.end_time - self.dst_off
        after_start, before_end = s >= start, s < end
        return np.where(start < end, after_start & before_end, after_start | before_end)


@dataclass(frozen=True, eq=False)
class JavaZone:
    """Offsets and names of a time zone as Java's ``TimeZone.getTimeZone(id)`` sees them."""

    raw_ms: int                # the current standard offset (Java uses it before 1900)
    std_name: str
    dst_name: str
    trans_ms: np.ndarray       # transition instants (int64 ms), ascending
    trans_type: np.ndarray     # the local time type from each transition on
    type_off_ms: np.ndarray    # per type: offset (ms) and DST flag and abbreviation
    type_dst: np.ndarray
    type_names: tuple[str, ...]
    rule: _Rule | None         # after the last transition; None: the last type stays

    def offsets(self, utc_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offset ms, is-DST, zone name index into ``names``) of each instant."""
        n = len(utc_ms)
        off = np.full(n, self.raw_ms, dtype=np.int64)
        dst = np.zeros(n, dtype=bool)
        type_idx = np.full(n, -1, dtype=np.int64)
        if len(self.type_off_ms):
            if len(self.trans_ms):
                pos = np.searchsorted(self.trans_ms, utc_ms, side="right") - 1
                typ = np.where(pos >= 0, self.trans_type[np.maximum(pos, 0)], 0)
            else:
                typ = np.zeros(n, dtype=np.int64)
            listed = utc_ms >= _UTC1900_MS
            if self.rule is not None:
                listed &= utc_ms < (self.trans_ms[-1] if len(self.trans_ms) else np.iinfo(np.int64).min)
            off = np.where(listed, self.type_off_ms[typ], off)
            dst = np.where(listed, self.type_dst[typ], dst)
            type_idx = np.where(listed, typ, -1)
            if self.rule is not None:
                ruled = ~listed & (utc_ms >= _UTC1900_MS)
                if ruled.any():
                    rdst = self.rule.is_dst(utc_ms)
                    off = np.where(ruled, np.where(rdst, self.rule.dst_off, self.rule.std_off) * 1000, off)
                    dst = np.where(ruled, rdst, dst)
        # Java's short names depend only on the DST flag: the zone's standard or daylight name
        # (a daylight time in a zone that no longer has one keeps tzdata's abbreviation)
        name = np.where(dst, 1, 0)
        if not self.dst_name:
            name = np.where(dst & (type_idx >= 0), 2 + type_idx, name)
        return off, dst, name

    @cached_property
    def names(self) -> pa.Array:
        """Zone names: standard, daylight, then each tzdata type's abbreviation."""
        return pa.array([self.std_name, self.dst_name, *self.type_names], pa.string())


_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
_POSIX_TIME = r"[+-]?\d{1,3}(?::\d{1,2}){0,2}"
_POSIX_RE = re.compile(
    rf"^(?P<std><[^>]+>|[A-Za-z]{{3,}})(?P<stdoff>{_POSIX_TIME})"
    rf"(?:(?P<dst><[^>]+>|[A-Za-z]{{3,}})(?P<dstoff>{_POSIX_TIME})?"
    rf"(?:,(?P<start>[^,/]+)(?:/(?P<stime>{_POSIX_TIME}))?,(?P<end>[^,/]+)(?:/(?P<etime>{_POSIX_TIME}))?)?)?$")


def _hms(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    return sign * sum(p * f for p, f in zip(parts, (3600, 60, 1), strict=False))


def _rule_date(text: str) -> tuple[str, int, int, int]:
    if text.startswith("M"):
        m, w, d = (int(p) for p in text[1:].split("."))
        return "M", m, w, d
    if text.startswith("J"):
        return "J", int(text[1:]), 0, 0
    return "D", int(text), 0, 0


def _parse_footer(footer: str) -> tuple[str, int, str, _Rule | None]:
    m = _POSIX_RE.match(footer)
    if not m:
        raise ValueError(f"unsupported TZ rule {footer!r}")
    std_name, std_off = m["std"].strip("<>"), -_hms(m["stdoff"])
    if not m["dst"]:
        return std_name, std_off, "", None
    dst_off = -_hms(m["dstoff"]) if m["dstoff"] else std_off + 3600
    start, end = (m["start"], m["end"]) if m["start"] else ("M3.2.0", "M11.1.0")
    rule = _Rule(std_off, dst_off, _rule_date(start), _hms(m["stime"]) if m["stime"] else 7200,
                 _rule_date(end), _hms(m["etime"]) if m["etime"] else 7200)
    return std_name, std_off, m["dst"].strip("<>"), rule


def _tzif_bytes(name: str) -> bytes:
    if ".." in name.split("/") or name.startswith("/"):
        raise ValueError(f"unknown time zone {name!r}")
    for root in zoneinfo.TZPATH:
        path = Path(root) / name
        if path.is_file():
            return path.read_bytes()
    try:
        return resources.files("tzdata.zoneinfo").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        raise ValueError(f"unknown time zone {name!r} (no tzdata file for it)") from None


def _read_tzif(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str]:
    """Transitions, their types, the types' offsets/DST flags/abbreviations and the footer of a TZif file."""
    if data[:4] != b"TZif":
        raise ValueError("not a TZif file")

    def header(at: int) -> tuple[int, ...]:
        return struct.unpack(">6l", data[at + 20:at + 44])

    isut, isstd, leap, timecnt, typecnt, charcnt = header(0)
    at, tsize = 44, 4
    if data[4:5] >= b"2":   # skip the 32-bit block; read the 64-bit one and the footer
        at += timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
        isut, isstd, leap, timecnt, typecnt, charcnt = header(at)
        at, tsize = at + 44, 8
    trans = np.frombuffer(data, dtype=">i8" if tsize == 8 else ">i4", count=timecnt, offset=at).astype(np.int64)
    at += timecnt * tsize
    types = np.frombuffer(data, dtype=np.uint8, count=timecnt, offset=at).astype(np.int64)
    at += timecnt
    infos = [struct.unpack(">lBB", data[at + 6 * k:at + 6 * k + 6]) for k in range(typecnt)]
    at += typecnt * 6
    chars = data[at:at + charcnt]
    at += charcnt + leap * (tsize + 4) + isstd + isut
    footer = ""
    if tsize == 8 and data[at:at + 1] == b"\n":
        footer = data[at + 1:data.index(b"\n", at + 1)].decode("ascii")
    names = tuple(chars[i:chars.index(b"\0", i)].decode("ascii") for _, _, i in infos)
    limit = np.iinfo(np.int64).max // 1000
    return (np.clip(trans, -limit, limit) * 1000, types,
            np.array([o * 1000 for o, _, _ in infos], dtype=np.int64),
            np.array([bool(d) for _, d, _ in infos], dtype=bool), names, footer)


@lru_cache(maxsize=64)
def java_zone(tz: str) -> JavaZone:
    """The zone Java's ``TimeZone.getTimeZone`` gives for a tz name or ``±hh:mm``; ValueError if unknown."""
    empty = np.zeros(0, dtype=np.int64)
    if tz in ("UTC", "Etc/UTC"):
        return JavaZone(0, "UTC", "", empty, empty, empty, np.zeros(0, dtype=bool), (), None)
    m = _OFFSET_RE.match(tz)
    if m:   # a fixed offset; Java's custom zone "GMT+hh:mm"
        off = (1 if m[1] == "+" else -1) * (int(m[2]) * 3600 + int(m[3]) * 60) * 1000
        return JavaZone(off, f"GMT{m[1]}{m[2]}:{m[3]}", "", empty, empty, empty, np.zeros(0, dtype=bool), (), None)
    trans, types, offs, dsts, names, footer = _read_tzif(_tzif_bytes(tz))
    rule = None
    if footer:
        std_name, std_off, dst_name, rule = _parse_footer(footer)
        if rule is not None and rule.dst_off < rule.std_off:
            # negative DST (Europe/Dublin: IST in summer is "standard", GMT in winter "daylight"):
            # Java's tzdb has the older view, summer time is daylight time
            rule = _Rule(rule.dst_off, rule.std_off, rule.end, rule.end_time, rule.start, rule.start_time)
            std_name, dst_name, std_off = dst_name, std_name, rule.std_off
            dsts = offs > std_off * 1000
        raw = std_off * 1000
    else:   # a file without a rule (TZif version 1): the last local time type stays
        last = int(types[-1]) if len(types) else 0
        raw, std_name, dst_name = int(offs[last]), names[last], ""
    return JavaZone(raw, std_name, dst_name, trans, types, offs, dsts, names, rule)
