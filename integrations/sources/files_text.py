"""The file source's per-record path, used only after a block of a file failed to convert.

pyarrow's CSV and JSON readers convert a whole block (about 1 MiB) at once and report the first bad
value of the block. To keep the good records of such a block, the CSV is read again with every
column as bytes and converted here column by column with ``pyarrow.compute`` (the same rules as
pyarrow's CSV conversion: its null texts, true/false texts, trimmed numbers, ISO-8601 times); a
column that fails is bisected on zero-copy slices to find the rows that fail alone. Nothing here
touches records one by one in Python except the few bad ones.

``LineReader`` gives the raw lines of a file (pyarrow's CSV parser with no quoting and an unused
delimiter): the original text of a bad CSV row, the lines of a JSON-lines file, and a digest of the
lines before a bad one (to recognise a fixed file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

#: What a failed conversion raises.
CONVERT_ERRORS: tuple[type[BaseException], ...] = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
_DEFAULTS = pacsv.ConvertOptions()
NULL_TEXTS = pa.array(_DEFAULTS.null_values, pa.string())
_TRUE, _FALSE = pa.array(_DEFAULTS.true_values, pa.string()), pa.array(_DEFAULTS.false_values, pa.string())
_SEP = "\x1f"  # the line reader's delimiter (ASCII unit separator): a line holding it is read apart


def text_schema(target: pa.Schema) -> tuple[pa.Schema, pa.Schema, frozenset[str]]:
    """``(read, target, was_null)``: every column read as bytes; the target with inferred ``null`` columns
    (empty in the first block, with values later) as text, whose null texts stay null."""
    was_null = frozenset(f.name for f in target if pa.types.is_null(f.type))
    target = pa.schema([f.with_type(pa.string()) if f.name in was_null else f for f in target])
    return pa.schema([pa.field(f.name, pa.binary()) for f in target]), target, was_null


def check_decimals(rb: pa.RecordBatch) -> None:
    """Raise ``ArrowInvalid`` when a decimal exceeds its column's precision (pyarrow's CSV reader checks
    the digits as written, so ``12345678901.5`` passes into ``decimal(12,2)``; the cast does not)."""
    for f, col in zip(rb.schema, rb.columns, strict=True):
        t = f.type
        if not pa.types.is_decimal(t) or t.precision >= 38 or t.scale < 0:
            continue
        limit = Decimal(10) ** (t.precision - t.scale)
        lo, hi = pc.min_max(col).values()
        if hi.is_valid and (hi.as_py() >= limit or lo.as_py() <= -limit):
            value = hi if hi.as_py() >= limit else lo
            raise pa.ArrowInvalid(f"In column {f.name!r}: {value} does not fit in precision {t.precision}")


def _parser(t: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """Text (``string``, nulls already applied) → ``t``, raising on a value that does not convert."""
    if pa.types.is_boolean(t):
        def boolean(s: pa.Array) -> pa.Array:
            yes, no = pc.is_in(s, value_set=_TRUE), pc.is_in(s, value_set=_FALSE)
            bad = pc.and_(pc.is_valid(s), pc.invert(pc.or_(yes, no)))
            if pc.any(bad).as_py():
                raise pa.ArrowInvalid(f"Failed to parse string: '{pc.filter(s, bad)[0]}' as a scalar of type bool "
                                      f"(true: {', '.join(_DEFAULTS.true_values)}; false: "
                                      f"{', '.join(_DEFAULTS.false_values)})")
            return pc.if_else(pc.is_valid(s), yes, pa.scalar(None, pa.bool_()))
        return boolean
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return lambda s: pc.utf8_trim(s, " \t").cast(t)
    if pa.types.is_time(t):
        unit = t.unit
        return lambda s: pc.binary_join_element_wise("1970-01-01T", s, "").cast(pa.timestamp(unit)).cast(t)
    return lambda s: s.cast(t)


def converter(t: pa.DataType, null_texts: pa.Array | None, text_nulls: bool = False
              ) -> Callable[[pa.Array], pa.Array]:
    """Field bytes → ``t`` as pyarrow's CSV reader converts them; raises on any value that does not.

    ``null_texts``: the texts that mean NULL in non-text columns (None when the reader already made
    them null, i.e. with ``csv_null_indicator``); ``text_nulls``: in this text column too."""
    text = pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t) \
        or pa.types.is_large_string(t)
    if text and not (text_nulls and null_texts is not None):
        return lambda a: a.cast(t)  # text: only the UTF-8 check
    parse = _parser(t)

    def convert(a: pa.Array) -> pa.Array:
        s = a.cast(pa.string())
        if null_texts is not None:
            s = pc.if_else(pc.is_in(s, value_set=null_texts), pa.scalar(None, pa.string()), s)
        return parse(s)
    return convert


def failing_rows(a: pa.Array, convert: Callable[[pa.Array], object]) -> dict[int, str]:
    """``{row: error}`` of the rows of ``a`` that ``convert`` rejects alone (bisection on slices)."""
    out: dict[int, str] = {}

    def rec(lo: int, n: int, known_bad: bool) -> None:
        if not known_bad:
            try:
                convert(a.slice(lo, n))
                return
            except CONVERT_ERRORS as e:
                if n == 1:
                    out[lo] = str(e)
                    return
        elif n == 1:
            try:
                convert(a.slice(lo, 1))
            except CONVERT_ERRORS as e:
                out[lo] = str(e)
            return
        half = n // 2
        rec(lo, half, False)
        rec(lo + half, n - half, False)

    if len(a):
        rec(0, len(a), True)
    return out


def mask_of(n: int, rows: object) -> pa.Array:
    """A boolean array of length ``n``, true at ``rows``."""
    mask = np.zeros(n, dtype=bool)
    mask[list(rows)] = True  # type: ignore[call-overload]
    return pa.array(mask)


def convert_batch(rb: pa.RecordBatch, target: pa.Schema, null_texts: pa.Array | None,
                  text_nulls: frozenset[str] = frozenset()
                  ) -> tuple[pa.RecordBatch, dict[int, tuple[str, bytes | None, str]]]:
    """Convert a batch of field bytes to ``target``; rows that do not convert come back null, listed as
    ``{row: (first bad column, its bytes, error)}``. ``text_nulls``: text columns where null texts are
    null."""
    cols: list[pa.Array] = []
    bad: dict[int, tuple[str, bytes | None, str]] = {}
    for f in target:
        a = rb.column(f.name)
        convert = converter(f.type, null_texts, f.name in text_nulls)
        try:
            cols.append(convert(a))
            continue
        except CONVERT_ERRORS:
            pass
        failing = failing_rows(a, convert)
        for i in sorted(failing):
            bad.setdefault(i, (f.name, a[i].as_py(), failing[i]))
        cols.append(convert(pc.if_else(mask_of(len(a), failing), pa.scalar(None, a.type), a)))
    out = pa.RecordBatch.from_arrays(cols, schema=target)
    return out, dict(sorted(bad.items()))


class LineReader:
    """The lines of a text file as ``binary`` arrays, in blocks, read forward once.

    Rows are numbered like pyarrow's CSV reader: the ``skip`` first lines (empty or not) count, then
    empty lines are skipped and not counted when ``ignore_empty``. A line holding the delimiter
    ``\\x1f`` cannot be one field: it is kept apart in ``odd`` (``{number: bytes}``), or, with
    ``odd_ok=False``, fails the read."""

    def __init__(self, fs: pafs.FileSystem, path: str, *, encoding: str = "utf8", skip: int = 0,
                 ignore_empty: bool = True, odd_ok: bool = True, block_size: int = 1 << 20) -> None:
        self.first = skip + 1
        self.odd: dict[int, bytes] = {}
        self._odd_ok = odd_ok
        self._stream = fs.open_input_stream(path)
        self._reader = pacsv.open_csv(
            self._stream,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size, skip_rows=skip,
                                           encoding=encoding, column_names=["line"]),
            parse_options=pacsv.ParseOptions(delimiter=_SEP, quote_char=False, escape_char=False,
                                              ignore_empty_lines=ignore_empty, invalid_row_handler=self._odd),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.binary()}, null_values=[],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        self._batch: pa.Array | None = None
        self._base = 0  # index (among the lines read into arrays) of self._batch's first line

    def _odd(self, row: pacsv.InvalidRow) -> str:
        if not self._odd_ok or row.number is None:
            return "error"
        self.odd[row.number] = row.text.encode("utf-8", "surrogateescape")
        return "skip"

    def _index(self, number: int) -> int:
        return number - self.first - sum(1 for n in self.odd if n < number)

    def _more(self) -> bool:
        try:
            nxt = self._reader.read_next_batch()
        except StopIteration:
            return False
        self._base += 0 if self._batch is None else len(self._batch)
        self._batch = nxt.column(0)
        return True

    def blocks(self) -> Iterator[tuple[int, pa.Array]]:
        """``(number of the first line, lines)`` per block (``odd_ok=False``: numbers are consecutive)."""
        while self._more():
            assert self._batch is not None
            yield self.first + self._base, self._batch

    def text(self, number: int) -> bytes | None:
        """The line numbered ``number`` (numbers asked in increasing order), or None past the end."""
        while True:
            if number in self.odd:
                return self.odd[number]
            i = self._index(number) - self._base
            if i < 0:
                raise ValueError(f"line {number} was passed (lines are read forward only)")
            if self._batch is not None and i < len(self._batch):
                return self._batch[i].as_py()
            if not self._more():
                return None

    def digest(self, below: int) -> str:
        """BLAKE2 of the lines numbered below ``below`` (a fresh reader: from the first line)."""
        h = hashlib.blake2b(digest_size=20)
        while self._more():
            assert self._batch is not None
            want = self._index(below) - self._base
            part = self._batch.slice(0, max(0, min(want, len(self._batch))))
            if len(part):
                joined = pc.binary_join_element_wise(part, b"\n", b"")  # fresh buffers: offsets start at 0
                end = pc.sum(pc.binary_length(joined)).as_py()
                h.update(joined.buffers()[2][:end])
            if want < len(self._batch):
                break
        for n in sorted(self.odd):
            if n < below:
                h.update(b"\x1f%d\x1f" % n + self.odd[n])
        return h.hexdigest()

    def close(self) -> None:
        """Close the file."""
        self._stream.close()
