"""Streaming Arrow readers of one file for the file source: CSV, JSON lines and Parquet.

Every reader is a C++ streaming reader (``pyarrow.csv.open_csv``, ``pyarrow.json.open_json``,
``ParquetFile.iter_batches``), so memory stays bounded by a block / batch whatever the file size,
and no record ever goes through Python one by one. Records are numbered from 0 in file order;
``read_tables(..., start=n)`` resumes at record ``n`` (Parquet skips whole row groups by metadata).

Bad input is handled per record, not per file:

- A malformed CSV line (wrong number of fields) fails the file (``ArrowInvalid``), or, when a
  ``FileRejects`` is passed, is skipped by pyarrow's ``invalid_row_handler`` and collected.
- pyarrow converts a whole block at once, so a value that does not convert to its column's type
  fails the block. The reader then reads the rest of the file again from that block on, CSV with
  every column as bytes converted column by column (``files_text``), JSON lines line by line in
  blocks; only the records that fail alone are bad. With a ``FileRejects`` they are collected with
  their original line; without one the rows before the first bad record are yielded, then
  ``BadRecord`` is raised naming its line, column and value.

A record number counts good records only; each bad line is filed under the number of good records
before it, which depends only on the file, so any re-read (after a crash) files it the same way.
"""

from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from integrations.arrow_types import schema_from_mapping
from integrations.config import FileSourceConfig
from integrations.runtime.errors import locate_bad
from integrations.sources.files_text import (
    CONVERT_ERRORS,
    NULL_TEXTS,
    LineReader,
    check_decimals,
    convert_batch,
    failing_rows,
    mask_of,
    text_schema,
)

log = logging.getLogger("headrace.source.files")
CSV_BLOCK = 1 << 20
JSON_BLOCK = 1 << 20


class MalformedCsvLine(ValueError):
    """A CSV line with the wrong number of fields (dead-lettered under ``errors_tolerance: all``)."""


class BadRecord(ValueError):
    """A record with a value that does not convert to its column's type, or a JSON line that does not
    parse (dead-lettered under ``errors_tolerance: all``; raised under ``none``)."""

    def __init__(self, line: int, detail: str, file: str | None = None) -> None:
        super().__init__(f"{file + ' ' if file else ''}line {line}: {detail}")
        self.line, self.detail = line, detail


#: Errors that mean "this file's content is bad" (not "the filesystem is unreachable").
DATA_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowKeyError, UnicodeError, BadRecord,
)


def declared_schema(config: FileSourceConfig) -> pa.Schema | None:
    """The declared value schema, or None when the schema is inferred."""
    return schema_from_mapping(config.value_schema) if config.value_schema else None


def first_data_line(config: FileSourceConfig) -> int:
    """pyarrow's row number of a CSV file's first data row."""
    return 1 + config.csv_skip_lines + (1 if config.csv_first_row_as_header else 0)


@dataclass
class BadLine:
    """Input that did not become a record: its line (row) number, original bytes and why."""

    line: int
    value: bytes
    kind: type[ValueError]  # MalformedCsvLine or BadRecord
    detail: str
    parsed: int  # records parsed before it (good and bad; for a malformed line: well-formed rows)
    record: int = -1  # good records before it: the record number it is filed under (set by ``take``)


