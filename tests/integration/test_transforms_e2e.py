"""Transforms that read or write record metadata, run from YAML connectors on the real broker.

Sinks: the Kafka timestamp, key, headers and tombstone flag reach the chain (InsertField
``timestamp_field``, HasHeaderKey, RecordIsTombstone, ValueToKey/ExtractField.Key). Sources: a key
made by the chain becomes the message key, chain headers become Kafka headers, routed rows are
produced and counted under their topic, and the chain's timestamp becomes the message timestamp.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition

from integrations.config import load_connector
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.errors import RecordError
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from tests.helpers import produce_all, read_dataset, read_messages, write_connector

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _produce(kafka: KafkaSettings, topic: str, records: list[tuple]) -> None:
    """Produce (key, value, timestamp ms, headers) records to partition 0, in order."""
    produce_all(kafka, topic, ({"value": value, "key": key, "timestamp": ts, "headers": headers, "partition": 0}
                               for key, value, ts, headers in records), **{"linger.ms": 5})


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
    utc = dt.UTC
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


def test_sink_routing_uses_the_record_timestamps(kafka, topic_factory, unique, tmp_path):
    """TimestampRouter on a sink reads each record's Kafka timestamp (routing itself: test_sink_routing)."""
    topic = topic_factory("sink-route")
    _produce(kafka, topic, _sink_records(topic)[:2])
    cfg = _sink(tmp_path, f"sinkroute-{unique}", topic, [
        {"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"}])
    res = run_sink(cfg, kafka)
    day = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC).strftime("%Y%m%d")
    assert res.rows == 2
    routed = tmp_path / "out" / f"{topic}-{day}"
    assert sorted(f.name for f in routed.rglob("*.parquet")) == [f"{topic}-{day}+0+{0:020d}.parquet"]
    assert sorted(read_dataset(routed).column("id").to_pylist()) == [1, 2]
    assert not (tmp_path / "out" / topic).exists()


# --- sources -----------------------------------------------------------------------------------------

def _db(path: Path) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
    con.executemany("INSERT INTO items VALUES (?, ?, ?)", [(1, "a", 10), (2, "b", 20), (3, "c", 30)])
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def _source(tmp_path: Path, name: str, topic: str, transforms: list[dict], **extra) -> object:
    cfg = {"name": name, "type": "sql_source", "connection_url": _db(tmp_path / f"{name}.db"), "mode": "bulk",
           "query": "SELECT * FROM items ORDER BY id", "topic_prefix": topic, "transforms": transforms, **extra}
    return load_connector(write_connector(tmp_path / "connectors", cfg))


def test_source_key_from_the_chain_is_the_message_key(kafka, topic_factory, unique, tmp_path):
    offsets = topic_factory("offsets")
    struct_topic, bare_topic = topic_factory("src-key", create=False), topic_factory("src-key1", create=False)
    # ValueToKey wins over key_columns: the whole struct key is the message key
    res = run_source(_source(tmp_path, f"srckey-{unique}", struct_topic, [{"type": "ValueToKey", "fields": "id,name"}],
                             key_columns=["qty"]), kafka, offsets)
    assert res.rows == 3
    got = [(orjson.loads(m.key()), orjson.loads(m.value())) for m in read_messages(kafka, struct_topic)]
    assert got == [({"id": i, "name": n}, {"id": i, "name": n, "qty": q}) for i, n, q in
                   [(1, "a", 10), (2, "b", 20), (3, "c", 30)]]
    # then ExtractField.Key: a primitive key is the bare JSON value
    run_source(_source(tmp_path, f"srckey1-{unique}", bare_topic, [
        {"type": "ValueToKey", "fields": "id"}, {"type": "ExtractField.Key", "field": "id"}]), kafka, offsets)
    assert [m.key() for m in read_messages(kafka, bare_topic)] == [b"1", b"2", b"3"]


