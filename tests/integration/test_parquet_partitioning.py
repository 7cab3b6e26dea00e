"""Parquet sink partitioners and rotation rules, checked by listing exact files and their rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.runtime.sink_runner import run_sink
from tests.integration.sink_helpers import file_rows, produce

DAY = 86_400_000
T0 = int(dt.datetime(2024, 3, 9, 12, tzinfo=dt.UTC).timestamp() * 1000)


def _cfg(tmp_path: Path, topic: str, unique: str, **kw) -> ParquetSinkConfig:
    return ParquetSinkConfig(type="parquet_sink", name=f"pq-{unique}", topics=[topic], path=str(tmp_path), **kw)


def test_default_partitioner_flush_size(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqd", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(10)])
    res = run_sink(_cfg(tmp_path, topic, unique, flush_size=2), kafka)
    assert res.rows == 10
    assert file_rows(str(tmp_path), topic) == {
        f"partition=0/{topic}+0+00000000000000000000.parquet": [0, 2],
        f"partition=0/{topic}+0+00000000000000000002.parquet": [4, 6],
        f"partition=0/{topic}+0+00000000000000000004.parquet": [8],
        f"partition=1/{topic}+1+00000000000000000000.parquet": [1, 3],
        f"partition=1/{topic}+1+00000000000000000002.parquet": [5, 7],
        f"partition=1/{topic}+1+00000000000000000004.parquet": [9],
    }
    assert kafka.committed(f"headrace-pq-{unique}", topic) == {0: 5, 1: 5}


def test_field_partitioner_two_fields(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqf")
    rows = [{"id": 0, "country": "DE", "kind": "a"}, {"id": 1, "country": "FR", "kind": "a"},
            {"id": 2, "country": "DE", "kind": "a"}, {"id": 3, "country": "a/../b", "kind": None},
            {"id": 4, "country": "DE", "kind": "b"}, {"id": 5, "country": "FR", "kind": "a"}]
    produce(kafka, topic, [(0, None, r, None) for r in rows])
    run_sink(_cfg(tmp_path, topic, unique, partitioner="field", partition_fields=["country", "kind"], flush_size=4),
             kafka)
    assert file_rows(str(tmp_path), topic) == {
        f"country=DE/kind=a/{topic}+0+00000000000000000000.parquet": [0, 2],
        f"country=FR/kind=a/{topic}+0+00000000000000000001.parquet": [1],
        f"country=a%2F..%2Fb/kind=__HIVE_DEFAULT_PARTITION__/{topic}+0+00000000000000000003.parquet": [3],
        f"country=DE/kind=b/{topic}+0+00000000000000000004.parquet": [4],
        f"country=FR/kind=a/{topic}+0+00000000000000000005.parquet": [5],
    }
    back = ds.dataset(str(tmp_path / topic), format="parquet", partitioning="hive").to_table()
    got = sorted(zip(back["id"].to_pylist(), back["country"].to_pylist(), strict=True))
    assert got == [(0, "DE"), (1, "FR"), (2, "DE"), (3, "a/../b"), (4, "DE"), (5, "FR")]


def test_time_partitioner_daily_record_field_timezone(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqt")
    # 12:00 UTC is 07:00 EST; after the DST switch on 2024-03-10, 05:00 UTC is 01:00 EDT.
    times = [T0, T0 + 3_600_000, T0 + DAY, T0 + DAY + 17 * 3_600_000, T0 + 3 * DAY]
    produce(kafka, topic, [(0, None, {"id": i, "ts": t}, None) for i, t in enumerate(times)])
    run_sink(_cfg(tmp_path, topic, unique, partitioner="time", timestamp_field="ts",
                  timezone="America/New_York"), kafka)
    assert file_rows(str(tmp_path), topic) == {
        f"year=2024/month=03/day=09/{topic}+0+00000000000000000000.parquet": [0, 1],
        f"year=2024/month=03/day=10/{topic}+0+00000000000000000002.parquet": [2],
        f"year=2024/month=03/day=11/{topic}+0+00000000000000000003.parquet": [3],
        f"year=2024/month=03/day=12/{topic}+0+00000000000000000004.parquet": [4],
    }


def test_time_partitioner_hourly_kafka_timestamp_path_format(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqh")
    times = [T0, T0 + 60_000, T0 + 3_600_000, T0 + 120_000, T0 + 2 * 3_600_000]
    produce(kafka, topic, [(0, None, {"id": i}, t) for i, t in enumerate(times)])
    run_sink(_cfg(tmp_path, topic, unique, partitioner="time", partition_duration="hourly",
                  path_format="'dt'=YYYY-MM-dd/'hour'=HH"), kafka)
    assert file_rows(str(tmp_path), topic) == {
        f"dt=2024-03-09/hour=12/{topic}+0+00000000000000000000.parquet": [0, 1, 3],
        f"dt=2024-03-09/hour=13/{topic}+0+00000000000000000002.parquet": [2],
        f"dt=2024-03-09/hour=14/{topic}+0+00000000000000000004.parquet": [4],
    }


def test_rotate_interval_record_time(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqr")
    secs = [0, 10, 59, 60, 61, 200, 201]
    produce(kafka, topic, [(0, None, {"id": i, "ts": T0 + s * 1000}, None) for i, s in enumerate(secs)])
    run_sink(_cfg(tmp_path, topic, unique, rotate_interval=60, timestamp_field="ts"), kafka)
    assert file_rows(str(tmp_path), topic) == {
        f"partition=0/{topic}+0+00000000000000000000.parquet": [0, 1, 2],
        f"partition=0/{topic}+0+00000000000000000003.parquet": [3, 4],
        f"partition=0/{topic}+0+00000000000000000005.parquet": [5, 6],
    }


def test_idle_partition_closes_at_range_end_and_resumes(kafka, topic_factory, unique, tmp_path):
    """An idle partition's open file is closed at the end of the run; the next run starts a new file."""
    topic = topic_factory("pqi")
    cfg = _cfg(tmp_path, topic, unique, flush_size=100)
    produce(kafka, topic, [(0, None, {"id": i}, None) for i in range(3)])
    run_sink(cfg, kafka)
    produce(kafka, topic, [(0, None, {"id": i}, None) for i in range(3, 5)])
    run_sink(cfg, kafka)
    assert file_rows(str(tmp_path), topic) == {
        f"partition=0/{topic}+0+00000000000000000000.parquet": [0, 1, 2],
        f"partition=0/{topic}+0+00000000000000000003.parquet": [3, 4],
    }