class FileRejects:
    """Collects a file's bad input: malformed CSV lines through pyarrow's ``invalid_row_handler``, and
    records that do not convert (``add``), each filed under the number of good records before it.

    The line number is pyarrow's row number: 1-based, counting the skipped and header lines but not
    empty lines (which pyarrow skips); for JSON lines, the physical line. Numbering depends only on
    the file, so every read of it, including a re-read after a crash, files a line under the same
    record. pyarrow numbers rows only in a single-threaded reader, so the CSV reader runs with
    ``use_threads=False`` when collecting. A second read of the same file reports each malformed
    line once (lines up to the last one seen are ignored).
    """

    def __init__(self, config: FileSourceConfig, first_only: bool = False) -> None:
        self.config = config
        self.first_only = first_only  # stop at the first malformed line (to name it in an error)
        self.first_data_line = first_data_line(config)
        self._lines: list[BadLine] = []
        self._malformed: list[int] = []  # ``parsed`` of each malformed line, ascending
        self._bad: list[int] = []  # ``parsed`` of each bad record, ascending
        self._last_line = 0
        self._lock = threading.Lock()
        self._open_lines: Callable[[], LineReader] | None = None
        self._texts: LineReader | None = None

    def _encode(self, text: str) -> bytes:
        try:
            return text.encode(self.config.charset)
        except (LookupError, UnicodeError):
            return text.encode("utf-8", "surrogateescape")

    def handler(self, row: pacsv.InvalidRow) -> str:
        """pyarrow's ``invalid_row_handler``: note the line, skip it."""
        if row.number is None:
            raise pa.ArrowInvalid(f"malformed CSV line without a line number: {row.text[:200]}")
        with self._lock:
            if row.number <= self._last_line:  # already noted by an earlier read of the file
                return "skip"
            self._last_line = row.number
            parsed = row.number - self.first_data_line - len(self._malformed)
            self._malformed.append(parsed)
            self._lines.append(BadLine(row.number, self._encode(row.text), MalformedCsvLine,
                                       f"expected {row.expected_columns} fields, got {row.actual_columns}", parsed))
        return "error" if self.first_only else "skip"

    def line_of(self, parsed: int) -> int:
        """The row number of the CSV row parsed as number ``parsed`` (malformed lines before it count)."""
        with self._lock:
            return self.first_data_line + parsed + bisect_right(self._malformed, parsed)

    def bind(self, open_lines: Callable[[], LineReader]) -> None:
        """How to open the file's lines, for the original text of bad CSV rows."""
        self._open_lines = open_lines

    def release(self) -> None:
        """Close the file's lines (if opened)."""
        if self._texts is not None:
            self._texts.close()
            self._texts = None

    def csv_text(self, line: int, fields: dict[str, bytes | None]) -> bytes:
        """The original text of CSV row ``line`` (rows asked in increasing order); with quoted newlines
        (a row is not a line) or past the end, the row's fields as a JSON object."""
        raw = None
        if not self.config.csv_newlines_in_values and self._open_lines is not None:
            if self._texts is None:
                self._texts = self._open_lines()
            raw = self._texts.text(line)
        if raw is None:
            return orjson.dumps({k: None if v is None else v.decode("utf-8", "replace") for k, v in fields.items()})
        return self._encode(raw.decode("utf-8", "surrogateescape"))

    def add(self, parsed: int, line: int, value: bytes, detail: str) -> None:
        """A record that did not convert, the ``parsed``-th record read (good and bad counted)."""
        with self._lock:
            self._bad.append(parsed)
            self._lines.append(BadLine(line, value, BadRecord, detail, parsed))

    def take(self, floor: int, below: int | None) -> list[BadLine]:
        """Remove and return the lines filed under records ``floor <= r < below`` (``below=None``: all
        the rest); lines filed below ``floor`` were handled by an earlier run and are dropped."""
        with self._lock:
            self._lines.sort(key=lambda b: b.line)
            for b in self._lines:
                b.record = b.parsed - bisect_left(self._bad, b.parsed)
            i = 0
            while i < len(self._lines) and (below is None or self._lines[i].record < below):
                i += 1
            out, self._lines = self._lines[:i], self._lines[i:]
        return [b for b in out if b.record >= floor]


