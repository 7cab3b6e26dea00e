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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.java_calendar import CalendarFields, week_number
from integrations.transforms.java_zones import java_zone
from integrations.transforms.timefmt_parse import parse_timestamps
from integrations.transforms.timefmt_pattern import (
    AMPM,
    DAYS,
    ERAS,
    MONTHS,
    PATTERN_LETTERS,
    SHORT_DAYS,
    SHORT_MONTHS,
    SUPPORTED_LETTERS,
    Token,
    compile_pattern,
)

__all__ = ["PATTERN_LETTERS", "SUPPORTED_LETTERS", "Token", "compile_pattern", "format_timestamps",
           "java_to_strftime", "parse_timestamps"]

# Legacy name for compile_pattern, kept for callers outside this package.
java_to_strftime = compile_pattern


def _epoch_millis(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Epoch milliseconds (floored) of a timestamp array, nulls as 0, and the validity mask (or None)."""
    raw = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    unit = arr.type.unit
    ms = raw * 1000 if unit == "s" else raw // {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    return ms, valid


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


def _zone_value(f: CalendarFields, letter: str, count: int) -> pa.Array:
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


def _format_field(f: CalendarFields, letter: str, n: int) -> pa.Array:
    if letter == "G":
        return _text(ERAS, (f.year >= 1).astype(np.int64))
    if letter == "y":
        return _number(np.where(f.year >= 1, f.year, 1 - f.year), n, n == 2)
    if letter == "Y":
        return _number(f.week_year, n, n == 2)
    if letter in "ML":
        if n >= 3:
            return _text(MONTHS if n >= 4 else SHORT_MONTHS, f.month - 1)
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
        return _number(week_number(f.month1, f.days), n)
    if letter == "E":
        return _text(DAYS if n >= 4 else SHORT_DAYS, f.weekday)
    if letter == "u":
        return _number(np.where(f.weekday == 0, 7, f.weekday), n)
    if letter == "a":
        return _text(AMPM, (f.hour >= 12).astype(np.int64))
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
    f = CalendarFields(ms, java_zone(arr.type.tz or "UTC"))
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

