"""Transforms that read or write record metadata, run from YAML connectors on the real broker.

Sinks: the Kafka timestamp, key, headers and tombstone flag reach the chain (InsertField
``timestamp_field``, HasHeaderKey, RecordIsTombstone, ValueToKey/ExtractField.Key). Sources: a key
made by the chain becomes the message key, chain headers become Kafka headers, routed rows are
produced and counted under their topic, and the chain's timestamp becomes the message timestamp.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition

from integrations.config import load_connector
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.errors import RecordError
from integrations.runtime.sink_runner import run_sink
from tests.helpers import write_connector

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _produce(kafka: KafkaSettings, topic: str, records: list[tuple]) -> None:
    """Produce (key, value, timestamp ms, headers) records to partition 0, in order."""
    p = kafka.producer(**{"linger.ms": 5})
    for key, value, ts, headers in records:
        p.produce(topic, value=value, key=key, timestamp=ts, headers=headers, partition=0)
    assert p.flush(60) == 0


def _rows(root: Path, topic: str) -> list[dict]:
    files = sorted(f for f in (root / topic).rglob("*.parquet") if not f.name.startswith("."))
    return sorted((r for f in files for r in pq.read_table(f).to_pylist()), key=lambda r: r["id"])


def _sink(tmp_path: Path, name: str, topic: str, transforms: list[dict], **extra) -> object:
    cfg = {"name": name, "type": "parquet_sink", "topics": [topic], "path": str(tmp_path / "out"),
           "transforms": transforms, **extra}
    return load_connector(write_connector(tmp_path / "connectors", cfg))


def _sink_records(topic: str) -> list[tuple]:
    j = orjson.dumps
    return [
        (j({"k": 1}), j({"id": 1, "name": "a"}), T0, [("flag", b"yes")]),
        (j({"k": 2}), j({"id": 2, "name": "b"}), T0 + 1000, None),
        (j({"k": 3}), None, T0 + 2000, None),  # tombstone
        (j({"k": 4}), j({"id": 4, "name": "d"}), T0 + 3000, [("flag", b"\xff\x00"), ("other", b"x")]),
        (None, j({"id": 5, "name": "e"}), T0 + 4000, None),
    ]


def test_sink_metadata_timestamp_headers_tombstones(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("sink-meta")
    _produce(kafka, topic, _sink_records(topic))
    cfg = _sink(tmp_path, f"sinkmeta-{unique}", topic, [
        {"type": "Filter", "predicate": {"type": "RecordIsTombstone"}},
        {"type": "InsertField.Value", "timestamp_field": "kafka_ts!", "offset_field": "kafka_offset"},
        {"type": "InsertField.Value", "static_field": "flagged", "static_value": "yes",
         "predicate": {"type": "HasHeaderKey", "name": "flag"}},
    ])
    res = run_sink(cfg, kafka)
    assert (res.rows, res.rows_per_topic, res.tombstones) == (4, {topic: 4}, 1)
    rows = _rows(tmp_path / "out", topic)
    utc = dt.timezone.utc
    assert rows == [
        {"id": i, "name": n, "kafka_ts": dt.datetime.fromtimestamp((T0 + 1000 * k) / 1000, utc),
         "kafka_offset": k, "flagged": f}
        for i, n, k, f in [(1, "a", 0, "yes"), (2, "b", 1, None), (4, "d", 3, "yes"), (5, "e", 4, None)]
    ]
    # the group's offset covers the whole range, the filtered tombstone included
    c = kafka.consumer(group_id=cfg.consumer_group)
    assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 5
    c.close()


def test_sink_tombstones_without_a_filter_are_still_dropped(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("sink-tomb")
    _produce(kafka, topic, _sink_records(topic))
    cfg = _sink(tmp_path, f"sinktomb-{unique}", topic, [
        {"type": "InsertField.Value", "static_field": "live", "static_value": "1",
         "predicate": {"type": "RecordIsTombstone"}, "negate": True},
    ])
    res = run_sink(cfg, kafka)
    assert (res.rows, res.tombstones) == (4, 1)
    assert [(r["id"], r["live"]) for r in _rows(tmp_path / "out", topic)] == [(1, "1"), (2, "1"), (4, "1"), (5, "1")]


def test_sink_key_reaches_the_chain(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("sink-key")
    _produce(kafka, topic, _sink_records(topic))
    # ExtractField.Key of a field that only the Kafka key has: works (null keys pass through)
    cfg = _sink(tmp_path, f"sinkkey-{unique}", topic, [
        {"type": "Filter", "predicate": {"type": "RecordIsTombstone"}},
        {"type": "ExtractField.Key", "field": "k"},
        {"type": "ValueToKey", "fields": "id"},
        {"type": "ExtractField.Key", "field": "id"},
    ])
    res = run_sink(cfg, kafka)
    assert res.rows == 4 and [r["id"] for r in _rows(tmp_path / "out", topic)] == [1, 2, 4, 5]
    # a field the key does not have is an error naming it: the key really is the Kafka key
    bad = _sink(tmp_path, f"sinkkeybad-{unique}", topic, [
        {"type": "Filter", "predicate": {"type": "RecordIsTombstone"}},
        {"type": "ExtractField.Key", "field": "id"},
    ])
    with pytest.raises(RecordError, match="id"):
        run_sink(bad, kafka)


def test_sink_routing_is_refused_with_timestamps_available(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("sink-route")
    _produce(kafka, topic, _sink_records(topic)[:2])
    cfg = _sink(tmp_path, f"sinkroute-{unique}", topic, [
        {"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"}])
    with pytest.raises(RecordError, match="not supported by sinks"):
        run_sink(cfg, kafka)