def _open_csv(stream: pa.NativeFile, config: FileSourceConfig, schema: pa.Schema | None,
              rejects: FileRejects | None = None) -> pacsv.CSVStreamingReader:
    header = config.csv_first_row_as_header
    read = pacsv.ReadOptions(
        use_threads=rejects is None, block_size=CSV_BLOCK, skip_rows=config.csv_skip_lines, encoding=config.charset,
        column_names=None if header or schema is None else schema.names,
        autogenerate_column_names=not header and schema is None,
    )
    parse = pacsv.ParseOptions(
        delimiter=config.csv_separator_char, quote_char=config.csv_quote_char or False,
        escape_char=config.csv_escape_char or False, newlines_in_values=config.csv_newlines_in_values,
        invalid_row_handler=None if rejects is None else rejects.handler,
    )
    convert = pacsv.ConvertOptions()
    if schema is not None:
        convert.column_types = {f.name: f.type for f in schema}
        convert.include_columns = schema.names
    if config.csv_null_indicator is not None:
        convert.null_values = [config.csv_null_indicator]
        convert.strings_can_be_null = True
        convert.quoted_strings_can_be_null = False
    return pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


def _detail(column: str, value: bytes | None, t: pa.DataType, error: str) -> str:
    shown = "" if value is None else value.decode("utf-8", "replace")
    shown = shown if len(shown) <= 100 else shown[:100] + "..."
    return f"column {column!r}: value {shown!r} does not convert to {t} ({error})"


def _csv_batches(fs: pafs.FileSystem, path: str, config: FileSourceConfig, schema: pa.Schema | None,
                 rejects: FileRejects | None = None) -> Iterator[pa.RecordBatch]:
    """Typed blocks as long as they convert; from the first block that does not, ``_csv_text_batches``."""
    target, done = schema, 0
    with fs.open_input_stream(path) as stream:
        try:
            reader = _open_csv(stream, config, schema, rejects)
            target = reader.schema
            for rb in reader:
                check_decimals(rb)
                yield rb
                done += rb.num_rows
            return
        except pa.ArrowInvalid as e:
            if target is None or "CSV parse error" in str(e):
                raise
            log.info("%s: a block after record %d does not convert (%s); converting the rest per record",
                     path, done, e)
    yield from _csv_text_batches(fs, path, config, target, rejects, done)


def _csv_text_batches(fs: pafs.FileSystem, path: str, config: FileSourceConfig, target: pa.Schema,
                      rejects: FileRejects | None, skip: int) -> Iterator[pa.RecordBatch]:
    """From well-formed row ``skip`` on: rows read as bytes and converted column by column; a row with a
    value that does not convert goes to ``rejects``, or (without) ends the read with ``BadRecord``."""
    read, target, was_null = text_schema(target)
    nulls = NULL_TEXTS if config.csv_null_indicator is None else None
    parsed = 0  # well-formed rows before ``rb``
    with fs.open_input_stream(path) as stream:
        for rb in _open_csv(stream, config, read, rejects):
            if parsed + rb.num_rows <= skip:
                parsed += rb.num_rows
                continue
            if parsed < skip:
                rb, parsed = rb.slice(skip - parsed), skip
            out, bad = convert_batch(rb, target, nulls, was_null)
            if bad and rejects is None:
                i, (column, value, error) = next(iter(bad.items()))
                if i:
                    yield out.slice(0, i)
                raise BadRecord(first_data_line(config) + parsed + i,
                                _detail(column, value, target.field(column).type, error))
            for i, (column, value, error) in bad.items():
                assert rejects is not None
                line = rejects.line_of(parsed + i)
                text = rejects.csv_text(line, rb.slice(i, 1).to_pylist()[0])
                rejects.add(parsed + i, line, text, _detail(column, value, target.field(column).type, error))
            if bad:
                out = out.filter(pc.invert(mask_of(out.num_rows, bad)))
            parsed += rb.num_rows
            if out.num_rows:
                yield out


def _json_batches(fs: pafs.FileSystem, path: str, schema: pa.Schema | None, rejects: FileRejects | None
                  ) -> Iterator[pa.RecordBatch]:
    """Blocks of the streaming JSON reader as long as they parse; from the first that does not, the file
    again line by line (``_json_line_batches``), past the records already yielded."""
    target, done = schema, 0
    with fs.open_input_stream(path) as stream:
        parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer")
        try:
            reader = pajson.open_json(stream, read_options=pajson.ReadOptions(use_threads=True, block_size=JSON_BLOCK),
                                      parse_options=parse)
            target = schema if schema is not None else reader.schema
            for rb in reader:
                yield rb.select(schema.names) if schema is not None else rb
                done += rb.num_rows
            return
        except pa.ArrowInvalid as e:
            log.info("%s: a block after record %d does not parse (%s); reading the rest line by line", path, done, e)
    yield from _skip(_json_line_batches(fs, path, schema, target, rejects), done)


