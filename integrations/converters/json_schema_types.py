"""Arrow types ↔ Kafka Connect's JSON schemas (``type``, ``fields``/``items``, ``optional``, ``name``,
``version``, ``parameters``, ``field``), with the Arrow type each payload is written or parsed as.

Logical types:

- decimal → ``org.apache.kafka.connect.data.Decimal`` (bytes; payload base64 of the big-endian
  two's-complement unscaled value, or a JSON number with ``decimal_format: numeric``);
- date → ``org.apache.kafka.connect.data.Date`` (int32 days), time[ms] → ``...Time`` (int32 ms),
  timestamp[s|ms] → ``...Timestamp`` (int64 ms);
- microsecond/nanosecond times and timestamps (which Connect's own types would truncate) use
  Debezium's ``io.debezium.time.MicroTimestamp``/``NanoTimestamp``/``MicroTime``/``NanoTime``;
  a naive timestamp carries the parameter ``headrace.naive=true``, a non-UTC zone
  ``headrace.timezone``.

Logical types nested in arrays, structs and maps are mapped the same way.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from integrations.converters.json import ConversionError

DECIMAL = "org.apache.kafka.connect.data.Decimal"
DATE = "org.apache.kafka.connect.data.Date"
TIME = "org.apache.kafka.connect.data.Time"
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
MICRO_TS, NANO_TS = "io.debezium.time.MicroTimestamp", "io.debezium.time.NanoTimestamp"
MICRO_TIME, NANO_TIME = "io.debezium.time.MicroTime", "io.debezium.time.NanoTime"
INTERVAL = "headrace.Interval"  # struct {months int32, days int32, nanoseconds int64}


_PRIMS: list[tuple[Any, str]] = [
    (pa.types.is_boolean, "boolean"), (pa.types.is_int8, "int8"), (pa.types.is_int16, "int16"),
    (pa.types.is_int32, "int32"), (pa.types.is_int64, "int64"), (pa.types.is_uint8, "int16"),
    (pa.types.is_uint16, "int32"), (pa.types.is_uint32, "int64"), (pa.types.is_uint64, "int64"),
    (pa.types.is_float16, "float"), (pa.types.is_float32, "float"), (pa.types.is_float64, "double"),
    (pa.types.is_string, "string"), (pa.types.is_large_string, "string"), (pa.types.is_null, "string"),
]
_CONNECT_TO_ARROW = {
    "boolean": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "float": pa.float32(), "double": pa.float64(), "string": pa.string(),
}


def _tz_params(t: pa.TimestampType) -> dict[str, str] | None:
    if t.tz is None:
        return {"headrace.naive": "true"}
    if t.tz.upper() not in ("UTC", "+00:00", "Z", "ETC/UTC"):
        return {"headrace.timezone": t.tz}
    return None


def connect_schema(t: pa.DataType, optional: bool, decimal_format: str) -> tuple[dict[str, Any], pa.DataType]:
    """Kafka Connect's JSON schema for an Arrow type, and the Arrow type its payload is written as."""
    def out(typ: str, payload: pa.DataType, name: str | None = None, params: dict[str, str] | None = None,
            **extra: Any) -> tuple[dict[str, Any], pa.DataType]:
        s: dict[str, Any] = {"type": typ, **extra, "optional": optional}
        if name:
            s["name"] = name
            s["version"] = 1
        if params:
            s["parameters"] = params
        return s, payload

    if pa.types.is_dictionary(t):
        return connect_schema(t.value_type, optional, decimal_format)
    for test, name in _PRIMS:
        if test(t):
            return out(name, _CONNECT_TO_ARROW[name])
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return out("bytes", pa.binary())
    if pa.types.is_decimal(t):
        params = {"scale": str(t.scale), "connect.decimal.precision": str(t.precision)}
        return out("bytes", t if decimal_format == "numeric" else pa.binary(), DECIMAL, params)
    if pa.types.is_timestamp(t):
        name = {"s": TIMESTAMP, "ms": TIMESTAMP, "us": MICRO_TS, "ns": NANO_TS}[t.unit]
        return out("int64", pa.int64(), name, _tz_params(t))
    if pa.types.is_date(t):
        return out("int32", pa.int32(), DATE)
    if pa.types.is_time(t):
        if t.unit in ("s", "ms"):
            return out("int32", pa.int32(), TIME)
        return out("int64", pa.int64(), MICRO_TIME if t.unit == "us" else NANO_TIME)
    if pa.types.is_interval(t):
        fields = [{"type": "int32", "optional": False, "field": "months"},
                  {"type": "int32", "optional": False, "field": "days"},
                  {"type": "int64", "optional": False, "field": "nanoseconds"}]
        return out("struct", pa.struct([("months", pa.int32()), ("days", pa.int32()), ("nanoseconds", pa.int64())]),
                   INTERVAL, fields=fields)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        item, item_payload = connect_schema(t.value_type, t.value_field.nullable, decimal_format)
        return out("array", pa.list_(item_payload), items=item)
    if pa.types.is_struct(t):
        fields, payload = _struct_fields(list(t), decimal_format)
        return out("struct", payload, fields=fields)
    if pa.types.is_map(t):
        k, kp = connect_schema(t.key_type, False, decimal_format)
        v, vp = connect_schema(t.item_type, True, decimal_format)
        return out("map", pa.map_(kp, vp), keys=k, values=v)
    raise ConversionError(f"type {t} has no Kafka Connect schema equivalent")