def test_source_headers_from_the_chain_are_kafka_headers(kafka, topic_factory, unique, tmp_path):
    offsets = topic_factory("offsets")
    topic = topic_factory("src-hdr", create=False)
    res = run_source(_source(tmp_path, f"srchdr-{unique}", topic, [
        {"type": "InsertHeader", "header": "app.id", "value_literal": "best-app-ever"},
        {"type": "InsertHeader", "header": "version", "value_literal": 7},
        {"type": "HeaderFrom.Value", "fields": "id,name", "headers": "record_id,record_name", "operation": "move"},
    ]), kafka, offsets)
    assert res.rows == 3
    msgs = read_messages(kafka, topic)
    assert [orjson.loads(m.value()) for m in msgs] == [{"qty": 10}, {"qty": 20}, {"qty": 30}]
    assert [sorted(m.headers()) for m in msgs] == [
        sorted([("app.id", b"best-app-ever"), ("version", b"7"), ("record_id", str(i).encode()),
                ("record_name", n.encode())]) for i, n in [(1, "a"), (2, "b"), (3, "c")]]


def test_source_routed_rows_are_produced_and_counted_under_their_topic(kafka, topic_factory, unique, tmp_path):
    offsets = topic_factory("offsets")
    base = topic_factory("src-route", create=False)
    res = run_source(_source(tmp_path, f"srcroute-{unique}", base, [
        {"type": "RegexRouter", "regex": "src-route-(.*)", "replacement": "routed-$1"}]), kafka, offsets)
    target = "routed-" + base.removeprefix("src-route-")
    try:
        assert res.rows == 3
        (stats,) = res.per_partition.values()
        assert (stats.topic, stats.rows, stats.rows_per_topic) == (target, 3, {target: 3})
        assert {t: s.rows for t, s in res.by_topic().items()} == {target: 3}
        assert [orjson.loads(m.value())["id"] for m in read_messages(kafka, target)] == [1, 2, 3]
    finally:
        kafka.delete_topics([target])


def test_source_timestamp_router_and_message_timestamps(kafka, topic_factory, unique, tmp_path):
    offsets = topic_factory("offsets")
    base = topic_factory("src-ts", create=False)
    before = int(time.time() * 1000)
    res = run_source(_source(tmp_path, f"srcts-{unique}", base, [
        {"type": "InsertField.Value", "timestamp_field": "ts!"},
        {"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"},
    ]), kafka, offsets)
    after = int(time.time() * 1000)
    targets = sorted(res.by_topic())
    try:
        days = {dt.datetime.fromtimestamp(t / 1000, dt.UTC).strftime("%Y%m%d") for t in (before, after)}
        assert set(targets) <= {f"{base}-{d}" for d in days} and res.rows == 3
        msgs = [m for t in targets for m in read_messages(kafka, t)]
        assert sorted(orjson.loads(m.value())["id"] for m in msgs) == [1, 2, 3]
        for m in msgs:
            kind, ms = m.timestamp()
            assert before <= ms <= after
            # the inserted field and the message timestamp are the same instant; the topic is its day
            stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
            assert orjson.loads(m.value())["ts"].startswith(stamp.strftime("%Y-%m-%d %H:%M:%S"))
            assert m.topic() == f"{base}-{stamp.strftime('%Y%m%d')}"
    finally:
        kafka.delete_topics(targets)


def test_source_primitive_values_are_bare(kafka, topic_factory, unique, tmp_path):
    offsets = topic_factory("offsets")
    json_topic, str_topic = topic_factory("src-bare", create=False), topic_factory("src-bares", create=False)
    run_source(_source(tmp_path, f"srcbare-{unique}", json_topic, [{"type": "ExtractField.Value", "field": "qty"}]),
               kafka, offsets)
    assert [m.value() for m in read_messages(kafka, json_topic)] == [b"10", b"20", b"30"]
    run_source(_source(tmp_path, f"srcbares-{unique}", str_topic, [{"type": "ExtractField.Value", "field": "name"}],
                       value_converter={"type": "string"}), kafka, offsets)
    assert [m.value() for m in read_messages(kafka, str_topic)] == [b"a", b"b", b"c"]
    # plain JSON strings are JSON strings
    j_topic = topic_factory("src-barej", create=False)
    run_source(_source(tmp_path, f"srcbarej-{unique}", j_topic, [{"type": "ExtractField.Value", "field": "name"}]),
               kafka, offsets)
    assert [m.value() for m in read_messages(kafka, j_topic)] == [b'"a"', b'"b"', b'"c"']
