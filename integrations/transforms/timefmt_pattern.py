"""SimpleDateFormat pattern letters, en_US names, and compiling a pattern into letter runs and literals."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# Java's pattern letters (DateFormatSymbols.patternChars); every one is supported for formatting
PATTERN_LETTERS = "GyMdkHmsSEDFwWahKzZYuXL"
SUPPORTED_LETTERS = "".join(sorted(PATTERN_LETTERS))
# Letters whose fields decide a date only through Java's week-date resolution: refused when parsing
UNPARSEABLE = "YwWF"

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
SHORT_MONTHS = [m[:3] for m in MONTHS]
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
SHORT_DAYS = [d[:3] for d in DAYS]
AMPM = ["AM", "PM"]
ERAS = ["BC", "AD"]


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
