"""Arrow type names in configuration (``decimal(12,2)``, ``timestamp[us, tz=UTC]``) and their parsing."""

from __future__ import annotations

import re

import pyarrow as pa

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
