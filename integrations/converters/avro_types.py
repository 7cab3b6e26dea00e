"""Arrow types ↔ Avro schemas, as the Avro converter registers and reads them.

Arrow → Avro: bool→boolean, int8/16/32→int, int64→long, float32→float, float64→double, string,
binary→bytes, decimal→bytes+decimal, timestamp[s|ms]→timestamp-millis, timestamp[us]→
timestamp-micros (naive timestamps: local-timestamp-*), date→date, time[ms]→time-millis,
time[us]→time-micros, time[ns]→long named io.debezium.time.NanoTime, list→array, struct→record,
map<string, …>→map, nullable→``["null", T]`` with default null; logical types nested in arrays,
records and maps are mapped the same way.

Avro → Arrow for unions wider than ``["null", T]``: a struct with one nullable field per non-null
branch, named as Confluent's AvroConverter names them (``string``, ``long``, a record's simple
name…); exactly one field is set per value and the struct is null for the null branch.

fastavro reads and writes the schemas with their logical annotations stripped (:func:`strip_logical`,
:func:`reader_schema`); :func:`arrow_types` gives both the final Arrow type and the raw one fastavro's
values fit.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from integrations.converters.json import ConversionError

NANO_TIME = "io.debezium.time.NanoTime"  # nanoseconds since midnight, as Debezium names them


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _avro_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "record"
    return name if not name[0].isdigit() else "_" + name


# -- Arrow → Avro ------------------------------------------------------------------------------------

def avro_type(t: pa.DataType, path: str) -> Any:
    """The Avro schema (with logical types) of an Arrow type."""
    if pa.types.is_dictionary(t):
        return avro_type(t.value_type, path)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t):  # Confluent's AvroConverter marks these the same way
        return {"type": "int", "connect.type": "int8" if pa.types.is_int8(t) else "int16"}
    if pa.types.is_int32(t) or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return "int"
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytes"
    if pa.types.is_decimal(t):
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if pa.types.is_timestamp(t):
        unit = "millis" if t.unit in ("s", "ms") else "micros" if t.unit == "us" else "nanos"
        out: dict[str, Any] = {"type": "long", "logicalType": f"{'local-' if t.tz is None else ''}timestamp-{unit}"}
        if t.tz is not None and t.tz.upper() not in ("UTC", "+00:00", "Z", "ETC/UTC"):
            out["headrace.timezone"] = t.tz
        return out
    if pa.types.is_date(t):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_time(t):
        if t.unit in ("s", "ms"):
            return {"type": "int", "logicalType": "time-millis"}
        if t.unit == "us":
            return {"type": "long", "logicalType": "time-micros"}
        # Avro has no time-nanos: a long named as Debezium's NanoTime is (as Confluent's converter
        # writes a named Connect int64), so nothing is truncated to microseconds
        return {"type": "long", "connect.name": NANO_TIME}
    if pa.types.is_interval(t):  # Avro's own duration loses nanoseconds and signs: a record instead
        return {"type": "record", "name": _avro_name(path) + "_interval", "headrace.logicalType": "interval",
                "fields": [{"name": "months", "type": "int"}, {"name": "days", "type": "int"},
                           {"name": "nanoseconds", "type": "long"}]}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"type": "array", "items": _nullable(avro_type(t.value_type, path + "_item"), t.value_field.nullable)}
    if pa.types.is_struct(t):
        return _record(list(t), _avro_name(path))
    if pa.types.is_map(t) and (pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)):
        return {"type": "map", "values": _nullable(avro_type(t.item_type, path + "_value"), True)}
    raise ConversionError(f"column {path!r}: Arrow type {t} has no Avro mapping")


def _nullable(s: Any, nullable: bool) -> Any:
    return ["null", s] if nullable else s


def _record(fields: list[pa.Field], name: str) -> dict[str, Any]:
    out = []
    for f in fields:
        if not _NAME_RE.match(f.name):
            raise ConversionError(f"column {f.name!r} is not a legal Avro field name ([A-Za-z_][A-Za-z0-9_]*); "
                                  "rename it with a ReplaceField transform")
        fs: dict[str, Any] = {"name": f.name, "type": _nullable(avro_type(f.type, f"{name}_{f.name}"), f.nullable)}
        if f.nullable:
            fs["default"] = None
        out.append(fs)
    return {"type": "record", "name": name, "fields": out}


def avro_schema(schema: pa.Schema, name: str, namespace: str = "headrace") -> dict[str, Any]:
    """The Avro record schema of a batch."""
    rec = _record(list(schema), _avro_name(name))
    rec["namespace"] = namespace
    return rec


def strip_logical(s: Any) -> Any:
    """A copy of an Avro schema without logical types (fastavro then reads/writes raw ints/bytes)."""
    if isinstance(s, list):
        return [strip_logical(x) for x in s]
    if isinstance(s, dict):
        out = {k: strip_logical(v) for k, v in s.items() if k != "logicalType"}
        if "fields" in s:
            out["fields"] = [{**f, "type": strip_logical(f["type"])} for f in s["fields"]]
        return out
    return s


# -- Avro → Arrow ------------------------------------------------------------------------------------

_PRIMITIVES = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
               "double": pa.float64(), "string": pa.string(), "bytes": pa.binary(), "null": pa.null()}


def union_member_names(branches: list[Any]) -> list[str]:
    """Field names for the non-null branches of an Avro union, as Confluent's AvroConverter names them:
    the type's name (``string``, ``long``, ``array``, …; a logical type keeps its base type's name) or,
    for a record, enum or fixed, its simple name. A repeated name gets the branch's position as suffix."""
    names: list[str] = []
    for i, b in enumerate(branches):
        if isinstance(b, dict):
            typ = b.get("type")
            name = b["name"] if typ in ("record", "enum", "fixed") and "name" in b else typ
            if isinstance(name, (dict, list)):
                name = union_member_names([name])[0]
        else:
            name = b
        name = str(name).rsplit(".", 1)[-1]
        names.append(f"{name}_{i}" if name in names else name)
    return names


