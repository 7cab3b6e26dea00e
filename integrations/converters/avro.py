"""Avro with the Confluent Schema Registry wire format: magic byte 0, a 4-byte big-endian schema id,
then the Avro binary payload. Schemas are registered (``<topic>-value`` / ``<topic>-key``, the
TopicNameStrategy) and fetched through confluent-kafka's ``SchemaRegistryClient``.

Avro has no columnar encoder in Python, so the per-record work is fastavro's C encoder/decoder and
nothing else: logical types (decimal, timestamps, dates, times) are converted to and from their raw
Avro representation per column with Arrow/numpy, fastavro sees schemas with the logical annotations
stripped, messages are framed by building one Arrow binary array from a single buffer, and decoding
reads every payload of a schema id from one stream. Flat records skip fastavro altogether
(``avro_flat``).

A primitive key or value (a ``__value__`` table) is registered as its own schema (``"string"``,
``["null", "long"]``), and a non-record schema decodes into one column (``field``, default ``value``).

This module holds the converter and its registry access; the Arrow ↔ Avro type mapping is in
``avro_types`` and the column conversions and message framing in ``avro_codec``. Their public names
are importable from here too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastavro import parse_schema, schemaless_reader

from integrations.converters.avro_codec import (
    _concat,
    _to_raw,
    finish,
    frame_records,
    single_header,
    to_table,
)
from integrations.converters.avro_flat import decode_flat, encode_flat, flat_plan
from integrations.converters.avro_types import (
    NANO_TIME,
    _avro_name,
    _is_record,
    _nullable,
    _wrap,
    arrow_types,
    avro_schema,
    avro_type,
    reader_schema,
    strip_logical,
    union_member_names,
)
from integrations.converters.base import PRIMITIVE_COLUMN, Converter
from integrations.converters.json import ConversionError

MAGIC = 0


class RegistryUnavailable(ConnectionError):
    """The Schema Registry could not be reached (transient: retried under errors_retry_timeout)."""


def _registry_error(e: Exception, what: str) -> Exception:
    """A registry failure as a transient outage, or as a conversion error when the registry answered."""
    status = getattr(e, "http_status_code", None)
    if status is not None and 400 <= int(status) < 500:
        return ConversionError(f"{what}: {e}")
    return RegistryUnavailable(f"{what}: schema registry unavailable: {e}")


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
        """True: every message names its writer schema (by registry id)."""
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
        """Framed Avro keys from the key columns (None when there are none)."""
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


__all__ = [
    "MAGIC", "NANO_TIME", "AvroConverter", "RegistryUnavailable", "arrow_types", "avro_schema", "avro_type",
    "finish", "frame_records", "reader_schema", "single_header", "strip_logical", "to_table", "union_member_names",
]
