"""Build the converter a connector's ``key_converter`` / ``value_converter`` settings ask for."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from integrations.config import ConverterConfig, resolve_env
from integrations.converters.base import PRIMITIVE_COLUMN, Converter, check_valid
from integrations.converters.json import JsonConverter

__all__ = ["PRIMITIVE_COLUMN", "PlainJsonConverter", "build_converter"]  # PRIMITIVE_COLUMN: see transforms.batch


class PlainJsonConverter(Converter):
    """Kafka Connect's JsonConverter with ``schemas.enable=false`` (delegates to ``JsonConverter``)."""

    class_name = "org.apache.kafka.connect.json.JsonConverter"

    def __init__(self, decimal_format: str = "numeric") -> None:
        self.json = JsonConverter(decimal_format=decimal_format)

    def encode_values(self, table: pa.Table, topic: str = "") -> pa.ChunkedArray:
        """One JSON object per row; a primitive value (a ``__value__`` table) as the bare JSON value."""
        if table.num_columns == 1 and table.column_names[0] == PRIMITIVE_COLUMN:
            return pa.chunked_array([pa.array(self.json.encode_keys(table, [PRIMITIVE_COLUMN]), pa.string())])
        return self.json.encode_array(table)

    def encode_keys(self, table: pa.Table, columns: Sequence[str], topic: str = "") -> list | None:
        return self.json.encode_keys(table, columns)

    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None, topic: str = "") -> pa.Table:
        """Parse with pyarrow.json, then validate (invalid UTF-8 in a string is an error here)."""
        return check_valid(self.json.decode(values, schema))


def build_converter(config: ConverterConfig, is_key: bool = False) -> Converter:
    """The converter for a config (``is_key`` picks the ``<topic>-key`` subject for Avro)."""
    kind = config.kind
    if kind == "json":
        return PlainJsonConverter(config.decimals)
    if kind == "json_schema":
        from integrations.converters.json_schema import JsonSchemaConverter

        return JsonSchemaConverter(decimal_format=config.decimals, field=config.field)
    if kind == "string":
        from integrations.converters.simple import StringConverter

        return StringConverter(config.field)
    if kind == "bytes":
        from integrations.converters.simple import BytesConverter

        return BytesConverter(config.field)
    if kind == "avro":
        from integrations.converters.avro import AvroConverter

        conf = {k: resolve_env(v) for k, v in config.schema_registry_config.items()}
        return AvroConverter(resolve_env(config.schema_registry_url or ""), conf, is_key=is_key,
                             auto_register=config.auto_register_schemas, field=config.field)
    raise ValueError(f"unknown converter type {config.type!r}")