def reader_schema(s: Any) -> Any:
    """A stripped schema with each wider union's branches wrapped in one-field records.

    A record of one field has the same binary encoding as the field alone, so this reads the same
    bytes, while fastavro now returns ``{member_name: value}`` per union value: the branch it took,
    which plain values cannot tell apart (``int`` vs ``long``, two records).
    """
    counter = [0]

    def walk(x: Any) -> Any:
        if isinstance(x, list):
            branches = [b for b in x if b != "null"]
            if len(branches) < 2:
                return [walk(b) for b in x]
            names = iter(union_member_names(branches))
            out = []
            for b in x:
                if b == "null":
                    out.append(b)
                    continue
                counter[0] += 1
                out.append({"type": "record", "name": f"headrace_union_{counter[0]}",
                            "fields": [{"name": next(names), "type": walk(b)}]})
            return out
        if isinstance(x, dict):
            out = dict(x)
            if "fields" in x:
                out["fields"] = [{**f, "type": walk(f["type"])} for f in x["fields"]]
            for key in ("items", "values"):
                if key in x:
                    out[key] = walk(x[key])
            if isinstance(x.get("type"), (list, dict)):
                out["type"] = walk(x["type"])
            return out
        return x

    return walk(strip_logical(s))


def arrow_types(s: Any, named: dict[str, Any] | None = None) -> tuple[pa.DataType, pa.DataType, bool]:
    """(final Arrow type, raw Arrow type fastavro's raw values fit, nullable) of an Avro schema."""
    named = {} if named is None else named
    if isinstance(s, list):
        branches = [b for b in s if b != "null"]
        nullable = len(branches) < len(s)
        if not branches:
            return pa.null(), pa.null(), True
        if len(branches) == 1:
            f, r, _ = arrow_types(branches[0], named)
            return f, r, nullable
        # a wider union: a struct with one nullable field per non-null branch, one of them set per value
        ff, rf = [], []
        for name, b in zip(union_member_names(branches), branches, strict=True):
            f, r, _ = arrow_types(b, named)
            ff.append(pa.field(name, f))
            rf.append(pa.field(name, r))
        return pa.struct(ff), pa.struct(rf), nullable
    if isinstance(s, str):
        ref = named.get(s) or named.get(s.rsplit(".", 1)[-1])
        if ref is not None:
            return arrow_types(ref, named)
        if s not in _PRIMITIVES:
            raise ConversionError(f"unknown Avro type {s!r}")
        return _PRIMITIVES[s], _PRIMITIVES[s], s == "null"
    typ, logical = s.get("type"), s.get("logicalType")
    if logical == "decimal" and typ in ("bytes", "fixed"):
        if typ == "fixed":
            named[s["name"]] = s
        return pa.decimal128(int(s["precision"]), int(s.get("scale", 0))), pa.binary(), False
    if logical and logical.endswith(("timestamp-millis", "timestamp-micros", "timestamp-nanos")):
        unit = {"millis": "ms", "micros": "us", "nanos": "ns"}[logical.rsplit("-", 1)[1]]
        tz = None if logical.startswith("local-") else s.get("headrace.timezone", "UTC")
        return pa.timestamp(unit, tz=tz), pa.int64(), False
    if logical == "date":
        return pa.date32(), pa.int32(), False
    if typ == "int" and s.get("connect.type") in ("int8", "int16"):
        return (pa.int8() if s["connect.type"] == "int8" else pa.int16()), pa.int32(), False
    if logical == "time-millis":
        return pa.time32("ms"), pa.int32(), False
    if logical == "time-micros":
        return pa.time64("us"), pa.int64(), False
    if typ == "long" and s.get("connect.name") == NANO_TIME:
        return pa.time64("ns"), pa.int64(), False
    if typ == "record" and s.get("headrace.logicalType") == "interval":
        named[s["name"]] = s
        return pa.month_day_nano_interval(), pa.struct([("months", pa.int32()), ("days", pa.int32()),
                                                        ("nanoseconds", pa.int64())]), False
    if typ == "record":
        named[s["name"]] = s
        if s.get("namespace"):
            named[f"{s['namespace']}.{s['name']}"] = s
        ff, rf = [], []
        for fld in s["fields"]:
            f, r, nullable = arrow_types(fld["type"], named)
            ff.append(pa.field(fld["name"], f, nullable))
            rf.append(pa.field(fld["name"], r, nullable))
        return pa.struct(ff), pa.struct(rf), False
    if typ == "array":
        f, r, nullable = arrow_types(s["items"], named)
        return pa.list_(pa.field("item", f, nullable)), pa.list_(pa.field("item", r, nullable)), False
    if typ == "map":
        f, r, _ = arrow_types(s["values"], named)
        return pa.map_(pa.string(), f), pa.map_(pa.string(), r), False
    if typ == "enum":
        named[s["name"]] = s
        return pa.string(), pa.string(), False
    if typ == "fixed":
        named[s["name"]] = s
        return pa.binary(), pa.binary(), False
    return arrow_types(typ, named)


def _is_record(s: Any) -> bool:
    """True for a record schema (or ``["null", record]``): its fields become the table's columns."""
    if isinstance(s, list):
        branches = [b for b in s if b != "null"]
        return len(branches) == 1 and _is_record(branches[0])
    return (isinstance(s, dict) and s.get("type") == "record"
            and s.get("headrace.logicalType") != "interval")


def _wrap(schema: Any) -> dict[str, Any]:
    """A record of one field ``v``: encoded exactly as the field's own schema."""
    return {"type": "record", "name": "headrace_primitive", "fields": [{"name": "v", "type": schema}]}
