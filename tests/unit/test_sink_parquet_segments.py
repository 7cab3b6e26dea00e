"""Parquet sink without Kafka: partitioner helpers, and a randomized crash model of the runtime proving
that any crash point, run boundary, batch size and schema change leaves each record exactly once."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.sinks.parquet import ParquetSink
from integrations.sinks.parquet_partitioners import Partitioner, record_times, strftime_format


def _cfg(tmp_path: Path, **kw) -> ParquetSinkConfig:
    return ParquetSinkConfig(type="parquet_sink", name="u", topics=["t"], path=str(tmp_path), **kw)


def test_strftime_format_tokens_and_quotes():
    assert strftime_format("year=YYYY/month=MM/day=dd/hour=HH") == "year=%Y/month=%m/day=%d/hour=%H"
    assert strftime_format("'year'=YYYY/'minute'=mm/100%") == "year=%Y/minute=%M/100%%"
    with pytest.raises(HeadraceError, match="relative path"):
        strftime_format("../YYYY")


def test_record_times_accepts_timestamps_epoch_ms_and_iso():
    expect = [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)]
    for col in (pa.array([1704164645000]), pa.array(["2024-01-02T03:04:05Z"]),
                pa.array(["2024-01-02 05:04:05+02:00"]), pa.array(expect, pa.timestamp("us", tz="UTC")),
                pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("ms"))):
        assert record_times(pa.table({"ts": col}), "ts", None).to_pylist() == expect
    with pytest.raises(HeadraceError, match="is null in 1 record"):
        record_times(pa.table({"ts": pa.array([None, 1], pa.int64())}), "ts", None)


def test_window_paths_hourly_and_daily_with_dst(tmp_path):
    p = Partitioner(_cfg(tmp_path, partitioner="time", timezone="Europe/Berlin"))
    start = dt.datetime(2024, 3, 30, 23, tzinfo=dt.UTC)  # 2024-03-31 00:00 in Berlin, a 23-hour day
    assert p.window_paths(start, start + dt.timedelta(hours=23)) == ["year=2024/month=03/day=31"]
    h = Partitioner(_cfg(tmp_path, partitioner="time", partition_duration="hourly"))
    s = dt.datetime(2024, 1, 1, 22, tzinfo=dt.UTC)
    assert h.window_paths(s, s + dt.timedelta(hours=3)) == [
        "year=2024/month=01/day=01/hour=22", "year=2024/month=01/day=01/hour=23", "year=2024/month=01/day=02/hour=00"]


class _Crash(Exception):
    pass


@pytest.mark.parametrize("seed", range(12))
def test_random_crashes_leave_each_record_exactly_once(tmp_path, seed):
    rnd = random.Random(seed)
    n = 400
    groups = [rnd.choice("abc") for _ in range(n)]
    extra = [i >= n // 2 and rnd.random() < 0.3 for i in range(n)]  # schema changes in the second half
    cfg = _cfg(tmp_path, partitioner="field", partition_fields=["g"], flush_size=rnd.choice([7, 25, 1000]))

    def batch(lo: int, hi: int) -> tuple[pa.Table, pa.Array]:
        cols = {"id": list(range(lo, hi)), "g": groups[lo:hi]}
        if any(extra[lo:hi]):  # inference over a batch: one schema for the whole batch
            cols["x"] = [1.5 if extra[i] else None for i in range(lo, hi)]
        return pa.table(cols), pa.array(range(lo, hi), pa.int64())

    committed, crashes = 0, 0
    while committed < n:
        end = rnd.randint(committed + 1, n)
        budget = rnd.choice([None, 0, 1, 2, 5])

        def after_write(_f: str, left=[budget]) -> None:  # noqa: B006 - per-run mutable budget
            if left[0] is not None:
                if left[0] == 0:
                    raise _Crash
                left[0] -= 1

        sink = ParquetSink(cfg, after_write=after_write)
        pos = committed
        try:
            while pos < end or pos < (sink.read_until("t", 0) or 0):  # the runtime reads on to a claimed end
                hi = min(max(end, sink.read_until("t", 0) or 0), pos + rnd.randint(1, 60))
                t, offs = batch(pos, hi)
                durable = sink.put("t", 0, t, offs)
                committed = durable if durable is not None else committed
                pos = hi
            sink.flush("t", 0)
            committed = pos
        except _Crash:
            crashes += 1
    files = [f for f in (tmp_path / "t").rglob("*.parquet")]
    ids = sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist())
    assert ids == list(range(n)), f"seed {seed}: {crashes} crashes"
    for f in files:  # every file holds one group and starts at its name's offset
        t = pq.read_table(f)
        assert int(f.name.split("+")[2].split(".")[0]) == t.column("id")[0].as_py()
        assert f.parent.name == f"g={groups[t.column('id')[0].as_py()]}"


@pytest.mark.parametrize(("kw", "msg"), [
    ({"partitioner": "field"}, "needs 'partition_fields'"),
    ({"partitioner": "time", "timezone": "Mars/Olympus"}, "not a known IANA time zone"),
    ({"path_format": "YYYY"}, "only used with partitioner 'time'"),
    ({"partition_fields": ["a"]}, "only used with partitioner 'field'"),
])
def test_parquet_config_rules(tmp_path, kw, msg):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=msg):
        _cfg(tmp_path, **kw)


def test_encode_times_local_hours_across_dst(tmp_path):
    p = Partitioner(_cfg(tmp_path, partitioner="time", partition_duration="hourly", timezone="Europe/Berlin"))
    utc = [dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC), dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC),
           dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC)]
    got = p.encode_times(pa.array(utc, pa.timestamp("ms", tz="UTC"))).to_pylist()
    assert got == ["year=2024/month=10/day=27/hour=02", "year=2024/month=10/day=27/hour=02",
                   "year=2024/month=03/day=31/hour=03"]
