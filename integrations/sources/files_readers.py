"""Streaming Arrow readers of one file for the file source: CSV, JSON lines and Parquet.

Every reader is a C++ streaming reader (``pyarrow.csv.open_csv``, ``pyarrow.json.open_json``,
``ParquetFile.iter_batches``), so memory stays bounded by a block / batch whatever the file size,
and no record ever goes through Python one by one. Records are numbered from 0 in file order;
``read_tables(..., start=n)`` resumes at record ``n`` (Parquet skips whole row groups by metadata).
"""

from __future__ import annotations

from collections.abc import Iterator

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


def _csv_batches(stream: pa.NativeFile, config: FileSourceConfig, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    header = config.csv_first_row_as_header
    read = pacsv.ReadOptions(
        use_threads=True, block_size=CSV_BLOCK, skip_rows=config.csv_skip_lines, encoding=config.charset,
        column_names=None if header or schema is None else schema.names,
        autogenerate_column_names=not header and schema is None,
    )
    parse = pacsv.ParseOptions(
        delimiter=config.csv_separator_char, quote_char=config.csv_quote_char or False,
        escape_char=config.csv_escape_char or False, newlines_in_values=config.csv_newlines_in_values,
    )
    convert = pacsv.ConvertOptions()
    if schema is not None:
        convert.column_types = {f.name: f.type for f in schema}
        convert.include_columns = schema.names
    if config.csv_null_indicator is not None:
        convert.null_values = [config.csv_null_indicator]
        convert.strings_can_be_null = True
        convert.quoted_strings_can_be_null = False
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    yield from reader


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


def record_batches(fs: pafs.FileSystem, path: str, config: FileSourceConfig, start: int = 0
                   ) -> Iterator[pa.RecordBatch]:
    """The file's records from record number ``start`` on, as a stream of record batches."""
    schema = declared_schema(config)
    if config.format == "parquet":
        yield from _parquet_batches(fs, path, schema, start, config.batch_size)
        return
    with fs.open_input_stream(path) as stream:  # .gz/.bz2/.zst are decompressed by extension
        batches = _csv_batches(stream, config, schema) if config.format == "csv" else _json_batches(stream, schema)
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


def read_tables(fs: pafs.FileSystem, path: str, config: FileSourceConfig, start: int = 0) -> Iterator[pa.Table]:
    """Tables of ``config.batch_size`` records of one file, from record ``start`` on."""
    return rechunk(record_batches(fs, path, config, start), config.batch_size)
