"""Java ``SimpleDateFormat`` patterns, formatted and parsed over whole Arrow arrays as Java does.

Kafka Connect's TimestampConverter and TimestampRouter use ``java.text.SimpleDateFormat`` with the
JVM's default locale (en_US here) and a ``GregorianCalendar``. This module reproduces that, letter
for letter, with numpy integer arithmetic and ``pyarrow.compute`` string kernels; nothing runs per
row in Python:

* **Calendar.** Java's calendar is hybrid: Julian before 1582-10-15, Gregorian from then on, with
  Java's day-of-year, week and week-year rules across the switch. Years before 1 are era ``BC``.
* **Weeks.** ``w``, ``W``, ``Y`` and ``F`` follow the en_US week: it starts on Sunday and week 1 is
  the week that holds January 1 (not ISO 8601).
* **Numbers** are padded to the run length (``d`` → ``1``, ``dd`` → ``01``); ``yy`` and ``YY`` keep
  two digits. ``S`` is the millisecond count padded to the run length, not a decimal fraction.
* **Time zones.** UTC, or the zone the timestamp column carries, with Java's legacy ``TimeZone``
  rules: tzdata offsets from 1900 on, DST rules continued past the last listed transition, and
  before 1900 the zone's current standard offset (Java does not use local mean time).
  ``z`` prints the zone's standard or daylight abbreviation.

Parsing follows ``SimpleDateFormat.parse`` in lenient mode, in UTC unless the text carries an
offset: numbers may be shorter or longer than the run (only abutting numeric fields are bounded by
their run length), spaces and tabs before a number or zone are skipped, names are case-insensitive,
out-of-range values roll over (``2024-02-30`` is March 1) and text after the pattern is ignored.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import zoneinfo
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Java's pattern letters (DateFormatSymbols.patternChars); every one is supported for formatting
PATTERN_LETTERS = "GyMdkHmsSEDFwWahKzZYuXL"
SUPPORTED_LETTERS = "".join(sorted(PATTERN_LETTERS))
# Letters whose fields decide a date only through Java's week-date resolution: refused when parsing
_UNPARSEABLE = "YwWF"

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_SHORT_MONTHS = [m[:3] for m in _MONTHS]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_SHORT_DAYS = [d[:3] for d in _DAYS]
_AMPM = ["AM", "PM"]
_ERAS = ["BC", "AD"]

_DAY_MS = 86_400_000
_CUTOVER_DAY = -141_427              # 1582-10-15, the first Gregorian day, in days since 1970-01-01
_FIRST_DAY_OF_WEEK = 0               # Sunday (days are numbered Sunday = 0 … Saturday = 6)
_MIN_DAYS_IN_FIRST_WEEK = 1          # en_US: week 1 is the week that holds January 1
_UTC1900_MS = -2_208_988_800_000     # Java's TimeZone knows no offsets before 1900


# --- patterns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A run of one pattern letter (``letter``, ``count``) or literal ``text`` (``letter`` is empty)."""

    letter: str
    count: int = 0
    text: str = ""


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> tuple[Token, ...]:
    """Split a SimpleDateFormat pattern into letter runs and literal text, as Java compiles it.

    ``'text'`` is literal and ``''`` is a single quote, inside quoted text too. Other characters
    than ASCII letters are literal. Raises ValueError for an unknown letter, an unterminated quote,
    ``X`` longer than 3 and ``zzzz`` (long zone names, which need Java's locale data).
    """
    tokens: list[Token] = []
    lit: list[str] = []

    def flush() -> None:
        if lit:
            tokens.append(Token("", 0, "".join(lit)))
            lit.clear()

    i, n, in_quote = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                lit.append("'")
                i += 2
            else:
                in_quote = not in_quote
                i += 1
            continue
        if in_quote or not ("a" <= ch <= "z" or "A" <= ch <= "Z"):
            lit.append(ch)
            i += 1
            continue
        if ch not in PATTERN_LETTERS:
            raise ValueError(f"format {pattern!r}: pattern letter {ch!r} is not supported (not a SimpleDateFormat letter); "
                             f"supported: {', '.join(SUPPORTED_LETTERS)} and 'quoted text'")
        j = i
        while j < n and pattern[j] == ch:
            j += 1
        count = j - i
        if ch == "X" and count > 3:
            raise ValueError(f"format {pattern!r}: {ch * count} is not valid; use X, XX or XXX")
        if ch == "z" and count > 3:
            raise ValueError(f"format {pattern!r}: long time zone names ({ch * count}) are not supported; "
                             "use z for the short name, or Z/X for the offset")
        flush()
        tokens.append(Token(ch, count))
        i = j
    if in_quote:
        raise ValueError(f"format {pattern!r}: unterminated quote")
    flush()
    return tuple(tokens)