def _parse_json_lines(lines: pa.Array, schema: pa.Schema | None, declared: bool) -> pa.Table:
    """JSON lines (a ``binary`` array) → a table: the declared columns, or exactly ``schema``'s."""
    if not len(lines):
        return (schema if schema is not None else pa.schema([])).empty_table()
    joined = pc.binary_join_element_wise(lines, b"\n", b"")  # fresh buffers: offsets start at 0
    end = pc.sum(pc.binary_length(joined)).as_py() or 0
    parse = pajson.ParseOptions(explicit_schema=schema,
                                unexpected_field_behavior="ignore" if declared else "error" if schema else "infer")
    table = pajson.read_json(pa.BufferReader(joined.buffers()[2][:end]),
                             read_options=pajson.ReadOptions(use_threads=False, block_size=max(end, JSON_BLOCK)),
                             parse_options=parse)
    return table.select(schema.names) if declared and schema is not None else table


def _json_line_batches(fs: pafs.FileSystem, path: str, declared: pa.Schema | None, target: pa.Schema | None,
                       rejects: FileRejects | None) -> Iterator[pa.RecordBatch]:
    """A JSON-lines file parsed in blocks of lines; lines that do not parse alone (with the declared
    schema, or the one inferred from the first block) go to ``rejects``, or end the read."""
    lines = LineReader(fs, path, ignore_empty=False, odd_ok=False, block_size=JSON_BLOCK)
    parsed = 0  # records read: good and bad
    try:
        for first, block in lines.blocks():
            if target is None or not len(target):  # inferred, and the first block did not parse
                target = locate_bad(len(block), lambda idx, b=block: _parse_json_lines(b.take(idx), None, False)
                                    )[1].schema
            schema = target

            def parse(a: pa.Array, schema: pa.Schema = schema) -> pa.Table:
                return _parse_json_lines(a, schema, declared is not None)
            try:
                whole = parse(block)
                yield from whole.to_batches()
                parsed += whole.num_rows
                continue
            except CONVERT_ERRORS:
                failing = failing_rows(block, parse)
            prev = 0
            for i in [*failing, len(block)]:
                if i > prev:
                    part = parse(block.slice(prev, i - prev))
                    yield from part.to_batches()
                    parsed += part.num_rows
                if i == len(block):
                    break
                detail = re.sub(r" in row \d+$", "", failing[i])
                if rejects is None:
                    raise BadRecord(first + i, detail)
                rejects.add(parsed, first + i, block[i].as_py(), detail)
                parsed += 1
                prev = i + 1
    finally:
        lines.close()


