"""A null value row without a schema (a tombstone) is a Kafka null in every converter: json,
json_schema, string, bytes and Avro write ``None``, never an envelope with a null payload or an Avro
``null``. A null of a typed primitive is a Kafka null too, except with json_schema, which writes
Kafka Connect's envelope with ``"payload":null`` for it (byte-identical: test_converters_nested.py),
and Avro, which writes the union's null branch (round trip: test_converters_nested.py)."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from integrations.config import ConverterConfig
from integrations.converters.avro import AvroConverter
from integrations.converters.base import Converter
from integrations.converters.factory import build_converter


def _converters() -> list[Converter]:
    built = [build_converter(ConverterConfig(type=k)) for k in ("json", "json_schema", "string", "bytes")]
    return [*built, AvroConverter(f"mock://{uuid.uuid4().hex[:8]}")]


@pytest.mark.parametrize("conv", _converters(), ids=lambda c: type(c).__name__)
def test_tombstones_are_kafka_nulls(conv: Converter) -> None:
    tombstones = pa.table({"__value__": pa.nulls(3)})  # what the CDC source emits after deletes
    assert conv.encode_values(tombstones, "t").to_pylist() == [None, None, None]


@pytest.mark.parametrize("conv", [c for c in _converters() if not c.encodes_typed_nulls], ids=lambda c: type(c).__name__)
def test_null_rows_among_values_stay_null_in_place(conv: Converter) -> None:
    mixed = pa.table({"__value__": pa.chunked_array([["a", None], [None, "b"]])})
    out = conv.encode_values(mixed, "t").to_pylist()
    assert [v is None for v in out] == [False, True, True, False]
    alone = conv.encode_values(pa.table({"__value__": pa.array(["a", "b"])}), "t").to_pylist()
    assert [out[0], out[3]] == alone  # the non-null rows are encoded exactly as without the nulls


def test_avro_registers_no_schema_for_tombstones_alone() -> None:
    conv = AvroConverter(f"mock://{uuid.uuid4().hex[:8]}")
    conv.encode_values(pa.table({"__value__": pa.nulls(2)}), "orders")
    assert conv.client.get_subjects() == []  # a "null" schema would clash with the envelope's later


def test_json_schema_typed_null_keeps_connects_envelope() -> None:
    conv = build_converter(ConverterConfig(type="json_schema"))
    out = conv.encode_values(pa.table({"__value__": pa.array([None, 1], pa.int64())}), "t").to_pylist()
    assert out == ['{"schema":{"type":"int64","optional":true},"payload":null}',
                   '{"schema":{"type":"int64","optional":true},"payload":1}']


def test_struct_values_and_keys_unchanged() -> None:
    conv = build_converter(ConverterConfig(type="json_schema"))
    t = pa.table({"id": [1, None]})
    assert all(v is not None for v in conv.encode_values(t, "t").to_pylist())  # a row with a null field
    assert conv.encode_keys(t, ["id"], "t")[1] is not None  # an envelope for a key column (Connect's)
