"""Payload values for Kafka Connect's JSON envelopes: Arrow columns ↔ what their JSON payload holds
(base64 bytes and decimals, integer times and timestamps, interval structs), and the DuckDB helpers
that write and parse payloads.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from integrations.converters.base import (
    bytes_to_decimal,
    decimal_to_bytes,
    interval_from_struct,
    interval_to_struct,
)
from integrations.converters.json import ConversionError, _duck
from integrations.converters.json_pairs import from_pairs_sql, json_rows, nonfinite_json_sql, structure_type
from integrations.converters.json_schema_types import connect_schema


def _from_base64(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    con = _duck()
    con.register("_hr_b64", pa.table({"s": arr}))
    try:
        return con.sql("SELECT from_base64(s) AS b FROM _hr_b64").to_arrow_table().column(0).combine_chunks()
    except Exception as e:  # noqa: BLE001 (duckdb raises its own classes)
        raise ConversionError(f"invalid base64 in bytes/decimal field: {e}") from e
    finally:
        con.unregister("_hr_b64")


def _to_base64(arr: pa.Array) -> pa.Array:
    con = _duck()
    con.register("_hr_b64e", pa.table({"b": arr}))
    try:
        return con.sql("SELECT to_base64(b) AS s FROM _hr_b64e").to_arrow_table().column(0).combine_chunks()
    finally:
        con.unregister("_hr_b64e")


def _payload_leaf(a: pa.Array, decimal_format: str) -> pa.Array:
    """A non-nested array nested in a list/struct/map, as the values its JSON payload holds."""
    t = a.type
    if pa.types.is_decimal(t):
        return a if decimal_format == "numeric" else _to_base64(decimal_to_bytes(a))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _to_base64(a.cast(pa.binary()))
    if pa.types.is_interval(t):
        return interval_to_struct(a)
    if pa.types.is_timestamp(t):
        return (a.cast(pa.timestamp("ms", tz=t.tz)) if t.unit == "s" else a).cast(pa.int64())
    if pa.types.is_date(t):
        return (a.cast(pa.date32()) if pa.types.is_date64(t) else a).cast(pa.int32())
    if pa.types.is_time32(t):
        return (a.cast(pa.time32("ms")) if t.unit == "s" else a).cast(pa.int32())
    if pa.types.is_time64(t):
        return a.cast(pa.int64())
    _, ptype = connect_schema(t, True, decimal_format)
    return a if ptype == t else a.cast(ptype)


def _from_payload_leaf(a: pa.Array, t: pa.DataType | None) -> pa.Array:
    """A parsed payload array back to its final Arrow type (the inverse of ``_payload_leaf``)."""
    if t is None or a.type == t:
        return a
    if pa.types.is_interval(t):
        return interval_from_struct(a)
    if pa.types.is_decimal(t):
        return bytes_to_decimal(_from_base64(a), t) if pa.types.is_string(a.type) else a.cast(t)
    if pa.types.is_binary(t):
        return _from_base64(a)
    return a.cast(t)


def _duck_type(t: pa.DataType) -> str:
    """The DuckDB type of a payload's parsed Arrow type."""
    simple = {pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
              pa.int64(): "BIGINT", pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}
    if t in simple:
        return simple[t]
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_list(t):
        return _duck_type(t.value_type) + "[]"
    if pa.types.is_map(t):
        return f"MAP({_duck_type(t.key_type)}, {_duck_type(t.item_type)})"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f"{_q(f.name)} {_duck_type(f.type)}" for f in t) + ")"
    raise ConversionError(f"no DuckDB type for the payload type {t}")


def _parse_with_maps(payloads: pa.Array, parsed: pa.Schema) -> pa.Table:
    """Parse payloads whose schema holds a map (which ``pyarrow.json`` cannot read) with DuckDB's
    ``json_transform_strict``, vectorised; the result has the ``parsed`` types."""
    struct = pa.struct(list(parsed))
    structure = orjson.dumps(structure_type(struct, _duck_type)).decode().replace("'", "''")
    parse = from_pairs_sql(f"json_transform_strict(j, '{structure}')", struct, _duck_type)
    return pa.Table.from_struct_array(json_rows(payloads, parse, "payload").cast(struct))


def _has_nonfinite(col: pa.ChunkedArray | pa.Array) -> bool:
    return not pc.all(pc.fill_null(pc.is_finite(col), True)).as_py()


def _nonfinite_sql(name: str) -> str:
    """NaN and ±Infinity as JSON strings, as Kafka Connect's JsonConverter (Jackson) writes them."""
    return f"{nonfinite_json_sql(name)} AS {name}"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _join_lines(arr: pa.Array) -> bytes:
    """Newline-join a binary column without a Python loop."""
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(arr)], pa.int32()), arr), b"\n")
    return joined[0].as_py()
