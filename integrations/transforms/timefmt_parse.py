"""Parsing strings with a SimpleDateFormat pattern into UTC timestamps, as Java's lenient parse does.

In UTC unless the text carries an offset: numbers may be shorter or longer than the run (only
abutting numeric fields are bounded by their run length), spaces and tabs before a number or zone
are skipped, names are case-insensitive, out-of-range values roll over (``2024-02-30`` is March 1)
and text after the pattern is ignored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.java_calendar import CUTOVER_DAY, DAY_MS, gregorian_days, julian_days
from integrations.transforms.timefmt_pattern import (
    AMPM,
    DAYS,
    ERAS,
    MONTHS,
    SHORT_DAYS,
    SHORT_MONTHS,
    UNPARSEABLE,
    Token,
    compile_pattern,
)

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
    bad = sorted({t.letter for t in tokens if t.letter and t.letter in UNPARSEABLE})
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
            regex.append(f"(?P<{g}>{_names_regex(MONTHS + SHORT_MONTHS)})")
        elif t.letter == "E":
            regex.append(f"(?P<{g}>{_names_regex(DAYS + SHORT_DAYS)})")
        elif t.letter == "a":
            regex.append(f"(?P<{g}>{_names_regex(AMPM)})")
        elif t.letter == "G":
            regex.append(f"(?P<{g}>{_names_regex(ERAS)})")
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
            hours = hours + 12 * _name_index(groups, f["ampm"][0], AMPM, 2)
    tod = ((hours * 60 + num("minute")) * 60 + num("second")) * 1000 + num("millis")
    extra_days = tod // DAY_MS
    tod = tod - extra_days * DAY_MS

    by_day_of_year = "day_of_year" in o and o["day_of_year"] > o.get("day", -1)
    if "month" in f:
        tok = f["month"][1]
        month0 = (_name_index(groups, f["month"][0], MONTHS + SHORT_MONTHS, 12) if tok.count >= 3
                  else num("month") - 1)
    else:
        month0 = zeros

    def utc_millis(year: np.ndarray) -> np.ndarray:
        if "era" in f:
            year = np.where(_name_index(groups, f["era"][0], ERAS, 2) == 0, 1 - year, year)
        if by_day_of_year:
            yy, mm, dd = year, np.ones(n, dtype=np.int64), num("day_of_year")
        else:
            yy, mm, dd = year + month0 // 12, month0 % 12 + 1, num("day", 1)
        gfd = gregorian_days(yy, mm, 1) + dd - 1 + extra_days
        jfd = julian_days(yy, mm, 1) + dd - 1 + extra_days
        gregorian = ((year > 1582) | ((year == 1582) & (not by_day_of_year))) & (gfd >= CUTOVER_DAY)
        return np.where(gregorian, gfd, jfd) * DAY_MS + tod - zone_ms

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
