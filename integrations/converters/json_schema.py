"""Kafka Connect's JsonConverter with ``schemas.enable=true``: every message is a ``{schema, payload}``
envelope, so a sink reading it needs no declared schema.

Schemas follow Kafka Connect's JSON form (``type``, ``fields``/``items``, ``optional``, ``name``,
``version``, ``parameters``, ``field``). Logical types:

- decimal → ``org.apache.kafka.connect.data.Decimal`` (bytes; payload base64 of the big-endian
  two's-complement unscaled value, or a JSON number with ``decimal_format: numeric``);
- date → ``org.apache.kafka.connect.data.Date`` (int32 days), time[ms] → ``...Time`` (int32 ms),
  timestamp[s|ms] → ``...Timestamp`` (int64 ms);
- microsecond/nanosecond times and timestamps (which Connect's own types would truncate) use
  Debezium's ``io.debezium.time.MicroTimestamp``/``NanoTimestamp``/``MicroTime``/``NanoTime``;
  a naive timestamp carries the parameter ``headrace.naive=true``, a non-UTC zone
  ``headrace.timezone``.

Logical types nested in arrays, structs and maps are written and read the same way. A primitive
key or value (a ``__value__`` table) is written with its own schema, as Kafka Connect writes a
primitive (``{"schema":{"type":"string","optional":false},"payload":"foo"}``); a non-struct envelope
decodes into one column (``field``, default ``value``).

Encoding is per batch (Arrow casts, then DuckDB ``to_json``); decoding strips the envelope with
vectorised Arrow string kernels when the batch shares one schema (the usual case) and parses the
payloads with ``pyarrow.json`` against the schema the envelope declares (with DuckDB's
``json_transform_strict`` when it holds a map, which ``pyarrow.json`` cannot read).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from integrations.converters.base import (
    Converter,
    bytes_to_decimal,
    check_valid,
    convert_nested,
    decimal_to_bytes,
    interval_from_struct,
    interval_to_struct,
    is_primitive,
    nested_has,
)
from integrations.converters.json import (
    _NONFINITE,
    ConversionError,
    _duck,
    _nested_floats,
    _unquote_nonfinite,
)
from integrations.converters.json_pairs import (
    from_pairs_sql,
    has_pairs,
    json_rows,
    nonfinite_json_sql,
    structure_type,
    to_pairs_sql,
)

DECIMAL = "org.apache.kafka.connect.data.Decimal"
DATE = "org.apache.kafka.connect.data.Date"
TIME = "org.apache.kafka.connect.data.Time"
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
MICRO_TS, NANO_TS = "io.debezium.time.MicroTimestamp", "io.debezium.time.NanoTimestamp"
MICRO_TIME, NANO_TIME = "io.debezium.time.MicroTime", "io.debezium.time.NanoTime"
VALUE = "value"  # the column a primitive (non-struct) envelope decodes into
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


class JsonSchemaConverter(Converter):
    """``{schema, payload}`` envelopes, byte-compatible with Kafka Connect's JsonConverter.

    A null value without a schema (a tombstone: a null-typed ``__value__``) is a Kafka null, not an
    envelope; a null of a typed primitive keeps its envelope with ``"payload":null``, as Connect's."""

    class_name = "org.apache.kafka.connect.json.JsonConverter"
    encodes_typed_nulls = True

    def __init__(self, decimal_format: str = "base64", schema_name: str | None = None, field: str = VALUE) -> None:
        self.decimal_format = decimal_format
        self.schema_name = schema_name
        self.field = field  # the column a primitive (non-struct) envelope decodes into
        self._prefix_cache: dict[bytes, tuple[pa.Schema, pa.Schema]] = {}

    @property
    def self_describing(self) -> bool:
        return True

    # -- encode ------------------------------------------------------------------------------------
    def schema_json(self, schema: pa.Schema) -> bytes:
        """The compact JSON of a batch's Connect schema."""
        return orjson.dumps(envelope_schema(schema, self.decimal_format, self.schema_name))

    def encode_values(self, table: pa.Table, topic: str = "") -> pa.Array:
        """One envelope per row, as an Arrow string column; a primitive value (a ``__value__`` table) is
        written as Kafka Connect writes a primitive: ``{"schema":{"type":"string","optional":false},…}``."""
        if table.num_rows == 0:
            return pa.array([], pa.string())
        if is_primitive(table) and not pa.types.is_struct(table.schema.field(0).type):
            return self._encode_primitive(table)
        prefix = b'{"schema":' + self.schema_json(table.schema) + b',"payload":'
        payload = self._payload_json(table)
        return pc.binary_join_element_wise(prefix.decode(), payload, "}", "")

    def _encode_primitive(self, table: pa.Table) -> pa.Array:
        """Envelopes whose schema is the single column's own (non-struct) schema."""
        f = table.schema.field(0)
        schema, _ = connect_schema(f.type, f.nullable, self.decimal_format)
        prefix = b'{"schema":' + orjson.dumps(schema) + b',"payload":'
        payload = self._payload_json(table.rename_columns(["v"]))
        inner = pc.utf8_slice_codeunits(payload, 5, -1)  # DuckDB wrote {"v":value}; keep just the value
        return pc.binary_join_element_wise(prefix.decode(), inner, "}", "")

    def _payload_json(self, table: pa.Table) -> pa.Array:
        cols, b64, quoted, nested_quoted = [], [], [], set()
        for f, col in zip(table.schema, table.columns, strict=True):
            _, ptype = connect_schema(f.type, f.nullable, self.decimal_format)
            t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
            if pa.types.is_dictionary(f.type):
                col = col.cast(t)
            if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or pa.types.is_map(t):
                def leaf(a: pa.Array, _t: pa.DataType | None, name: str = f.name) -> pa.Array:
                    if pa.types.is_floating(a.type) and _has_nonfinite(a):
                        nested_quoted.add(name)  # written as Kafka Connect does: "NaN", "Infinity"
                    return _payload_leaf(a, self.decimal_format)

                try:
                    col = convert_nested(col, leaf)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ConversionError(f"column {f.name!r} ({t}) cannot be written as {ptype}: {e}") from e
            elif pa.types.is_decimal(t) and self.decimal_format == "base64":
                col = decimal_to_bytes(col)
                b64.append(f.name)
            elif pa.types.is_binary(ptype) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
                col = col.cast(pa.binary())
                b64.append(f.name)
            elif pa.types.is_interval(t):
                col = interval_to_struct(col)
            elif pa.types.is_floating(t) and _has_nonfinite(col):
                quoted.append(f.name)
            elif pa.types.is_timestamp(t) and t.unit == "s":
                col = col.cast(pa.timestamp("ms", tz=t.tz)).cast(pa.int64())
            elif pa.types.is_time32(t) and t.unit == "s":
                col = col.cast(pa.time32("ms")).cast(pa.int32())
            elif ptype != t:
                try:
                    col = col.cast(ptype)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ConversionError(f"column {f.name!r} ({t}) cannot be written as {ptype}: {e}") from e
            cols.append(col)
        payload = pa.table(cols, names=table.column_names)
        con = _duck()
        con.register("_hr_payload", payload)
        try:
            sel = ", ".join(
                f"to_base64({_q(n)}) AS {_q(n)}" if n in b64 else _nonfinite_sql(_q(n)) if n in quoted
                else f"{to_pairs_sql(_q(n), f.type, n in nested_quoted)} AS {_q(n)}"
                if has_pairs(f.type) or n in nested_quoted else _q(n)
                for n, f in zip(payload.column_names, payload.schema, strict=True)
            )
            out = con.sql(f"SELECT to_json(q)::VARCHAR AS j FROM (SELECT {sel} FROM _hr_payload) q").to_arrow_table()
        finally:
            con.unregister("_hr_payload")
        return out.column(0)

    def encode_keys(self, table: pa.Table, columns: Sequence[str], topic: str = "") -> list | None:
        """Keys: a primitive envelope for one key column, a struct envelope for several."""
        if not columns:
            return None
        sub = table.select(list(columns))
        if len(columns) > 1:
            return self.encode_values(sub, topic).to_pylist()
        return self._encode_primitive(sub).to_pylist()

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None, topic: str = "") -> pa.Table:
        """Envelopes → a table typed by the schema each envelope declares (``schema`` is ignored)."""
        n = len(values)
        if n == 0:
            return pa.table({})
        arr = pa.array(values, pa.binary())
        prefix, pschema, fschema = self._prefix(values[0])
        same = pc.starts_with(arr.cast(pa.binary()), pattern=prefix) if prefix else None
        if same is not None and pc.all(same).as_py():
            return self._decode_payloads(pc.binary_slice(arr, len(prefix), -1), pschema, fschema)
        # several schemas (or layouts) in one batch: decode each group, restore the order
        groups: dict[bytes, list[int]] = {}
        for i, v in enumerate(values):
            groups.setdefault(self._prefix(v)[0], []).append(i)
        parts, order = [], []
        for p, idx in groups.items():
            sub = [values[i] for i in idx]
            if p:
                _, ps, fs = self._prefix(sub[0])
                parts.append(self._decode_payloads(pc.binary_slice(pa.array(sub, pa.binary()), len(p), -1), ps, fs))
            else:  # not the compact layout: re-serialise each payload
                ps, fs = self._schemas_of(orjson.loads(sub[0])["schema"])
                payloads = pa.array([orjson.dumps(orjson.loads(v)["payload"]) for v in sub], pa.binary())
                parts.append(self._decode_payloads(payloads, ps, fs))
            order.extend(idx)
        table = pa.concat_tables(parts, promote_options="permissive")
        inverse = pc.sort_indices(pa.array(order))
        return table.take(inverse)

    def _schemas_of(self, schema: Any) -> tuple[pa.Schema, pa.Schema]:
        if not isinstance(schema, dict) or "type" not in schema:
            raise ConversionError(f"not a Kafka Connect schema: {schema!r}")
        if schema["type"] != "struct":  # a primitive key or value lands in one column, ``field``
            schema = {"type": "struct", "fields": [{**schema, "field": self.field}], "headrace.wrapped": True}
        final, parsed = [], []
        for fld in schema.get("fields", []):
            f, p = arrow_type(fld, self.decimal_format)
            final.append(pa.field(fld["field"], f, nullable=fld.get("optional", True)))
            parsed.append(pa.field(fld["field"], p))
        meta = {b"headrace.wrapped": b"1"} if schema.get("headrace.wrapped") else None
        return pa.schema(parsed, metadata=meta), pa.schema(final)

    def _prefix(self, value: bytes) -> tuple[bytes, pa.Schema | None, pa.Schema | None]:
        """The envelope's bytes up to the payload, when it has the compact ``{"schema":…,"payload":`` layout."""
        if not value.startswith(b'{"schema":'):
            self._check_envelope(value)
            return b"", None, None
        start = 0
        while True:
            i = value.find(b',"payload":', start)
            if i < 0:
                self._check_envelope(value)
                return b"", None, None
            prefix = value[: i + 11]
            hit = self._prefix_cache.get(prefix)
            if hit is not None:
                return prefix, hit[0], hit[1]
            try:
                schema = orjson.loads(value[10:i])
            except orjson.JSONDecodeError:
                start = i + 1
                continue
            if not value.endswith(b"}"):
                raise ConversionError("malformed envelope: it does not end with '}'")
            parsed, final = self._schemas_of(schema)
            if len(self._prefix_cache) > 64:
                self._prefix_cache.clear()
            self._prefix_cache[prefix] = (parsed, final)
            return prefix, parsed, final

    @staticmethod
    def _check_envelope(value: bytes) -> None:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            raise ConversionError(f"malformed JSON: {e}") from e
        if not isinstance(doc, dict) or "schema" not in doc or "payload" not in doc:
            raise ConversionError("not a {schema, payload} envelope (is the producer's schemas.enable off?)")

    def _decode_payloads(self, payloads: pa.Array, parsed: pa.Schema, final: pa.Schema) -> pa.Table:
        if parsed.metadata and parsed.metadata.get(b"headrace.wrapped"):
            payloads = pc.binary_join_element_wise(b'{' + orjson.dumps(self.field) + b':', payloads, b"}", b"")
        if any(nested_has(f.type, pa.types.is_map) for f in parsed):
            return self._post_all(_parse_with_maps(payloads, parsed), parsed, final)
        blob = b"\n".join(payloads.to_pylist()) if len(payloads) < 8 else _join_lines(payloads)
        if any(_nested_floats(f.type) for f in parsed) and _NONFINITE.search(blob) is not None:
            # "NaN" / "Infinity" inside lists or structs, which pyarrow.json cannot read as floats
            return self._post_all(_parse_with_maps(payloads, parsed), parsed, final)
        multiline = blob.count(b"\n") != len(payloads) - 1
        blob = _unquote_nonfinite(blob, parsed)  # Kafka Connect (Jackson) writes "NaN", "Infinity"
        opts = pj.ParseOptions(explicit_schema=parsed, newlines_in_values=multiline, unexpected_field_behavior="error")
        ropts = pj.ReadOptions(block_size=max(1 << 20, min(len(blob) + 1, 64 << 20)), use_threads=True)
        try:
            raw = pj.read_json(io.BytesIO(blob), read_options=ropts, parse_options=opts)
        except pa.ArrowInvalid as e:
            raise ConversionError(f"payload does not match its schema: {e}") from e
        if raw.num_rows != len(payloads):
            raise ConversionError(f"{len(payloads)} payloads parsed as {raw.num_rows} rows")
        return self._post_all(raw, parsed, final)

    def _post_all(self, raw: pa.Table, parsed: pa.Schema, final: pa.Schema) -> pa.Table:
        cols = []
        for f, pf in zip(final, parsed, strict=True):
            col = raw.column(pf.name)
            if f.type != pf.type:
                col = self._post(col, f.type)
            cols.append(col)
        return check_valid(pa.table(cols, schema=final))

    def _post(self, col: pa.ChunkedArray, t: pa.DataType) -> pa.ChunkedArray | pa.Array:
        return convert_nested(col, _from_payload_leaf, t)


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