# Config validation calls this name.
java_to_strftime = compile_pattern


# --- calendar arithmetic (numpy int64, days since 1970-01-01) --------------------------------


def _gregorian_days(y, m, d):
    """Days since 1970-01-01 of proleptic Gregorian dates (m 1–12, d may overflow)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def _julian_days(y, m, d):
    """Days since 1970-01-01 of Julian calendar dates (m 1–12, d may overflow)."""
    y = y - (m <= 2)
    era = y // 4
    yoe = y - era * 4
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 1461 + yoe * 365 + doy - 719_470


def _civil(doe, yoe, era_years):
    """Year, month, day from the day and year of a March-based era (shared by both calendars)."""
    doy = doe - yoe
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return era_years + (m <= 2), m, d


def _gregorian_date(days):
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y, m, d = _civil(doe, 365 * yoe + yoe // 4 - yoe // 100, yoe + era * 400)
    return y, m, d


def _julian_date(days):
    z = days + 719_470
    era = z // 1461
    doe = z - era * 1461
    yoe = (doe - doe // 1460) // 365
    return _civil(doe, 365 * yoe, yoe + era * 4)


def _hybrid_date(days):
    """Java's GregorianCalendar date (proleptic year: 0 is 1 BC) of each day number."""
    greg = days >= _CUTOVER_DAY
    if greg.all():
        return _gregorian_date(days)
    gy, gm, gd = _gregorian_date(days)
    jy, jm, jd = _julian_date(days)
    return np.where(greg, gy, jy), np.where(greg, gm, jm), np.where(greg, gd, jd)


def _first_of_month(y, m):
    """Day number of the 1st of (y, m) in the calendar Java counts that month in (Julian up to Oct 1582)."""
    julian = (y < 1582) | ((y == 1582) & (m <= 10))
    return np.where(julian, _julian_days(y, m, 1), _gregorian_days(y, m, 1))


def _weekday(days):
    """Sunday = 0 … Saturday = 6 (1970-01-01 was a Thursday)."""
    return (days + 4) % 7


def _week_number(day1, days):
    """Java's GregorianCalendar.getWeekNumber: the week of ``days`` in the period starting on ``day1``."""
    first = day1 + 6 - (_weekday(day1 + 6) - _FIRST_DAY_OF_WEEK) % 7
    first = np.where(first - day1 >= _MIN_DAYS_IN_FIRST_WEEK, first - 7, first)
    return (days - first) // 7 + 1


