"""Avro with the Confluent Schema Registry wire format: magic byte 0, a 4-byte big-endian schema id,
then the Avro binary payload. Schemas are registered (``<topic>-value`` / ``<topic>-key``, the
TopicNameStrategy) and fetched through confluent-kafka's ``SchemaRegistryClient``.

Avro has no columnar encoder in Python, so the per-record work is fastavro's C encoder/decoder and
nothing else: logical types (decimal, timestamps, dates, times) are converted to and from their raw
Avro representation per column with Arrow/numpy, fastavro sees schemas with the logical annotations
stripped, messages are framed by building one Arrow binary array from a single buffer, and decoding
reads every payload of a schema id from one stream.

Arrow → Avro: bool→boolean, int8/16/32→int, int64→long, float32→float, float64→double, string,
binary→bytes, decimal→bytes+decimal, timestamp[s|ms]→timestamp-millis, timestamp[us]→
timestamp-micros (naive timestamps: local-timestamp-*), date→date, time[ms]→time-millis,
time[us]→time-micros, time[ns]→long named io.debezium.time.NanoTime, list→array, struct→record,
map<string, …>→map, nullable→``["null", T]`` with default null; logical types nested in arrays,
records and maps are converted the same way. A primitive key or value (a ``__value__`` table) is
registered as its own schema (``"string"``, ``["null", "long"]``), and a non-record schema decodes into one column (``field``, default ``value``).

Avro → Arrow for unions wider than ``["null", T]``: a struct with one nullable field per non-null
branch, named as Confluent's AvroConverter names them (``string``, ``long``, a record's simple
name…); exactly one field is set per value and the struct is null for the null branch.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from integrations.converters.avro_flat import decode_flat, encode_flat, flat_plan
from integrations.converters.avro_scatter import flat_array, string_parts
from integrations.converters.base import (
    PRIMITIVE_COLUMN,
    Converter,
    bytes_to_decimal,
    check_valid,
    convert_nested,
    decimal_to_bytes,
    interval_from_struct,
    interval_to_struct,
    nested_has,
)
from integrations.converters.json import ConversionError

MAGIC = 0


class RegistryUnavailable(ConnectionError):
    """The Schema Registry could not be reached (transient: retried under errors_retry_timeout)."""


NANO_TIME = "io.debezium.time.NanoTime"  # nanoseconds since midnight, as Debezium names them


def _registry_error(e: Exception, what: str) -> Exception:
    """A registry failure as a transient outage, or as a conversion error when the registry answered."""
    status = getattr(e, "http_status_code", None)
    if status is not None and 400 <= int(status) < 500:
        return ConversionError(f"{what}: {e}")
    return RegistryUnavailable(f"{what}: schema registry unavailable: {e}")
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


def _to_raw(col: pa.ChunkedArray | pa.Array, t: pa.DataType, name: str) -> pa.ChunkedArray | pa.Array:
    """A column in the representation fastavro writes for the stripped schema (nested values too)."""
    try:
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or pa.types.is_map(t):
            if not nested_has(t, _needs_raw):
                return col
            return convert_nested(col, lambda a, _t: _leaf_to_raw(a, name))
        return _leaf_to_raw(col, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConversionError(f"column {name!r}: {t} cannot be written as Avro: {e}") from e


def _needs_raw(t: pa.DataType) -> bool:
    return (pa.types.is_decimal(t) or pa.types.is_temporal(t) or pa.types.is_interval(t)
            or pa.types.is_dictionary(t) or pa.types.is_uint64(t) or pa.types.is_null(t))


def _leaf_to_raw(col: pa.ChunkedArray | pa.Array, name: str) -> pa.ChunkedArray | pa.Array:
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_decimal(t):
        return decimal_to_bytes(col)
    if pa.types.is_interval(t):
        return interval_to_struct(col)
    if pa.types.is_timestamp(t):
        unit = "ms" if t.unit == "s" else t.unit
        return (col.cast(pa.timestamp(unit, tz=t.tz)) if unit != t.unit else col).cast(pa.int64())
    if pa.types.is_date64(t):
        return col.cast(pa.date32()).cast(pa.int32())
    if pa.types.is_date32(t):
        return col.cast(pa.int32())
    if pa.types.is_time32(t):
        return (col.cast(pa.time32("ms")) if t.unit == "s" else col).cast(pa.int32())
    if pa.types.is_time64(t):
        return col.cast(pa.int64())
    if pa.types.is_uint64(t):
        try:
            return col.cast(pa.int64())
        except pa.ArrowInvalid as e:
            raise ConversionError(f"column {name!r}: a uint64 value does not fit Avro's long: {e}") from e
    if pa.types.is_null(t):
        return col.cast(pa.string())
    return col


def _leaf_from_raw(col: pa.Array, t: pa.DataType | None) -> pa.Array:
    if t is None or col.type == t:
        return col
    if pa.types.is_interval(t):
        return interval_from_struct(col)
    if pa.types.is_decimal(t):
        return bytes_to_decimal(col, t)
    return col.cast(t)


def _is_record(s: Any) -> bool:
    """True for a record schema (or ``["null", record]``): its fields become the table's columns."""
    if isinstance(s, list):
        branches = [b for b in s if b != "null"]
        return len(branches) == 1 and _is_record(branches[0])
    return (isinstance(s, dict) and s.get("type") == "record"
            and s.get("headrace.logicalType") != "interval")


