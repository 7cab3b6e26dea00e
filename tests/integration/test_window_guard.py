"""A window rebuild never replaces existing files with nothing (e.g. the records expired from Kafka)."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.windows import rebuild_window
from tests.integration.sink_helpers import file_rows, produce

D0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def test_rebuild_of_a_window_without_records_keeps_existing_files(kafka, topic_factory, tmp_path, unique):
    topic = topic_factory("guard")
    p = kafka.producer()
    ts = int(D0.timestamp() * 1000)
    for i in range(5):  # records on 2024-05-01 only
        p.produce(topic, orjson.dumps({"id": i}), timestamp=ts + i)
    assert p.flush(30) == 0
    day = tmp_path / topic / "year=2024/month=05/day=03"
    day.mkdir(parents=True)
    pq.write_table(pa.table({"id": [42]}), day / "kept.parquet")
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"guard-{unique}", topics=[topic], path=str(tmp_path),
                            partitioner="time")
    with pytest.raises(HeadraceError, match=rf"refusing to replace {topic}/year=2024/month=05/day=03"):
        rebuild_window(cfg, D0 + dt.timedelta(days=2), D0 + dt.timedelta(days=3), kafka)
    assert pq.read_table(day / "kept.parquet").column("id").to_pylist() == [42]
    # a window that does have records still rebuilds
    res = rebuild_window(cfg, D0, D0 + dt.timedelta(days=1), kafka)
    assert res.rows == 5


D10 = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
HOUR = 3_600_000


def _cfg(topic: str, root, unique: str, **extra) -> ParquetSinkConfig:
    return ParquetSinkConfig(type="parquet_sink", name=f"ooo-{unique}", topics=[topic], path=str(root),
                             partitioner="time", **extra)


def test_rebuild_rereads_records_stamped_out_of_order(kafka, topic_factory, tmp_path, unique):
    """Kafka timestamps day 10, day 11, day 10: offsets_for_times ends day 10 at offset 1, but the
    streaming sink put offsets 0 and 2 in day 10's folder; the rebuild reads both again."""
    topic = topic_factory("ooo")
    t10 = int(D10.timestamp() * 1000)
    produce(kafka, topic, [(0, None, {"id": 0}, t10 + HOUR), (0, None, {"id": 1}, t10 + 25 * HOUR),
                           (0, None, {"id": 2}, t10 + 2 * HOUR)])
    cfg = _cfg(topic, tmp_path, unique)
    assert run_sink(cfg, kafka).rows == 3
    day10 = "year=2024/month=03/day=10"
    streamed = file_rows(str(tmp_path), topic)
    assert streamed == {f"{day10}/{topic}+0+{0:020d}.parquet": [0, 2],
                        f"year=2024/month=03/day=11/{topic}+0+{1:020d}.parquet": [1]}
    res = rebuild_window(cfg, D10, D10 + dt.timedelta(days=1), kafka)
    assert [(r.partition, r.start, r.end) for r in res.ranges] == [(0, 0, 3)]
    assert res.rows == 2
    assert file_rows(str(tmp_path), topic) == streamed


def test_rebuild_slack_finds_out_of_order_records_never_streamed(kafka, topic_factory, tmp_path, unique):
    """With no files yet, only the lookup can find a late-stamped record: rebuild_slack widens it."""
    topic = topic_factory("slack")
    t10 = int(D10.timestamp() * 1000)
    produce(kafka, topic, [(0, None, {"id": 0}, t10 + HOUR), (0, None, {"id": 1}, t10 + 24 * HOUR + 60_000),
                           (0, None, {"id": 2}, t10 + 23 * HOUR), (0, None, {"id": 3}, t10 + 30 * HOUR)])
    day10 = tmp_path / "a" / topic / "year=2024/month=03/day=10"
    res = rebuild_window(_cfg(topic, tmp_path / "a", unique), D10, D10 + dt.timedelta(days=1), kafka)
    assert res.rows == 1 and [pq.read_table(f).column("id").to_pylist() for f in day10.iterdir()] == [[0]]
    wide = _cfg(topic, tmp_path / "b", unique, rebuild_slack=3600)
    res = rebuild_window(wide, D10, D10 + dt.timedelta(days=1), kafka)
    assert [(r.start, r.end) for r in res.ranges] == [(0, 3)]
    assert file_rows(str(tmp_path / "b"), topic) == {f"year=2024/month=03/day=10/{topic}+0+{0:020d}.parquet": [0, 2]}


def test_rebuild_refuses_files_whose_records_left_kafka(kafka, topic_factory, tmp_path, unique):
    """Records deleted from the log (retention; here delete_records) cannot be rebuilt: a loud error."""
    from confluent_kafka import TopicPartition

    topic = topic_factory("gone")
    t10 = int(D10.timestamp() * 1000)
    produce(kafka, topic, [(0, None, {"id": i}, t10 + i * HOUR) for i in range(4)])
    cfg = _cfg(topic, tmp_path, unique)
    run_sink(cfg, kafka)
    before = file_rows(str(tmp_path), topic)
    admin = kafka.admin()
    for fut in admin.delete_records([TopicPartition(topic, 0, 2)], request_timeout=30).values():
        fut.result(timeout=30)
    with pytest.raises(HeadraceError, match=r"holds records from offset 0 .* no longer has \(its log starts at 2\)"):
        rebuild_window(cfg, D10, D10 + dt.timedelta(days=1), kafka)
    assert file_rows(str(tmp_path), topic) == before
