"""Arrow type names in configuration (``decimal(12,2)``, ``timestamp[us, tz=UTC]``) and their parsing,
and the representation of types a target format cannot store (:func:`parquet_writable`)."""

from __future__ import annotations

import re

import pyarrow as pa

from integrations.converters.base import convert_nested, interval_to_struct, nested_has
from integrations.errors import ConfigError

_SIMPLE: dict[str, pa.DataType] = {
    "bool": pa.bool_(), "boolean": pa.bool_(),
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float": pa.float32(), "float64": pa.float64(), "double": pa.float64(),
    "string": pa.string(), "utf8": pa.string(), "large_string": pa.large_string(),
    "binary": pa.binary(), "date32": pa.date32(), "date": pa.date32(),
    "time64[us]": pa.time64("us"), "time": pa.time64("us"),
}
_DEC = re.compile(r"^decimal(?:128)?\((\d+),\s*(-?\d+)\)$")
_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")


def parse_type(text: str, field: str = "") -> pa.DataType:
    """Parse an Arrow type name as written in connector YAML; raise ConfigError naming what is allowed."""
    t = text.strip().lower() if not text.strip().lower().startswith("timestamp") else text.strip()
    if t in _SIMPLE:
        return _SIMPLE[t]
    if m := _DEC.match(t):
        precision, scale = int(m.group(1)), int(m.group(2))
        if not 1 <= precision <= 38:
            raise ConfigError(f"column {field!r}: decimal precision must be 1..38, got {precision}")
        return pa.decimal128(precision, scale)
    if m := _TS.match(t):
        return pa.timestamp(m.group(1), tz=m.group(2))
    allowed = ", ".join([*_SIMPLE, "decimal(p,s)", "timestamp[us]", "timestamp[us, tz=UTC]"])
    raise ConfigError(f"column {field!r}: unknown type {text!r}; allowed: {allowed}")


def schema_from_mapping(mapping: dict[str, str]) -> pa.Schema:
    """An Arrow schema from ``{column: type name}``."""
    return pa.schema([pa.field(name, parse_type(t, name)) for name, t in mapping.items()])


#: Field metadata marking a column written as :data:`INTERVAL_STRUCT` in place of an interval.
INTERVAL_META = {b"headrace.logical": b"interval"}


def _is_interval(t: pa.DataType) -> bool:
    return pa.types.is_interval(t)


def parquet_writable(table: pa.Table) -> pa.Table:
    """``table`` with every type Parquet cannot store replaced by its documented representation.

    Parquet has no month/day/nanosecond interval (its own INTERVAL logical type keeps unsigned
    milliseconds, and pyarrow cannot write it), so ``month_day_nano_interval`` columns, also inside
    lists and structs, become ``struct<months: int32, days: int32, nanoseconds: int64>``: the three
    components exactly as PostgreSQL keeps them (``1 mon -2 days`` stays two components of different
    signs), the same struct as the ``json_schema`` envelope's ``headrace.Interval`` and the Avro
    converter's, and read back to an interval with ``converters.base.interval_from_struct``. An
    ISO-8601 string would round-trip too but must be parsed before any arithmetic. The field gets
    the metadata ``headrace.logical: interval``. Other columns are returned untouched (zero-copy)."""
    if not any(nested_has(f.type, _is_interval) for f in table.schema):
        return table
    for i, f in enumerate(table.schema):
        if not nested_has(f.type, _is_interval):
            continue
        col = table.column(i)
        chunks = [convert_nested(c, _interval_leaf) for c in col.chunks] if col.num_chunks else []
        typ = chunks[0].type if chunks else _written_type(f.type)
        new = pa.chunked_array(chunks, type=typ)
        meta = {**(f.metadata or {}), **INTERVAL_META}
        table = table.set_column(i, pa.field(f.name, typ, f.nullable, metadata=meta), new)
    return table


def _interval_leaf(a: pa.Array, _t: pa.DataType | None) -> pa.Array:
    return interval_to_struct(a) if pa.types.is_interval(a.type) else a


def _written_type(t: pa.DataType) -> pa.DataType:
    """The type :func:`parquet_writable` gives a column of type ``t`` (for empty columns)."""
    return convert_nested(pa.array([], t), _interval_leaf).type