def _struct_fields(fields: list[pa.Field], decimal_format: str) -> tuple[list[dict[str, Any]], pa.DataType]:
    out, payload = [], []
    for f in fields:
        s, p = connect_schema(f.type, f.nullable, decimal_format)
        s["field"] = f.name
        out.append(s)
        payload.append(pa.field(f.name, p))
    return out, pa.struct(payload)


def envelope_schema(schema: pa.Schema, decimal_format: str = "base64", name: str | None = None) -> dict[str, Any]:
    """The top-level struct schema of a batch."""
    fields, _ = _struct_fields(list(schema), decimal_format)
    s: dict[str, Any] = {"type": "struct", "fields": fields, "optional": False}
    if name:
        s["name"] = name
    return s


# -- decoding: Connect schema → Arrow --------------------------------------------------------------

def arrow_type(s: dict[str, Any], decimal_format: str) -> tuple[pa.DataType, pa.DataType]:
    """(final Arrow type, Arrow type the JSON payload is parsed as) for a Connect schema."""
    typ, name, params = s.get("type"), s.get("name"), s.get("parameters") or {}
    if name == DECIMAL:
        scale = int(params.get("scale", 0))
        prec = int(params.get("connect.decimal.precision", 38))
        final = pa.decimal128(prec, scale)
        return final, (final if decimal_format == "numeric" else pa.string())
    if name in (TIMESTAMP, MICRO_TS, NANO_TS):
        unit = {TIMESTAMP: "ms", MICRO_TS: "us", NANO_TS: "ns"}[name]
        tz = None if params.get("headrace.naive") == "true" else params.get("headrace.timezone", "UTC")
        return pa.timestamp(unit, tz=tz), pa.int64()
    if name == DATE:
        return pa.date32(), pa.int32()
    if name == INTERVAL:
        return pa.month_day_nano_interval(), pa.struct([("months", pa.int32()), ("days", pa.int32()),
                                                        ("nanoseconds", pa.int64())])
    if name in (TIME, MICRO_TIME, NANO_TIME):
        return ({TIME: pa.time32("ms"), MICRO_TIME: pa.time64("us"), NANO_TIME: pa.time64("ns")}[name],
                pa.int32() if name == TIME else pa.int64())
    if typ in _CONNECT_TO_ARROW:
        return _CONNECT_TO_ARROW[typ], _CONNECT_TO_ARROW[typ]
    if typ == "bytes":
        return pa.binary(), pa.string()
    if typ == "array":
        f, p = arrow_type(s["items"], decimal_format)
        return pa.list_(f), pa.list_(p)
    if typ == "struct":
        fs, ps = [], []
        for fld in s.get("fields", []):
            f, p = arrow_type(fld, decimal_format)
            fs.append(pa.field(fld["field"], f, nullable=fld.get("optional", True)))
            ps.append(pa.field(fld["field"], p))
        return pa.struct(fs), pa.struct(ps)
    if typ == "map":
        kf, kp = arrow_type(s["keys"], decimal_format)
        vf, vp = arrow_type(s["values"], decimal_format)
        return pa.map_(kf, vf), pa.map_(kp, vp)
    raise ConversionError(f"unsupported Kafka Connect schema type {typ!r}")