class _ReadPlan:
    """Everything needed to decode one schema id.

    A schema that is not a record (a primitive key or value, e.g. ``"string"`` or
    ``["null", "string"]``) is read as a record of one field, named ``field``: the same bytes.
    """

    def __init__(self, schema_str: str) -> None:
        schema = orjson.loads(schema_str)
        self.wrap = not _is_record(schema)
        if self.wrap:
            schema = _wrap(schema)
        self.final, self.raw, _ = arrow_types(schema)
        self.parsed = parse_schema(reader_schema(schema))
        self.flat = flat_plan(schema)


def _wrap(schema: Any) -> dict[str, Any]:
    """A record of one field ``v``: encoded exactly as the field's own schema."""
    return {"type": "record", "name": "headrace_primitive", "fields": [{"name": "v", "type": schema}]}


class AvroConverter(Converter):
    """Confluent's AvroConverter: Arrow batches ↔ Schema Registry framed Avro.

    A tombstone (a null-typed ``__value__``) is a Kafka null and registers no schema; a null of a typed
    primitive is written as the union's null branch, so that it decodes back to a null field."""

    class_name = "io.confluent.connect.avro.AvroConverter"
    encodes_typed_nulls = True

    def __init__(self, url: str, client_config: dict[str, str] | None = None, is_key: bool = False,
                 auto_register: bool = True, client: Any = None, field: str = "value") -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf = {"url": url, **(client_config or {})}
        # new_client() gives confluent-kafka's in-memory registry for mock:// URLs
        self.client = client or (SchemaRegistryClient.new_client(conf) if url.startswith("mock://")
                                 else SchemaRegistryClient(conf))
        self.is_key = is_key
        self.auto_register = auto_register
        self.field = field  # the column a primitive (non-record) key or value decodes into
        self._writers: dict[tuple[str, pa.Schema], tuple[bytes, Any, Any]] = {}
        self._readers: dict[int, _ReadPlan] = {}

    @property
    def self_describing(self) -> bool:
        return True

    def subject(self, topic: str) -> str:
        """TopicNameStrategy: ``<topic>-value`` or ``<topic>-key``."""
        return f"{topic}-{'key' if self.is_key else 'value'}"

    def writer_for(self, schema: pa.Schema, topic: str) -> tuple[bytes, Any, Any]:
        """(5-byte header, parsed raw schema, flat plan or None) for a batch schema, registered on first use."""
        key = (topic, schema)
        hit = self._writers.get(key)
        if hit is not None:
            return hit
        from confluent_kafka.schema_registry import Schema

        name = f"{topic}_{'key' if self.is_key else 'value'}"
        if schema.names == [PRIMITIVE_COLUMN] and not pa.types.is_struct(schema.field(0).type):
            # a primitive key or value: registered as its own schema ("string", ["null", "string"], ...),
            # written through a one-field record, which has the same encoding
            f = schema.field(0)
            registered = _nullable(avro_type(f.type, _avro_name(name)), f.nullable)
            avro = _wrap(registered)
        else:
            registered = avro = avro_schema(schema, name)
        sr_schema = Schema(orjson.dumps(registered).decode(), "AVRO")
        subject = self.subject(topic)
        try:
            if self.auto_register:
                schema_id = self.client.register_schema(subject, sr_schema)
            else:
                schema_id = self.client.lookup_schema(subject, sr_schema).schema_id
        except Exception as e:  # noqa: BLE001 (the registry client raises several classes)
            raise _registry_error(e, f"registering the schema for subject {subject!r}") from e
        out = (bytes([MAGIC]) + int(schema_id).to_bytes(4, "big"), parse_schema(strip_logical(avro)),
               flat_plan(avro))
        self._writers[key] = out
        return out

    def encode_values(self, table: pa.Table, topic: str = "") -> pa.Array:
        """Framed Avro messages, one per row, as an Arrow binary column."""
        if table.num_rows == 0:
            return pa.array([], pa.binary())
        header, parsed, flat = self.writer_for(table.schema, topic)
        if flat is not None:  # vectorised: no Python per record; decimals are written from Decimal128 directly
            cols = [c if pa.types.is_decimal128(f.type) else _to_raw(c, f.type, f.name)
                    for f, c in zip(table.schema, table.columns, strict=True)]
            return encode_flat(cols, flat, header)
        cols = [_to_raw(c, f.type, f.name) for f, c in zip(table.schema, table.columns, strict=True)]
        names = [f["name"] for f in parsed["fields"]]  # "v" for a primitive written as a one-field record
        records = pa.table(cols, names=names).to_pylist(maps_as_pydicts="strict")
        return frame_records(records, header, parsed)

    def encode_keys(self, table: pa.Table, columns: Sequence[str], topic: str = "") -> list | None:
        if not columns:
            return None
        return self.encode_values(table.select(list(columns)), topic).to_pylist()

    def _plan(self, schema_id: int) -> _ReadPlan:
        plan = self._readers.get(schema_id)
        if plan is None:
            try:
                schema_str = self.client.get_schema(schema_id).schema_str
            except Exception as e:  # noqa: BLE001
                raise _registry_error(e, f"fetching schema id {schema_id}") from e
            plan = self._readers[schema_id] = _ReadPlan(schema_str)
        return plan

    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None, topic: str = "") -> pa.Table:
        """Framed Avro messages → a table typed by the writer schemas (``schema`` is ignored)."""
        n = len(values)
        if n == 0:
            return pa.table({})
        arr = pa.array(values, pa.binary())
        header = single_header(arr)
        if header is not None:
            return self._decode_one(header, arr, n)
        headers = pc.binary_slice(arr, 0, 5)
        parts, order = [], []
        for h in pc.unique(headers).to_pylist():
            idx = pc.indices_nonzero(pc.equal(headers, pa.scalar(h, pa.binary())))
            parts.append(self._decode_one(h, arr.take(idx), len(idx)))
            order.append(idx)
        table = pa.concat_tables(parts, promote_options="permissive")
        return table.take(pc.sort_indices(pa.concat_arrays(order)))

    def _decode_one(self, header: bytes, messages: pa.Array, n: int) -> pa.Table:
        """Decode messages that all start with ``header`` (magic byte and schema id)."""
        if header[0] != MAGIC:
            raise ConversionError(f"unknown magic byte {header[0]} (expected 0: Schema Registry wire format)")
        plan = self._plan(int.from_bytes(header[1:5], "big"))
        if plan.flat is not None:  # vectorised: no Python per record
            table = finish(decode_flat(messages, plan.flat, plan.raw, skip=5, final=plan.final), plan.raw, plan.final)
        else:
            payloads = pc.binary_slice(messages, 5, pc.max(pc.binary_length(messages)).as_py())
            blob = _concat(payloads)
            fo = io.BytesIO(blob)
            parsed = plan.parsed
            try:
                records = [schemaless_reader(fo, parsed, None) for _ in range(n)]
            except Exception as e:  # noqa: BLE001 (fastavro raises EOFError, UnicodeDecodeError, ValueError...)
                raise ConversionError(f"Avro payload does not match its schema: {type(e).__name__}: {e}") from e
            if fo.tell() != len(blob):
                raise ConversionError("Avro payloads do not match their schema (trailing bytes)")
            table = to_table(records, plan.raw, plan.final)
        return table.rename_columns([self.field]) if plan.wrap else table


