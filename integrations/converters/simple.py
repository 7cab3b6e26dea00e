"""Kafka Connect's StringConverter and ByteArrayConverter, per batch.

Encoding takes the batch's single column (or the configured ``field``); decoding yields a table
with one column named ``field`` (default ``value``). The string converter validates UTF-8 for the
whole batch in C++; a bad record is then located by the runtime's error handling.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from integrations.converters.base import Converter, check_valid
from integrations.converters.json import ConversionError


class _Single(Converter):
    arrow_type: pa.DataType

    def __init__(self, field: str = "value") -> None:
        self.field = field

    def _column(self, table: pa.Table) -> pa.ChunkedArray:
        if self.field in table.column_names:
            return table.column(self.field)
        if table.num_columns == 1:
            return table.column(0)
        raise ConversionError(
            f"{type(self).__name__} writes one column, but the batch has {table.column_names} and no "
            f"column {self.field!r}; use a transform (ExtractField/ReplaceField) or the json converter"
        )

    def encode_values(self, table: pa.Table, topic: str = "") -> pa.ChunkedArray:
        col = self._column(table)
        try:
            return col.cast(self.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ConversionError(f"column {self.field!r} ({col.type}) cannot be written as {self.arrow_type}") from e

    def encode_keys(self, table: pa.Table, columns: Sequence[str], topic: str = "") -> list | None:
        if not columns:
            return None
        if len(columns) != 1:
            raise ConversionError(f"{type(self).__name__} keys need exactly one key column, got {list(columns)}")
        return self.encode_values(table.select(list(columns)).rename_columns([self.field]), topic).to_pylist()

    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None, topic: str = "") -> pa.Table:
        arr = pa.array(values, pa.binary())
        if self.arrow_type != pa.binary():
            arr = pa.Array.from_buffers(self.arrow_type, len(arr), arr.buffers(), null_count=arr.null_count)
        return check_valid(pa.table({self.field: arr}))


class StringConverter(_Single):
    """``org.apache.kafka.connect.storage.StringConverter``: UTF-8 text."""

    class_name = "org.apache.kafka.connect.storage.StringConverter"
    arrow_type = pa.string()


class BytesConverter(_Single):
    """``org.apache.kafka.connect.converters.ByteArrayConverter``: raw bytes, untouched."""

    class_name = "org.apache.kafka.connect.converters.ByteArrayConverter"
    arrow_type = pa.binary()
