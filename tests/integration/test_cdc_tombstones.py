"""A CDC tombstone is a Kafka null whatever the value converter: with ``json_schema`` (and Avro, see
tests/unit/test_converters.py) the record after a delete has no value, not an envelope with a null
payload, and a table sink with ``delete_enabled`` deletes the row from it."""

from __future__ import annotations

import orjson
import psycopg

from integrations.config import ConverterConfig, TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.helpers import read_topic
from tests.integration.cdc_helpers import Cdc, cdc_fixture  # noqa: F401 (fixture)

JSON_SCHEMA = ConverterConfig(type="json_schema")


def _sink(cdc: Cdc, topic: str) -> TableSinkConfig:
    return TableSinkConfig(type="table_sink", name=f"rep-{cdc.name}", topics=[topic], connection_url=cdc.pg_url,
                           table_name_format="replica", auto_create=True, insert_mode="upsert",
                           pk_mode="record_key", pk_fields=["id"], delete_enabled=True,
                           key_converter=JSON_SCHEMA, value_converter=JSON_SCHEMA,
                           transforms=[{"type": "ExtractNewRecordState", "delete_handling_mode": "none",
                                        "drop_tombstones": False}])


def test_json_schema_tombstone_is_a_kafka_null_and_deletes_the_replica_row(cdc: Cdc) -> None:
    cdc.overrides.update(key_converter=JSON_SCHEMA, value_converter=JSON_SCHEMA, tombstones_on_delete=True,
                         snapshot_mode="never")
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text)")
    cdc.run()  # creates the slot: the changes below are streamed
    topic = cdc.topic("items")
    cdc.sql("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
    cdc.run()
    sink = _sink(cdc, topic)
    run_sink(sink, cdc.kafka)
    with psycopg.connect(cdc.pg_url) as c:
        assert c.execute("SELECT id, name FROM replica ORDER BY id").fetchall() == [(1, "one"), (2, "two")]

    cdc.sql("DELETE FROM items WHERE id = 1")
    cdc.run()
    records = [(orjson.loads(k), v) for k, v, _p, _o in read_topic(cdc.kafka, topic)]
    assert [k["payload"]["id"] for k, _v in records] == [1, 2, 1, 1]  # keys: json_schema envelopes
    values = [None if v is None else orjson.loads(v)["payload"]["op"] for _k, v in records]
    assert values == ["c", "c", "d", None]
    assert records[-1][1] is None  # the tombstone: no value at all, not {"schema":…,"payload":null}

    run_sink(sink, cdc.kafka)
    with psycopg.connect(cdc.pg_url) as c:
        assert c.execute("SELECT id, name FROM replica ORDER BY id").fetchall() == [(2, "two")]
