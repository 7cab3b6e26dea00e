"""Offsets move past records that produce no row: dead-lettered under ``errors_tolerance: all`` (even a
whole batch of them, or the tail of a batch) and dropped by a Filter. The next run reads nothing again
and dead-letters nothing again; on the real broker with DuckDB, PostgreSQL and Parquet.
"""

from __future__ import annotations

import pytest

from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.helpers import read_messages
from tests.integration.sink_helpers import stored_offsets
from tests.integration.test_errors import produce_raw
from tests.integration.test_table_sink import _fetch

BAD = [b'{"id": ', b"not json", b'{"id": 1,', b"}", b'{"id": 2']  # malformed JSON


def test_table_sink_stores_offsets_past_a_batch_of_only_bad_records(db_url, kafka, topic_factory, unique):
    topic, dlq = topic_factory("allbad"), topic_factory("allbad-dlq", create=False)
    produce_raw(kafka, topic, BAD)
    cfg = TableSinkConfig(type="table_sink", name=f"ab-{unique}", topics=[topic], connection_url=db_url,
                          auto_create=True, errors_tolerance="all", dlq_topic=dlq)
    res = run_sink(cfg, kafka)
    assert (res.rows, res.dead_lettered, res.failed) == (0, 5, 5)
    assert [m.value() for m in read_messages(kafka, dlq)] == BAD
    assert stored_offsets(cfg) == {(topic, 0): 5}  # the offsets table, which wins over the group's
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5}

    again = run_sink(cfg, kafka)
    assert (again.ranges, again.rows, again.dead_lettered) == ([], 0, 0)
    assert len(read_messages(kafka, dlq)) == 5

    # good records followed by bad ones: the stored offset moves past the bad tail too
    produce_raw(kafka, topic, [b'{"id": 10}', b'{"id": 11}', *BAD[:3]])
    res = run_sink(cfg, kafka)
    assert (res.rows, res.dead_lettered) == (2, 3)
    assert _fetch(db_url, f'SELECT id FROM "{topic}" ORDER BY id') == [(10,), (11,)]
    assert stored_offsets(cfg) == {(topic, 0): 10}
    again = run_sink(cfg, kafka)
    assert (again.ranges, again.rows, again.dead_lettered) == ([], 0, 0)
    assert len(read_messages(kafka, dlq)) == 8


def test_table_sink_stores_offsets_past_a_batch_a_filter_drops(db_url, kafka, topic_factory, unique):
    topic = topic_factory("allfilt")
    produce_raw(kafka, topic, [b'{"id": 1}', b'{"id": 2}', b'{"id": 3}'])
    cfg = TableSinkConfig(type="table_sink", name=f"af-{unique}", topics=[topic], connection_url=db_url,
                          auto_create=True, transforms=[{"type": "Filter"}])
    assert run_sink(cfg, kafka).rows == 0
    assert stored_offsets(cfg) == {(topic, 0): 3}
    assert kafka.committed(cfg.consumer_group, topic) == {0: 3}
    assert run_sink(cfg, kafka).ranges == []


@pytest.mark.parametrize("partitioner", ["default", "time"])  # decoded batches; raw messages (Kafka time)
def test_parquet_sink_commits_past_a_batch_of_only_bad_records(partitioner, kafka, topic_factory, unique,
                                                               tmp_path):
    topic, dlq = topic_factory("pqbad"), topic_factory("pqbad-dlq", create=False)
    produce_raw(kafka, topic, BAD)
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"pb-{unique}", topics=[topic], path=str(tmp_path),
                            partitioner=partitioner, errors_tolerance="all", dlq_topic=dlq)
    res = run_sink(cfg, kafka)
    assert (res.rows, res.dead_lettered, res.stats.files) == (0, 5, [])
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5}
    again = run_sink(cfg, kafka)
    assert (again.ranges, again.dead_lettered) == ([], 0)
    assert [m.value() for m in read_messages(kafka, dlq)] == BAD
    assert not list(tmp_path.rglob("*.parquet"))