def test_schema_change_starts_new_file_and_dataset_unions(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqs")
    recs = [{"id": i} for i in range(3)] + [{"id": i, "extra": f"x{i}"} for i in range(3, 6)]
    produce(kafka, topic, [(0, None, r, None) for r in recs])
    run_sink(_cfg(tmp_path, topic, unique, compression="snappy"), kafka, consume_batch=3)
    files = file_rows(str(tmp_path), topic)
    assert files == {
        f"partition=0/{topic}+0+00000000000000000000.parquet": [0, 1, 2],
        f"partition=0/{topic}+0+00000000000000000003.parquet": [3, 4, 5],
    }
    import pyarrow.parquet as pq

    f0 = next((tmp_path / topic).rglob("*0000.parquet"))
    assert pq.ParquetFile(f0).metadata.row_group(0).column(0).compression == "SNAPPY"
    got = duckdb.sql(f"SELECT id, extra FROM read_parquet('{tmp_path}/{topic}/*/*.parquet', union_by_name=true) "
                     "ORDER BY id").fetchall()
    assert got == [(0, None), (1, None), (2, None), (3, "x3"), (4, "x4"), (5, "x5")]
    parts = ds.dataset(str(tmp_path / topic), format="parquet")
    schema = pa.unify_schemas([f.physical_schema for f in parts.get_fragments()])
    table = ds.dataset(str(tmp_path / topic), format="parquet", schema=schema).to_table()
    assert sorted(table["id"].to_pylist()) == list(range(6))


def test_bad_timestamp_field_is_a_clear_error(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqe")
    produce(kafka, topic, [(0, None, {"id": 1}, None)])
    with pytest.raises(HeadraceError, match="timestamp_field 'ts' is not in the record"):
        run_sink(_cfg(tmp_path, topic, unique, partitioner="time", timestamp_field="ts"), kafka)