# --- time zones ------------------------------------------------------------------------------


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
            return _gregorian_days(y, 1, 1) + a - 1 + ((a >= 60) & leap)
        if kind == "D":
            return _gregorian_days(y, 1, 1) + a
        first = _gregorian_days(y, a, 1)
        day = first + (c - _weekday(first)) % 7 + 7 * (b - 1)
        if b == 5:   # the last such weekday of the month
            day = np.where(day >= _gregorian_days(y + (a == 12), a % 12 + 1, 1), day - 7, day)
        return day

    def is_dst(self, utc_ms):
        s = utc_ms // 1000
        y, _, _ = _gregorian_date((s + self.std_off) // 86_400)
        start = self._day(self.start, y) * 86_400 + self.start_time - self.std_off
        end = self._day(self.end, y) * 86_400 + self.end_time - self.dst_off
        after_start, before_end = s >= start, s < end
        return np.where(start < end, after_start & before_end, after_start | before_end)


@dataclass(frozen=True, eq=False)
class _Zone:
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

    def offsets(self, utc_ms):
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
def _zone(tz: str) -> _Zone:
    empty = np.zeros(0, dtype=np.int64)
    if tz in ("UTC", "Etc/UTC"):
        return _Zone(0, "UTC", "", empty, empty, empty, np.zeros(0, dtype=bool), (), None)
    m = _OFFSET_RE.match(tz)
    if m:   # a fixed offset; Java's custom zone "GMT+hh:mm"
        off = (1 if m[1] == "+" else -1) * (int(m[2]) * 3600 + int(m[3]) * 60) * 1000
        return _Zone(off, f"GMT{m[1]}{m[2]}:{m[3]}", "", empty, empty, empty, np.zeros(0, dtype=bool), (), None)
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
    return _Zone(raw, std_name, dst_name, trans, types, offs, dsts, names, rule)


# --- formatting ------------------------------------------------------------------------------


def _epoch_millis(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Epoch milliseconds (floored) of a timestamp array, nulls as 0, and the validity mask (or None)."""
    raw = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    unit = arr.type.unit
    ms = raw * 1000 if unit == "s" else raw // {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    return ms, valid


class _Fields:
    """Java's calendar fields of each instant, computed on first use."""

    def __init__(self, utc_ms: np.ndarray, zone: _Zone):
        self.utc_ms, self.zone = utc_ms, zone

    @cached_property
    def zone_fields(self):
        return self.zone.offsets(self.utc_ms)

    @cached_property
    def offset_ms(self):
        return self.zone_fields[0]

    @cached_property
    def local_ms(self):
        return self.utc_ms + self.offset_ms

    @cached_property
    def days(self):
        return self.local_ms // _DAY_MS

    @cached_property
    def ms_of_day(self):
        return self.local_ms - self.days * _DAY_MS

    @cached_property
    def date(self):
        return _hybrid_date(self.days)

    @property
    def year(self):        # proleptic: 0 is 1 BC
        return self.date[0]

    @property
    def month(self):
        return self.date[1]

    @property
    def day(self):
        return self.date[2]

    @cached_property
    def weekday(self):
        return _weekday(self.days)

    @cached_property
    def jan1(self):
        return _first_of_month(self.year, 1)

    @cached_property
    def month1(self):
        return _first_of_month(self.year, self.month)

    @cached_property
    def week_of_year(self):
        week = _week_number(self.jan1, self.days)
        prev = _week_number(_first_of_month(self.year - 1, 1), self.days)
        next_jan1 = _first_of_month(self.year + 1, 1)
        next_first = next_jan1 + 6 - (_weekday(next_jan1 + 6) - _FIRST_DAY_OF_WEEK) % 7
        # Java checks weeks 52+ only, except in 1581 and 1582 (the short year 1582 has 51 weeks)
        may_be_next = (week >= 52) | (self.year == 1581) | (self.year == 1582)
        in_next = may_be_next & (next_first - next_jan1 >= _MIN_DAYS_IN_FIRST_WEEK) & (self.days >= next_first - 7)
        return np.where(week == 0, prev, np.where(in_next, 1, week))

    @cached_property
    def week_year(self):
        w = self.week_of_year
        return self.year + ((self.month != 1) & (w == 1)) - ((self.month == 1) & (w >= 52))

    @cached_property
    def hour(self):
        return self.ms_of_day // 3_600_000


def _text(names: list[str] | pa.Array, idx: np.ndarray) -> pa.Array:
    return pc.take(names if isinstance(names, pa.Array) else pa.array(names, pa.string()), pa.array(idx))


def _number(values: np.ndarray, width: int, two_digits: bool = False) -> pa.Array:
    """Java's zeroPaddingNumber: at least ``width`` digits (exactly 2 for yy/YY), a '-' for negatives."""
    mag = np.abs(values)
    if two_digits:
        mag, width = mag % 100, 2
    out = pa.array(mag).cast(pa.string())
    if width > 1:
        out = pc.utf8_lpad(out, width, "0")
    if (values < 0).any():
        out = pc.binary_join_element_wise(_text(["", "-"], (values < 0).astype(np.int64)), out, "")
    return out


def _zone_value(f: _Fields, letter: str, count: int) -> pa.Array:
    off = f.offset_ms
    minutes = np.abs(off) // 60_000        # Java truncates toward zero, then prints the sign
    sign = _text(["+", "-"], (off < 0).astype(np.int64))
    hh = _number(minutes // 60, 2)
    mm = _number(minutes % 60, 2)
    if letter == "Z":
        return pc.binary_join_element_wise(sign, hh, mm, "")
    parts = [sign, hh] if count == 1 else [sign, hh, mm] if count == 2 else [sign, hh, pa.scalar(":"), mm]
    iso = pc.binary_join_element_wise(*parts, "")
    return pc.if_else(pa.array(off == 0), pa.scalar("Z"), iso)


def _format_field(f: _Fields, letter: str, n: int) -> pa.Array:
    if letter == "G":
        return _text(_ERAS, (f.year >= 1).astype(np.int64))
    if letter == "y":
        return _number(np.where(f.year >= 1, f.year, 1 - f.year), n, n == 2)
    if letter == "Y":
        return _number(f.week_year, n, n == 2)
    if letter in "ML":
        if n >= 3:
            return _text(_MONTHS if n >= 4 else _SHORT_MONTHS, f.month - 1)
        return _number(f.month, n)
    if letter == "d":
        return _number(f.day, n)
    if letter == "D":
        return _number(f.days - f.jan1 + 1, n)
    if letter == "F":
        return _number((f.days - f.month1) // 7 + 1, n)
    if letter == "w":
        return _number(f.week_of_year, n)
    if letter == "W":
        return _number(_week_number(f.month1, f.days), n)
    if letter == "E":
        return _text(_DAYS if n >= 4 else _SHORT_DAYS, f.weekday)
    if letter == "u":
        return _number(np.where(f.weekday == 0, 7, f.weekday), n)
    if letter == "a":
        return _text(_AMPM, (f.hour >= 12).astype(np.int64))
    if letter == "H":
        return _number(f.hour, n)
    if letter == "k":
        return _number(np.where(f.hour == 0, 24, f.hour), n)
    if letter == "K":
        return _number(f.hour % 12, n)
    if letter == "h":
        return _number(np.where(f.hour % 12 == 0, 12, f.hour % 12), n)
    if letter == "m":
        return _number(f.ms_of_day // 60_000 % 60, n)
    if letter == "s":
        return _number(f.ms_of_day // 1000 % 60, n)
    if letter == "S":
        return _number(f.ms_of_day % 1000, n)
    if letter == "z":
        return _text(f.zone.names, f.zone_fields[2])
    return _zone_value(f, letter, n)   # Z, X


def _join(parts: list, n: int) -> pa.Array:
    arrays = [p for p in parts if isinstance(p, pa.Array)]
    if not arrays:
        return pa.array(["".join(parts)] * n, pa.string())
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*[p if isinstance(p, pa.Array) else pa.scalar(p) for p in parts], "")


def _format_array(arr: pa.Array, tokens: tuple[Token, ...]) -> pa.Array:
    ms, valid = _epoch_millis(arr)
    f = _Fields(ms, _zone(arr.type.tz or "UTC"))
    out = _join([t.text if not t.letter else _format_field(f, t.letter, t.count) for t in tokens], len(arr))
    if valid is not None:
        out = pc.if_else(pa.array(valid), out, pa.scalar(None, pa.string()))
    return out


def format_timestamps(ts: pa.Array | pa.ChunkedArray, pattern: str) -> pa.Array | pa.ChunkedArray:
    """Format a timestamp column with a SimpleDateFormat pattern, in its time zone (UTC without one).

    Vectorised; nulls stay null. Finer units than milliseconds are floored to milliseconds, as
    Java's ``Date`` holds them.
    """
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"expected a timestamp column, got {ts.type}")
    tokens = compile_pattern(pattern)
    if isinstance(ts, pa.ChunkedArray):
        return pa.chunked_array([_format_array(c, tokens) for c in ts.chunks], pa.string())
    return _format_array(ts, tokens)


# --- parsing ---------------------------------------------------------------------------------

_NUMERIC = set("yYdkHmsSDFwWhKu")
# the calendar field each letter sets (Java resolves conflicting fields by the latest one set)
_FIELD = {"G": "era", "y": "year", "M": "month", "L": "month", "d": "day", "D": "day_of_year", "E": "weekday",
          "u": "weekday", "a": "ampm", "H": "hour_of_day", "k": "hour_of_day", "h": "hour", "K": "hour",
          "m": "minute", "s": "second", "S": "millis", "z": "zone", "Z": "zone", "X": "zone"}


def _is_numeric(t: Token) -> bool:
    return bool(t.letter) and (t.letter in _NUMERIC or (t.letter in "ML" and t.count <= 2))


def _names_regex(names: list[str]) -> str:
    return "(?i:" + "|".join(sorted(names, key=len, reverse=True)) + ")"


def _literal_regex(text: str) -> str:
    return "".join(c if c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


_ZONE_RE = {  # groups: sign, hours and minutes (suffix 1: after GMT, 2: bare); GMT, UTC and Z alone are 0
    "Z": r"(?i:GMT)(?:(?P<{g}s1>[+-])(?P<{g}h1>2[0-3]|[01]?\d):(?P<{g}m1>[0-5]\d))?|(?i:UTC)"
         r"|(?P<{g}s2>[+-])(?P<{g}h2>[01]\d|2[0-3])(?P<{g}m2>[0-5]\d)",
    "X1": r"Z|(?P<{g}s2>[+-])(?P<{g}h2>[01]\d|2[0-3])",
    "X2": r"Z|(?P<{g}s2>[+-])(?P<{g}h2>[01]\d|2[0-3])(?P<{g}m2>[0-5]\d)",
    "X3": r"Z|(?P<{g}s2>[+-])(?P<{g}h2>[01]\d|2[0-3]):(?P<{g}m2>[0-5]\d)",
}


@dataclass(frozen=True)
class _ParsePlan:
    regex: str
    fields: dict[str, tuple[str, Token]]   # calendar field → (group, token) of its latest setting
    order: dict[str, int]                  # calendar field → position of its latest setting


@lru_cache(maxsize=256)
def _parse_plan(pattern: str) -> _ParsePlan:
    tokens = compile_pattern(pattern)
    bad = sorted({t.letter for t in tokens if t.letter and t.letter in _UNPARSEABLE})
    if bad:
        raise ValueError(f"format {pattern!r}: strings with {', '.join(bad)} (week-based fields) cannot be parsed; "
                         "use y, M and d (or D) for the date")
    regex, fields, order = ["^"], {}, {}
    for i, t in enumerate(tokens):
        if not t.letter:
            regex.append(_literal_regex(t.text))
            continue
        g = f"f{i}"
        if _is_numeric(t):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            digits = rf"\d{{1,{t.count}}}" if nxt is not None and nxt.letter and _is_numeric(nxt) else r"\d+"
            regex.append(rf"[ \t]*(?P<{g}>{digits})")
        elif t.letter in "ML":
            regex.append(f"(?P<{g}>{_names_regex(_MONTHS + _SHORT_MONTHS)})")
        elif t.letter == "E":
            regex.append(f"(?P<{g}>{_names_regex(_DAYS + _SHORT_DAYS)})")
        elif t.letter == "a":
            regex.append(f"(?P<{g}>{_names_regex(_AMPM)})")
        elif t.letter == "G":
            regex.append(f"(?P<{g}>{_names_regex(_ERAS)})")
        else:   # z, Z, X
            key = "Z" if t.letter in "zZ" else f"X{t.count}"
            regex.append(r"[ \t]*(?:" + _ZONE_RE[key].format(g=g) + ")")
        fields[_FIELD[t.letter]] = (g, t)
        order[_FIELD[t.letter]] = i
    if "weekday" in fields and "day" not in fields and "day_of_year" not in fields:
        raise ValueError(f"format {pattern!r}: a day name (E or u) without d or D cannot be parsed")
    return _ParsePlan("".join(regex), fields, order)


def _int_field(groups: pa.StructArray, name: str) -> np.ndarray:
    text = groups.field(name)   # a group that took no part in the match is ""
    text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar("0"), text)
    return pc.cast(text, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)


def _name_index(groups: pa.StructArray, name: str, names: list[str], modulo: int) -> np.ndarray:
    idx = pc.index_in(pc.utf8_lower(groups.field(name)), value_set=pa.array([s.lower() for s in names]))
    return idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) % modulo


def _century_start() -> tuple[int, int]:
    """Java's defaultCenturyStart (80 years before now) as (year, epoch ms)."""
    now = dt.datetime.now(dt.UTC)
    try:
        start = now.replace(year=now.year - 80)
    except ValueError:   # February 29
        start = now.replace(year=now.year - 80, day=28)
    return start.year, int(start.timestamp() * 1000)


def _parse_array(values: pa.Array, plan: _ParsePlan, pattern: str) -> pa.Array:
    groups = pc.extract_regex(values, plan.regex)
    failed = pc.and_(values.is_valid(), groups.is_null())
    if pc.any(failed).as_py():
        bad = values.filter(failed)[0].as_py()
        raise ValueError(f"could not parse {bad!r} with format {pattern!r}")
    f, n = plan.fields, len(values)
    zeros = np.zeros(n, dtype=np.int64)

    def num(field: str, default: int = 0) -> np.ndarray:
        return _int_field(groups, f[field][0]) if field in f else np.full(n, default, dtype=np.int64)

    # time of day: HOUR_OF_DAY, or HOUR (+ AM_PM), whichever was set last (GregorianCalendar.computeTime)
    o = plan.order
    hour_stamp = max(o["hour"], o["ampm"]) if "hour" in o and "ampm" in o else -1
    if "hour_of_day" in o and o["hour_of_day"] > hour_stamp:
        hours = num("hour_of_day")
        if f["hour_of_day"][1].letter == "k":
            hours = np.where(hours == 24, 0, hours)
    else:
        hours = num("hour")
        if "hour" in f and f["hour"][1].letter == "h":
            hours = np.where(hours == 12, 0, hours)
        if "ampm" in f:
            hours = hours + 12 * _name_index(groups, f["ampm"][0], _AMPM, 2)
    tod = ((hours * 60 + num("minute")) * 60 + num("second")) * 1000 + num("millis")
    extra_days = tod // _DAY_MS
    tod = tod - extra_days * _DAY_MS

    by_day_of_year = "day_of_year" in o and o["day_of_year"] > o.get("day", -1)
    if "month" in f:
        tok = f["month"][1]
        month0 = (_name_index(groups, f["month"][0], _MONTHS + _SHORT_MONTHS, 12) if tok.count >= 3
                  else num("month") - 1)
    else:
        month0 = zeros

    def utc_millis(year: np.ndarray) -> np.ndarray:
        if "era" in f:
            year = np.where(_name_index(groups, f["era"][0], _ERAS, 2) == 0, 1 - year, year)
        if by_day_of_year:
            yy, mm, dd = year, np.ones(n, dtype=np.int64), num("day_of_year")
        else:
            yy, mm, dd = year + month0 // 12, month0 % 12 + 1, num("day", 1)
        gfd = _gregorian_days(yy, mm, 1) + dd - 1 + extra_days
        jfd = _julian_days(yy, mm, 1) + dd - 1 + extra_days
        gregorian = ((year > 1582) | ((year == 1582) & (not by_day_of_year))) & (gfd >= _CUTOVER_DAY)
        return np.where(gregorian, gfd, jfd) * _DAY_MS + tod - zone_ms

    zone_ms = zeros
    if "zone" in f:   # ZONE_OFFSET from the latest zone field; "GMT", "UTC" and "Z" are 0
        g, present = f["zone"][0], {groups.type.field(j).name for j in range(groups.type.num_fields)}
        for k in ("1", "2"):
            if f"{g}s{k}" not in present:
                continue
            sign = groups.field(f"{g}s{k}").fill_null("").to_numpy(zero_copy_only=False)
            minutes = _int_field(groups, f"{g}h{k}") * 60
            if f"{g}m{k}" in present:
                minutes = minutes + _int_field(groups, f"{g}m{k}")
            signed = np.where(sign == "-", -minutes, np.where(sign == "+", minutes, 0))
            zone_ms = zone_ms + signed * 60_000

    year = num("year", 1970)
    out = utc_millis(year)
    ytok = f.get("year", (None, None))[1]
    if ytok is not None and ytok.count <= 2:
        # Java's two-digit years: 00-99 land in the century that starts 80 years ago
        text = pc.utf8_trim(groups.field(f["year"][0]), " \t")
        two = (pc.utf8_length(text).fill_null(0).to_numpy(zero_copy_only=False) == 2)
        if two.any():
            start_year, start_ms = _century_start()
            ambiguous = start_year % 100
            full = year + (start_year // 100) * 100 + np.where(year < ambiguous, 100, 0)
            adjusted = utc_millis(full)
            adjusted = np.where((year == ambiguous) & (adjusted < start_ms), utc_millis(full + 100), adjusted)
            out = np.where(two, adjusted, out)
    result = pa.array(out, pa.int64(), mask=~values.is_valid().to_numpy(zero_copy_only=False))
    return result.cast(pa.timestamp("ms", tz="UTC"))


def parse_timestamps(values: pa.Array | pa.ChunkedArray, pattern: str, unit: str = "ms") -> pa.Array | pa.ChunkedArray:
    """Parse strings with a SimpleDateFormat pattern into UTC timestamps, as Java's lenient parse does.

    Vectorised (one regular expression over the column, then integer arithmetic). Raises
    ValueError naming the first string that does not match, and for patterns whose date depends
    on week fields (``Y``, ``w``, ``W``, ``F``).
    """
    plan = _parse_plan(pattern)
    if isinstance(values, pa.ChunkedArray):
        chunks = [_parse_array(c, plan, pattern) for c in values.chunks]
        out = pa.chunked_array(chunks, pa.timestamp("ms", tz="UTC"))
    else:
        out = _parse_array(values, plan, pattern)
    return out.cast(pa.timestamp(unit, tz="UTC")) if unit != "ms" else out
