"""Streaming Arrow readers of one file for the file source: CSV, JSON lines and Parquet.

Every reader is a C++ streaming reader (``pyarrow.csv.open_csv``, ``pyarrow.json.open_json``,
``ParquetFile.iter_batches``), so memory stays bounded by a block / batch whatever the file size,
and no record ever goes through Python one by one. Records are numbered from 0 in file order;
``read_tables(..., start=n)`` resumes at record ``n`` (Parquet skips whole row groups by metadata).

Malformed CSV lines (a wrong number of fields) either fail the file (``ArrowInvalid``), or, when a
``CsvRejects`` is passed, are skipped by pyarrow's ``invalid_row_handler`` and collected with their
text and line number. Values that do not convert to a declared or inferred type are reported by
pyarrow per block, not per row, so they still fail the whole file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from integrations.arrow_types import schema_from_mapping
from integrations.config import FileSourceConfig

#: Errors that mean "this file's content is bad" (not "the filesystem is unreachable").
DATA_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowKeyError, UnicodeError,
)
CSV_BLOCK = 1 << 20
JSON_BLOCK = 1 << 20


def declared_schema(config: FileSourceConfig) -> pa.Schema | None:
    """The declared value schema, or None when the schema is inferred."""
    return schema_from_mapping(config.value_schema) if config.value_schema else None


class MalformedCsvLine(ValueError):
    """A CSV line with the wrong number of fields (dead-lettered under ``errors_tolerance: all``)."""


@dataclass
class BadLine:
    """A malformed CSV line: its text, line (row) number, and the record number it is filed under."""

    record: int
    line: int
    text: str
    expected: int
    actual: int


class CsvRejects:
    """Collects malformed CSV lines through pyarrow's ``invalid_row_handler``.

    The line number is pyarrow's row number: 1-based, counting the skipped and header lines but not
    empty lines (which pyarrow skips). Each line is filed under record number ``(data rows before it)
    - (malformed lines before it)``, i.e. the number of good records before it; that depends only on
    the file, so every read of it, including a re-read after a crash, files a line under the same
    record. pyarrow numbers rows only in a single-threaded reader, so the reader runs with
    ``use_threads=False`` when collecting.
    """

    def __init__(self, config: FileSourceConfig, first_only: bool = False) -> None:
        self.first_only = first_only  # stop at the first malformed line (to name it in an error)
        self.first_data_line = 1 + config.csv_skip_lines + (1 if config.csv_first_row_as_header else 0)
        self._lines: list[BadLine] = []
        self._seen = 0
        self._lock = threading.Lock()

    def handler(self, row: pacsv.InvalidRow) -> str:
        """pyarrow's ``invalid_row_handler``: note the line, skip it."""
        if row.number is None:
            raise pa.ArrowInvalid(f"malformed CSV line without a line number: {row.text[:200]}")
        with self._lock:
            record = row.number - self.first_data_line - self._seen
            self._seen += 1
            self._lines.append(BadLine(max(record, 0), row.number, row.text, row.expected_columns,
                                       row.actual_columns))
        return "error" if self.first_only else "skip"

    def take(self, floor: int, below: int | None) -> list[BadLine]:
        """Remove and return the lines filed under records ``floor <= r < below`` (``below=None``: all
        the rest); lines filed below ``floor`` were handled by an earlier run and are dropped."""
        with self._lock:
            i = 0
            while i < len(self._lines) and (below is None or self._lines[i].record < below):
                i += 1
            out, self._lines = self._lines[:i], self._lines[i:]
        return [b for b in out if b.record >= floor]


def _open_csv(stream: pa.NativeFile, config: FileSourceConfig, schema: pa.Schema | None,
              rejects: CsvRejects | None = None) -> pacsv.CSVStreamingReader:
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


def _csv_batches(stream: pa.NativeFile, config: FileSourceConfig, schema: pa.Schema | None,
                 rejects: CsvRejects | None = None) -> Iterator[pa.RecordBatch]:
    yield from _open_csv(stream, config, schema, rejects)


def _json_batches(stream: pa.NativeFile, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer")
    reader = pajson.open_json(stream, read_options=pajson.ReadOptions(use_threads=True, block_size=JSON_BLOCK),
                              parse_options=parse)
    for rb in reader:
        yield rb.select(schema.names) if schema is not None else rb


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
                   rejects: CsvRejects | None = None) -> Iterator[pa.RecordBatch]:
    """The file's records from record number ``start`` on, as a stream of record batches (malformed
    CSV lines go to ``rejects`` when given)."""
    schema = declared_schema(config)
    if config.format == "parquet":
        yield from _parquet_batches(fs, path, schema, start, config.batch_size)
        return
    with fs.open_input_stream(path) as stream:  # .gz/.bz2/.zst are decompressed by extension
        batches = _csv_batches(stream, config, schema, rejects) if config.format == "csv" else _json_batches(stream, schema)
        yield from _skip(batches, start)


def rechunk(batches: Iterator[pa.RecordBatch], n: int) -> Iterator[pa.Table]:
    """Regroup a batch stream into tables of exactly ``n`` records (the last may be shorter)."""
    buf: list[pa.RecordBatch] = []
    have = 0
    for rb in batches:
        if rb.num_rows == 0:
            continue
        buf.append(rb)
        have += rb.num_rows
        while have >= n:
            table = pa.Table.from_batches(buf)
            yield table.slice(0, n)
            rest = table.slice(n)
            buf, have = rest.to_batches(), rest.num_rows
    if have:
        yield pa.Table.from_batches(buf)


def read_tables(fs: pafs.FileSystem, path: str, config: FileSourceConfig, start: int = 0,
                rejects: CsvRejects | None = None) -> Iterator[pa.Table]:
    """Tables of ``config.batch_size`` records of one file, from record ``start`` on."""
    return rechunk(record_batches(fs, path, config, start, rejects), config.batch_size)


def empty_csv_table(fs: pafs.FileSystem, path: str, config: FileSourceConfig) -> pa.Table:
    """No records, with the file's columns (declared, or from its header), for a batch that only
    carries malformed lines: transforms naming a column still find it."""
    schema = declared_schema(config)
    if schema is None:
        with fs.open_input_stream(path) as stream:
            inferred = _open_csv(stream, config, None, CsvRejects(config)).schema
        # no value to infer from: the columns are text, as the CSV is
        schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred])
    return schema.empty_table()


def locate_malformed_line(fs: pafs.FileSystem, path: str, config: FileSourceConfig) -> int | None:
    """The line number of the first malformed CSV line (a second, single-threaded read; error path only)."""
    probe = CsvRejects(config, first_only=True)
    try:
        for _ in record_batches(fs, path, config, 0, probe):
            pass
    except Exception:  # noqa: BLE001 — only looking for the line number
        pass
    found = probe.take(0, None)
    return found[0].line if found else None
