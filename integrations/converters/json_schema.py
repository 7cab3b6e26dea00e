"""Kafka Connect's JsonConverter with ``schemas.enable=true``: every message is a ``{schema, payload}``
envelope, so a sink reading it needs no declared schema.

Schemas follow Kafka Connect's JSON form; the Arrow ↔ Connect schema mapping and its logical types
are in ``json_schema_types``, the payload value conversions in ``json_schema_payload`` (their public
names are importable from here too). A primitive key or value (a ``__value__`` table) is written
with its own schema, as Kafka Connect writes a primitive
(``{"schema":{"type":"string","optional":false},"payload":"foo"}``); a non-struct envelope decodes
into one column (``field``, default ``value``).

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
    check_valid,
    convert_nested,
    decimal_to_bytes,
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
from integrations.converters.json_pairs import has_pairs, to_pairs_sql
from integrations.converters.json_schema_payload import (
    _from_payload_leaf,
    _has_nonfinite,
    _join_lines,
    _nonfinite_sql,
    _parse_with_maps,
    _payload_leaf,
    _q,
)
from integrations.converters.json_schema_types import (
    DATE,
    DECIMAL,
    INTERVAL,
    MICRO_TIME,
    MICRO_TS,
    NANO_TIME,
    NANO_TS,
    TIME,
    TIMESTAMP,
    arrow_type,
    connect_schema,
    envelope_schema,
)

VALUE = "value"  # the column a primitive (non-struct) envelope decodes into


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
        """True: every envelope carries its own schema."""
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


__all__ = [
    "DATE", "DECIMAL", "INTERVAL", "MICRO_TIME", "MICRO_TS", "NANO_TIME", "NANO_TS", "TIME", "TIMESTAMP", "VALUE",
    "JsonSchemaConverter", "arrow_type", "connect_schema", "envelope_schema",
]
