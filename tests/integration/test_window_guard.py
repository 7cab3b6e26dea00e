"""A window rebuild never replaces existing files with nothing (e.g. the records expired from Kafka)."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.sinks.windows import rebuild_window

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
