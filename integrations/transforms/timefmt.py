"""Java ``SimpleDateFormat`` patterns, formatted and parsed with Arrow's strftime/strptime (in UTC)."""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

# pattern letter → (strftime code by run length); run lengths not listed use the largest listed below it
_CODES: dict[str, dict[int, str]] = {
    "y": {1: "%Y", 2: "%y", 3: "%Y"},
    "u": {1: "%u"},
    "Y": {1: "%G", 2: "%g", 3: "%G"},
    "M": {1: "%m", 3: "%b", 4: "%B"},
    "L": {1: "%m", 3: "%b", 4: "%B"},
    "d": {1: "%d"},
    "D": {1: "%j"},
    "w": {1: "%V"},
    "E": {1: "%a", 4: "%A"},
    "a": {1: "%p"},
    "H": {1: "%H"},
    "h": {1: "%I"},
    "m": {1: "%M"},
    "s": {1: "%S"},
    "Z": {1: "%z"},
    "X": {1: "%z", 3: "%Ez"},
    "z": {1: "%Z"},
}
SUPPORTED_LETTERS = "".join(sorted({*_CODES, "S"}))


@lru_cache(maxsize=256)
def java_to_strftime(pattern: str) -> tuple[tuple[str, str | int], ...]:
    """Split a SimpleDateFormat pattern into ``("fmt", strftime)`` and ``("frac", digits)`` segments.

    Fractional seconds (``S``) have no strftime code that Arrow formats at a fixed width, so they
    are their own segment. Raises ValueError naming an unsupported letter.
    """
    segments: list[tuple[str, str | int]] = []
    buf: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "'":
            j = pattern.find("'", i + 1)
            if j == -1:
                raise ValueError(f"format {pattern!r}: unterminated quote")
            lit = pattern[i + 1:j] if j > i + 1 else "'"
            buf.append(lit.replace("%", "%%"))
            i = j + 1
            continue
        if ch.isalpha():
            j = i
            while j < n and pattern[j] == ch:
                j += 1
            run = j - i
            if ch == "S":
                if buf:
                    segments.append(("fmt", "".join(buf)))
                    buf = []
                segments.append(("frac", run))
            elif ch in _CODES:
                codes = _CODES[ch]
                key = max(k for k in codes if k <= run)
                buf.append(codes[key])
            else:
                raise ValueError(f"format {pattern!r}: pattern letter {ch!r} is not supported; "
                                 f"supported: {', '.join(SUPPORTED_LETTERS)} and 'quoted text'")
            i = j
            continue
        buf.append("%%" if ch == "%" else ch)
        i += 1
    if buf:
        segments.append(("fmt", "".join(buf)))
    return tuple(segments)


def format_timestamps(ts: pa.Array | pa.ChunkedArray, pattern: str) -> pa.Array | pa.ChunkedArray:
    """Format a timestamp column with a SimpleDateFormat pattern (vectorised; nulls stay null)."""
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"expected a timestamp column, got {ts.type}")
    tz = ts.type.tz or "UTC"
    whole = ts.cast(pa.timestamp("s", tz=tz), safe=False)  # so %S prints whole seconds
    parts = []
    for kind, spec in java_to_strftime(pattern):
        if kind == "fmt":
            parts.append(pc.strftime(whole, format=str(spec)))
        else:
            digits = int(spec)
            ns = ts.cast(pa.timestamp("ns", tz=tz), safe=False)
            frac_ns = pc.subtract(ns.cast(pa.int64()), pc.multiply(whole.cast(pa.int64()), 1_000_000_000))
            scaled = pc.divide(frac_ns, 10 ** max(0, 9 - digits)) if digits < 9 else frac_ns
            parts.append(pc.utf8_lpad(scaled.cast(pa.string()), digits, "0"))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "")


def parse_timestamps(values: pa.Array | pa.ChunkedArray, pattern: str, unit: str = "ms") -> pa.Array | pa.ChunkedArray:
    """Parse strings with a SimpleDateFormat pattern into UTC timestamps (vectorised).

    Patterns with fractional seconds (``SSS``) parse the fraction from the characters at its
    position, so the fields before it must have a fixed width (as in ``yyyy-MM-dd HH:mm:ss.SSS``).
    """
    segs = java_to_strftime(pattern)
    fracs = [s for s in segs if s[0] == "frac"]
    if not fracs:
        out = pc.strptime(values, format="".join(str(s[1]) for s in segs), unit=unit, error_is_null=False)
        return out.cast(pa.timestamp(unit, tz="UTC"))
    if len(fracs) > 1 or segs[-1][0] == "frac" and len(segs) < 2:
        raise ValueError(f"format {pattern!r}: only one run of 'S' after the seconds can be parsed")
    idx = segs.index(fracs[0])
    head = "".join(str(s[1]) for s in segs[:idx])
    tail = "".join(str(s[1]) for s in segs[idx + 1:])
    width = _fixed_width(head)
    digits = int(fracs[0][1])
    head_str = pc.utf8_slice_codeunits(values, 0, width)
    frac_str = pc.utf8_slice_codeunits(values, width, width + digits)
    tail_str = pc.utf8_slice_codeunits(values, width + digits)
    base = pc.strptime(pc.binary_join_element_wise(head_str, tail_str, ""), format=head + tail, unit="ns",
                       error_is_null=False)
    frac_ns = pc.multiply(frac_str.cast(pa.int64()), 10 ** (9 - digits))
    total = pc.add(base.cast(pa.int64()), frac_ns).cast(pa.timestamp("ns"))
    return total.cast(pa.timestamp(unit), safe=False).cast(pa.timestamp(unit, tz="UTC"))


_WIDTHS = {"%Y": 4, "%y": 2, "%m": 2, "%d": 2, "%H": 2, "%I": 2, "%M": 2, "%S": 2, "%j": 3, "%p": 2, "%%": 1,
           "%b": 3, "%a": 3, "%G": 4, "%g": 2, "%V": 2, "%u": 1}


def _fixed_width(fmt: str) -> int:
    width, i = 0, 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i:i + 2]
            if code not in _WIDTHS:
                raise ValueError(f"cannot parse fractional seconds after variable-width field {code}")
            width += _WIDTHS[code]
            i += 2
        else:
            width += 1
            i += 1
    return width
