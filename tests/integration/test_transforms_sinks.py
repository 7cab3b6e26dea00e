"""Transforms on sinks that take whole messages (the table sink; the Parquet sink on Kafka timestamps).

The chain sees real offsets, timestamps, keys, headers and tombstone flags; Filter drops records, only
the survivors are written, and the stored offsets still reach the end of the consumed range.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.table import open_backend
from tests.helpers import produce_all
from tests.integration.sink_helpers import file_rows
from tests.integration.test_table_sink import _fetch, _url

DAY = 86_400_000
T0 = int(dt.datetime(2024, 3, 9, 12, tzinfo=dt.UTC).timestamp() * 1000)
SKIP = [("skip", b"1")]


def _produce(kafka: KafkaSettings, topic: str, records: list[tuple[Any, Any, int, list | None]]) -> None:
    """Produce ``(key, value, timestamp ms, headers)`` to partition 0; a None value is a tombstone."""
    produce_all(kafka, topic, ({"key": None if key is None else orjson.dumps(key),
                                "value": None if value is None else orjson.dumps(value), "timestamp": ts,
                                "headers": headers, "partition": 0} for key, value, ts, headers in records),
                **{"linger.ms": 5})


def _table_cfg(url: str, topic: str, unique: str, transforms: list[dict], **kw) -> TableSinkConfig:
    return TableSinkConfig(type="table_sink", name=f"tx-{unique}", topics=[topic], connection_url=url,
                           auto_create=True, transforms=transforms, **kw)


def _stored(cfg: TableSinkConfig, topic: str) -> dict[int, int]:
    backend = open_backend(cfg)
    try:
        return {p: o for (t, p), o in backend.stored_offsets().items() if t == topic}
    finally:
        backend.close()


@pytest.fixture(params=["duckdb", "postgres"])
def db_url(request, tmp_path: Path) -> str:
    pg = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return _url(request.param, tmp_path, pg)


def test_table_sink_filter_on_header_keeps_survivors_and_deletes(db_url, kafka, topic_factory, unique):
    topic = topic_factory("txh")
    _produce(kafka, topic, [
        ({"id": 1}, {"id": 1, "v": "a"}, T0, None),
        ({"id": 2}, {"id": 2, "v": "b"}, T0, SKIP),   # dropped
        ({"id": 3}, {"id": 3, "v": "c"}, T0, None),
        ({"id": 1}, None, T0, None),                  # tombstone: deletes 1
        ({"id": 3}, None, T0, SKIP),                  # dropped tombstone: 3 stays
        ({"id": 4}, {"id": 4, "v": "d"}, T0, None),
        ({"id": 5}, {"id": 5, "v": "e"}, T0, SKIP),   # dropped
    ])
    cfg = _table_cfg(db_url, topic, unique, [{"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "skip"}}],
                     insert_mode="upsert", pk_mode="record_key", delete_enabled=True, batch_size=3)
    res = run_sink(cfg, kafka)
    assert res.rows == 3 and res.tombstones == 2
    assert _fetch(db_url, f'SELECT id, v FROM "{topic}" ORDER BY id') == [(3, "c"), (4, "d")]
    assert _stored(cfg, topic) == {0: 7}
    assert run_sink(cfg, kafka).rows == 0


def test_table_sink_filter_tombstones_keeps_keys_and_all_filtered_advances_offsets(
        db_url, kafka, topic_factory, unique):
    topic = topic_factory("txt")
    _produce(kafka, topic, [
        ({"id": 1}, {"id": 1, "v": "a"}, T0, None),
        ({"id": 2}, {"id": 2, "v": "b"}, T0, None),
        ({"id": 1}, None, T0, None),
    ])
    drop_tombstones = [{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}}]
    cfg = _table_cfg(db_url, topic, unique, drop_tombstones, insert_mode="upsert", pk_mode="record_key",
                     delete_enabled=True)
    assert run_sink(cfg, kafka).rows == 2
    assert _fetch(db_url, f'SELECT id, v FROM "{topic}" ORDER BY id') == [(1, "a"), (2, "b")]  # no delete
    assert _stored(cfg, topic) == {0: 3}
    # keep only tombstones (negate): the values are all dropped, deletes still apply
    _produce(kafka, topic, [({"id": 3}, {"id": 3, "v": "c"}, T0, None), ({"id": 2}, None, T0, None)])
    only_tombstones = [{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}, "negate": True}]
    cfg2 = _table_cfg(db_url, topic, unique, only_tombstones, insert_mode="upsert", pk_mode="record_key",
                      delete_enabled=True)
    res = run_sink(cfg2, kafka)
    assert (res.rows, res.tombstones) == (0, 1)
    assert _fetch(db_url, f'SELECT id, v FROM "{topic}" ORDER BY id') == [(1, "a")]
    assert _stored(cfg2, topic) == {0: 5}
    # every record filtered: nothing written, the stored offsets still reach the range end
    _produce(kafka, topic, [({"id": 9}, {"id": 9, "v": "z"}, T0, None)] * 4)
    cfg3 = _table_cfg(db_url, topic, unique, [{"type": "Filter"}], insert_mode="upsert", pk_mode="record_key")
    assert run_sink(cfg3, kafka).rows == 0
    assert _fetch(db_url, f'SELECT id, v FROM "{topic}" ORDER BY id') == [(1, "a")]
    assert _stored(cfg3, topic) == {0: 9}


def test_table_sink_insert_field_real_offsets_and_timestamps(db_url, kafka, topic_factory, unique):
    topic = topic_factory("txo")
    chain = [{"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "skip"}},
             {"type": "InsertField.Value", "offset_field": "kafka_offset!", "timestamp_field": "kafka_ts!"}]
    cfg = _table_cfg(db_url, topic, unique, chain, pk_mode="record_value", pk_fields=["id"])
    _produce(kafka, topic, [({"id": i}, {"id": i}, T0 + i * 1000, None) for i in range(3)])
    assert run_sink(cfg, kafka).rows == 3
    _produce(kafka, topic, [({"id": i}, {"id": i}, T0 + i * 1000 + 7, SKIP if i == 4 else None) for i in range(3, 7)])
    assert run_sink(cfg, kafka).rows == 3
    epoch = "epoch_ms(kafka_ts)" if db_url.startswith("duckdb") else \
        "CAST(EXTRACT(EPOCH FROM kafka_ts) * 1000 AS BIGINT)"
    got = _fetch(db_url, f'SELECT id, kafka_offset, {epoch} FROM "{topic}" ORDER BY id')
    assert got == [(0, 0, T0), (1, 1, T0 + 1000), (2, 2, T0 + 2000),
                   (3, 3, T0 + 3007), (5, 5, T0 + 5007), (6, 6, T0 + 6007)]
    assert _stored(cfg, topic) == {0: 7}


def test_parquet_time_partitions_on_kafka_timestamps_with_filter(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("txp")
    stamps = [T0, T0 + DAY, T0 + 60_000, T0 + 2 * DAY, T0 + DAY + 1, T0 + 2 * DAY + 5]
    skipped = {1, 3}
    _produce(kafka, topic, [(None, {"id": i}, t, SKIP if i in skipped else None) for i, t in enumerate(stamps)]
             + [(None, None, T0 + 3 * DAY, None)])  # a tombstone: dropped as always
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"pq-{unique}", topics=[topic], path=str(tmp_path),
                            partitioner="time", path_format="'dt'=YYYY-MM-dd",
                            transforms=[{"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "skip"}},
                                        {"type": "InsertField.Value", "offset_field": "off"}])
    res = run_sink(cfg, kafka)
    assert (res.rows, res.tombstones) == (4, 1)
    assert file_rows(str(tmp_path), topic) == {
        f"dt=2024-03-09/{topic}+0+00000000000000000000.parquet": [0, 2],
        f"dt=2024-03-10/{topic}+0+00000000000000000004.parquet": [4],
        f"dt=2024-03-11/{topic}+0+00000000000000000005.parquet": [5],
    }
    assert file_rows(str(tmp_path), topic, "off") == {
        f"dt=2024-03-09/{topic}+0+00000000000000000000.parquet": [0, 2],
        f"dt=2024-03-10/{topic}+0+00000000000000000004.parquet": [4],
        f"dt=2024-03-11/{topic}+0+00000000000000000005.parquet": [5],
    }
    c = kafka.consumer(group_id=cfg.consumer_group)
    assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 7
    c.close()


def test_table_sink_record_key_from_a_transform_made_key(db_url, kafka, topic_factory, unique):
    """Messages without keys; ValueToKey makes the key, and pk_mode record_key upserts on it."""
    topic = topic_factory("txk")
    _produce(kafka, topic, [(None, {"id": i % 3, "v": f"v{i}"}, T0, None) for i in range(7)])
    cfg = _table_cfg(db_url, topic, unique, [{"type": "ValueToKey", "fields": ["id"]}],
                     insert_mode="upsert", pk_mode="record_key")
    assert run_sink(cfg, kafka).rows == 7
    assert _fetch(db_url, f'SELECT id, v FROM "{topic}" ORDER BY id') == [(0, "v6"), (1, "v4"), (2, "v5")]
    # a primitive key made by ExtractField.Key names its column with pk_fields
    topic2 = topic_factory("txk2")
    _produce(kafka, topic2, [({"code": f"c{i % 2}", "n": i}, {"v": i}, T0, None) for i in range(5)])
    cfg2 = _table_cfg(db_url, topic2, unique, [{"type": "ExtractField.Key", "field": "code"}],
                      insert_mode="upsert", pk_mode="record_key", pk_fields=["code"])
    assert run_sink(cfg2, kafka).rows == 5
    assert _fetch(db_url, f'SELECT code, v FROM "{topic2}" ORDER BY code') == [("c0", 4), ("c1", 3)]
