"""JSON converter, per batch: Arrow rows to compact JSON bytes with DuckDB's ``to_json``, and
newline-joined JSON values back to Arrow with ``pyarrow.json`` (C++), never per Python row.

Encoding: integers and decimals are JSON numbers written exactly (no float rounding); timestamps are
strings (``2024-01-01 12:00:00.123456+00`` for UTC instants); NULL is ``null``. Decoding with a
declared schema restores decimals and timestamps exactly; without one, pyarrow infers types.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.json as pj

from integrations.errors import HeadraceError

_local = threading.local()


def _duck() -> duckdb.DuckDBPyConnection:
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        con.execute("SET threads=1")
        _local.con = con
    return con


class ConversionError(HeadraceError):
    """A batch could not be converted to or from JSON."""


class JsonConverter:
    """Kafka Connect's JsonConverter (schemas.enable=false), vectorised over Arrow batches."""

    def encode_array(self, table: pa.Table) -> pa.ChunkedArray:
        """One compact JSON object per row, as an Arrow string column."""
        con = _duck()
        con.register("_hr_batch", table)
        try:
            out = con.sql("SELECT to_json(_hr_batch)::VARCHAR AS j FROM _hr_batch").to_arrow_table()
        finally:
            con.unregister("_hr_batch")
        return out.column(0)

    def encode(self, table: pa.Table) -> list[str]:
        """One compact JSON object per row (a list of str; confluent-kafka encodes it as UTF-8)."""
        if table.num_rows == 0:
            return []
        return self.encode_array(table).to_pylist()

    def encode_keys(self, table: pa.Table, columns: Sequence[str]) -> list[str] | None:
        """Message keys from key columns: the bare JSON value for one column, an object for several."""
        if not columns:
            return None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConversionError(f"key column(s) {missing} not in the record (columns: {table.column_names})")
        if len(columns) == 1:
            con = _duck()
            sub = table.select(list(columns))
            con.register("_hr_keys", sub)
            try:
                ident = '"' + columns[0].replace('"', '""') + '"'
                out = con.sql(f"SELECT to_json({ident})::VARCHAR FROM _hr_keys").to_arrow_table()
            finally:
                con.unregister("_hr_keys")
            return out.column(0).to_pylist()
        return self.encode(table.select(list(columns)))

    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None) -> pa.Table:
        """Parse JSON values (one object each) into a table; ``schema`` fixes column types."""
        if not values:
            return schema.empty_table() if schema is not None else pa.table({})
        blob = b"\n".join(values)
        multiline = blob.count(b"\n") != len(values) - 1
        opts = pj.ParseOptions(
            explicit_schema=schema,
            newlines_in_values=multiline,
            unexpected_field_behavior="infer",
        )
        ropts = pj.ReadOptions(block_size=max(1 << 20, min(len(blob) + 1, 64 << 20)), use_threads=True)
        try:
            return pj.read_json(io.BytesIO(blob), read_options=ropts, parse_options=opts)
        except pa.ArrowInvalid as e:
            raise ConversionError(f"malformed JSON in batch: {e}") from e
