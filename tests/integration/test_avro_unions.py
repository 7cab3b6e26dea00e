"""Avro written by another producer (confluent-kafka's AvroSerializer, registering through the real
Schema Registry-compatible server) read through a Parquet sink that declares no schema: unions wider
than ``["null", T]`` (including records, int/long, in arrays, with a logical type) and a topic whose
value schema is a primitive. The Parquet rows must be exactly the values produced. (A null value is
a tombstone, which the serializer writes as no bytes at all, so null branches are exercised inside
records here and at the top level in tests/unit/test_converters_nested.py.)
"""

from __future__ import annotations

import decimal

import orjson
import pyarrow as pa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from integrations.config import ParquetSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.integration.test_avro_registry import _read, schema_registry  # noqa: F401 (fixture)
from tests.integration.test_errors import produce_raw
from tests.unit.test_converters_nested import UNION_RECORDS, UNION_ROWS, UNION_SCHEMA


def _produce(registry: str, kafka, topic: str, schema: object, values: list, keys: list | None = None) -> None:
    client = SchemaRegistryClient({"url": registry})
    ser = AvroSerializer(client, orjson.dumps(schema).decode(), conf={"auto.register.schemas": True})
    ctx = SerializationContext(topic, MessageField.VALUE)
    produce_raw(kafka, topic, [ser(v, ctx) for v in values], keys)


def _sink(registry: str, topic: str, unique: str, path) -> ParquetSinkConfig:
    return ParquetSinkConfig(name=f"avro-unions-{unique}", type="parquet_sink", topics=[topic], path=str(path),
                             value_converter={"type": "avro", "schema_registry_url": registry})


def test_unions_from_another_producer_reach_parquet_exactly(schema_registry, kafka, topic_factory,  # noqa: F811
                                                             unique, tmp_path):
    topic = topic_factory("avro-unions")
    _produce(schema_registry, kafka, topic, UNION_SCHEMA, UNION_RECORDS)
    try:
        assert run_sink(_sink(schema_registry, topic, unique, tmp_path), kafka).rows == len(UNION_RECORDS)
        out = _read(tmp_path, topic)
        assert out.to_pylist() == UNION_ROWS
        types = dict(zip(out.column_names, out.schema.types, strict=True))
        assert types["a"] == pa.struct([("string", pa.string()), ("long", pa.int64())])
        assert types["who"].field("Robot").type.field("price").type == pa.decimal128(9, 2)
        assert types["when"].field("long").type == pa.timestamp("ms", tz="UTC")
    finally:
        SchemaRegistryClient({"url": schema_registry}).delete_subject(f"{topic}-value", permanent=False)


def test_primitive_and_union_values_reach_parquet_as_one_column(schema_registry, kafka, topic_factory,  # noqa: F811
                                                                unique, tmp_path):
    amounts = topic_factory("avro-primitive")
    schema = ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}]
    values = [decimal.Decimal("1.56"), decimal.Decimal("0.00"), decimal.Decimal("-9999999999.99")]
    _produce(schema_registry, kafka, amounts, schema, values)
    mixed = topic_factory("avro-top-union")
    _produce(schema_registry, kafka, mixed, ["null", "string", "long"], ["a", 5, ""])
    try:
        assert run_sink(_sink(schema_registry, amounts, unique, tmp_path), kafka).rows == 3
        out = _read_all(tmp_path, amounts)
        assert out.schema.field("value").type == pa.decimal128(12, 2)
        assert out.column("value").to_pylist() == values
        assert run_sink(_sink(schema_registry, mixed, unique + "m", tmp_path), kafka).rows == 3
        assert _read_all(tmp_path, mixed).column("value").to_pylist() == [
            {"string": "a", "long": None}, {"string": None, "long": 5}, {"string": "", "long": None}]
    finally:
        client = SchemaRegistryClient({"url": schema_registry})
        for t in (amounts, mixed):
            client.delete_subject(f"{t}-value", permanent=False)


def _read_all(root, topic: str) -> pa.Table:
    """The topic's Parquet rows in offset order (one partition: files sort by start offset)."""
    import pyarrow.parquet as pq

    files = sorted(f for f in (root / topic).rglob("*.parquet") if not f.name.startswith("."))
    return pa.concat_tables([pq.read_table(f) for f in files])