def single_header(arr: pa.Array) -> bytes | None:
    """The 5-byte header shared by every message, or None when they differ; short messages are refused."""
    arr = flat_array(arr)
    offsets, data = string_parts(arr)
    start = offsets[:-1]
    if (np.diff(offsets) < 5).any():
        raise ConversionError("message shorter than the 5-byte Schema Registry header")
    first = bytes(data[start[0]:start[0] + 5])
    for k, byte in enumerate(first):
        if (data[start + k] != byte).any():
            return None
    return first


def frame_records(records: list[dict[str, Any]], header: bytes, parsed: Any) -> pa.Array:
    """Write each record as ``header + Avro`` into one buffer; return them as a binary column."""
    buf = io.BytesIO()
    write, tell = buf.write, buf.tell
    ends = [0]
    push = ends.append
    for rec in records:
        write(header)
        schemaless_writer(buf, parsed, rec)
        push(tell())
    data = buf.getbuffer()
    typ, otype = (pa.binary(), pa.int32()) if ends[-1] < 2**31 else (pa.large_binary(), pa.int64())
    offsets = pa.array(ends, otype)
    return pa.Array.from_buffers(typ, len(records), [None, offsets.buffers()[1], pa.py_buffer(bytes(data))])


def to_table(records: list[dict[str, Any]], raw: pa.StructType, final: pa.StructType) -> pa.Table:
    """Raw decoded records → a table with the final (logical) types, converted per column."""
    try:
        struct = pa.array(records, type=raw)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        raise ConversionError(f"decoded Avro values do not fit {raw}: {e}") from e
    return finish(pa.Table.from_struct_array(struct).columns, raw, final)


def finish(columns: list, raw: pa.StructType, final: pa.StructType) -> pa.Table:
    """Raw columns → the final (logical) types, converted per column; validated (UTF-8 included)."""
    cols = []
    for f, rf, col in zip(final, raw, columns, strict=True):
        if f.type != rf.type:
            col = convert_nested(col, _leaf_from_raw, f.type)
        cols.append(col)
    return check_valid(pa.table(cols, schema=pa.schema(list(final))))


def _concat(payloads: pa.Array) -> bytes:
    """The payloads back to back, without a Python loop."""
    if len(payloads) == 0:
        return b""
    lists = pa.ListArray.from_arrays(pa.array([0, len(payloads)], pa.int32()), payloads)
    return pc.binary_join(lists, b"")[0].as_py()