def _skip(batches: Iterator[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    """Drop the first ``n`` records of a batch stream."""
    for rb in batches:
        if n >= rb.num_rows:
            n -= rb.num_rows
            continue
        yield rb.slice(n) if n else rb
        n = 0


def _parquet_batches(fs: pafs.FileSystem, path: str, schema: pa.Schema | None, start: int, batch_size: int
                     ) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(fs.open_input_file(path))
    md = pf.metadata
    first, skipped = 0, 0
    while first < md.num_row_groups and skipped + md.row_group(first).num_rows <= start:
        skipped += md.row_group(first).num_rows
        first += 1
    if first >= md.num_row_groups:
        return
    columns = schema.names if schema is not None else None
    batches = pf.iter_batches(batch_size=batch_size, row_groups=range(first, md.num_row_groups), columns=columns)
    for rb in _skip(batches, start - skipped):
        yield rb.cast(schema) if schema is not None else rb


def record_batches(fs: pafs.FileSystem, path: str, config: FileSourceConfig, start: int = 0,
                   rejects: FileRejects | None = None) -> Iterator[pa.RecordBatch]:
    """The file's records from record number ``start`` on, as a stream of record batches (bad input goes
    to ``rejects`` when given, see the module docstring)."""
    schema = declared_schema(config)
    if config.format == "parquet":
        yield from _parquet_batches(fs, path, schema, start, config.batch_size)
        return
    if rejects is not None and config.format == "csv":
        rejects.bind(lambda: LineReader(fs, path, encoding=config.charset, skip=config.csv_skip_lines,
                                        block_size=CSV_BLOCK))
    try:
        if config.format == "csv":  # .gz/.bz2/.zst are decompressed by extension
            yield from _skip(_csv_batches(fs, path, config, schema, rejects), start)
        else:
            yield from _skip(_json_batches(fs, path, schema, rejects), start)
    finally:
        if rejects is not None:
            rejects.release()


def rechunk(batches: Iterator[pa.RecordBatch], n: int) -> Iterator[pa.Table]:
    """Regroup a batch stream into tables of exactly ``n`` records (the last may be shorter). When the
    stream fails, the records before the failure come out first, then the error."""
    buf: list[pa.RecordBatch] = []
    have = 0
    try:
        for rb in batches:
            if rb.num_rows == 0:
                continue
            if buf and rb.schema != buf[0].schema:  # an inferred null column now has text (files_text)
                try:
                    buf = [b.cast(rb.schema) for b in buf]
                except DATA_ERRORS:
                    yield pa.Table.from_batches(buf)
                    buf, have = [], 0
            buf.append(rb)
            have += rb.num_rows
            while have >= n:
                table = pa.Table.from_batches(buf)
                yield table.slice(0, n)
                rest = table.slice(n)
                buf, have = rest.to_batches(), rest.num_rows
    except DATA_ERRORS:
        if have:
            yield pa.Table.from_batches(buf)
        raise
    if have:
        yield pa.Table.from_batches(buf)


def read_tables(fs: pafs.FileSystem, path: str, config: FileSourceConfig, start: int = 0,
                rejects: FileRejects | None = None) -> Iterator[pa.Table]:
    """Tables of ``config.batch_size`` records of one file, from record ``start`` on."""
    return rechunk(record_batches(fs, path, config, start, rejects), config.batch_size)


def empty_table(fs: pafs.FileSystem, path: str, config: FileSourceConfig) -> pa.Table:
    """No records, with the file's columns (declared, or from a CSV header), for a batch that only
    carries bad lines: transforms naming a column still find it."""
    schema = declared_schema(config)
    if schema is None and config.format == "csv":
        with fs.open_input_stream(path) as stream:
            inferred = _open_csv(stream, config, None, FileRejects(config)).schema
        # no value to infer from: the columns are text, as the CSV is
        schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred])
    return (schema or pa.schema([])).empty_table()


def locate_malformed_line(fs: pafs.FileSystem, path: str, config: FileSourceConfig) -> int | None:
    """The line number of the first malformed CSV line (a second, single-threaded read; error path only)."""
    probe = FileRejects(config, first_only=True)
    try:
        for _ in record_batches(fs, path, config, 0, probe):
            pass
    except Exception:  # noqa: BLE001 — only looking for the line number
        pass
    found = [b for b in probe.take(0, None) if b.kind is MalformedCsvLine]
    return found[0].line if found else None


def prefix_digest(fs: pafs.FileSystem, path: str, config: FileSourceConfig, line: int) -> str | None:
    """BLAKE2 of the file's lines before ``line`` (CSV: after the skipped lines), to recognise a fixed
    file; None where rows are not lines (Parquet, CSV with quoted newlines)."""
    if config.format == "parquet" or (config.format == "csv" and config.csv_newlines_in_values):
        return None
    csv = config.format == "csv"
    reader = LineReader(fs, path, encoding=config.charset if csv else "utf8",
                        skip=config.csv_skip_lines if csv else 0, ignore_empty=csv)
    try:
        return reader.digest(line)
    finally:
        reader.close()
