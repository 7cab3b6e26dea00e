"""A streaming Parquet run over a time folder a window rebuild already wrote, without Kafka.

A rebuild's files carry no segment claim (``headrace.segment_end``), like files from before claims
existed. A streaming run whose segment starts at such a file must replace it, not adopt it: reading
the missing claim as an end before its records made ``_close`` publish an empty part and hand every
record back to ``_add``, which closed again, until ``RecursionError`` (the chaos scenario "window
rebuilds beside streaming runs", small files). Adopting real claims of a crashed run, many small
segments in one buffer, must not nest calls either.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.sinks.parquet import SEGMENT_END_KEY, ParquetSink

T0 = int(dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
DAY = 86_400_000


class _Committer:
    """Records the commits of a run (no broker): each must move forward."""

    def __init__(self) -> None:
        self.commits: list[int] = []

    def check(self, topic: str, partition: int) -> None:
        pass

    def probe(self, topic: str, partition: int) -> None:
        pass

    def commit(self, topic: str, partition: int, offset: int) -> None:
        assert not self.commits or offset > self.commits[-1], f"commit {offset} after {self.commits}"
        self.commits.append(offset)


def _cfg(tmp_path: Path, flush_size: int) -> ParquetSinkConfig:
    return ParquetSinkConfig(type="parquet_sink", name="u", topics=["t"], path=str(tmp_path), partitioner="time",
                             flush_size=flush_size)


def _records(lo: int, hi: int, n: int) -> tuple[pa.Table, pa.Array, pa.Array]:
    """Records ``lo..hi`` of ``n`` spread over two days (offset = id)."""
    ids = list(range(lo, hi))
    stamps = pa.array([T0 + i * 2 * DAY // n for i in ids], pa.int64())
    return pa.table({"id": ids}), pa.array(ids, pa.int64()), stamps.cast(pa.timestamp("ms", tz="UTC"))


def _stream(sink: ParquetSink, lo: int, hi: int, n: int, batch: int) -> None:
    for a in range(lo, hi, batch):
        t, offs, times = _records(a, min(hi, a + batch), n)
        sink._add(("t", 0), t, offs, times)
    sink.flush("t", 0)


def _ids(tmp_path: Path) -> list[int]:
    return sorted(i for f in (tmp_path / "t").rglob("*.parquet") for i in pq.read_table(f).column("id").to_pylist())


@pytest.mark.parametrize(("rebuild_flush", "batch"), [(100, 700), (70, 700), (100, 37), (130, 5000)])
def test_streaming_run_replaces_a_rebuilds_small_files(tmp_path, rebuild_flush, batch):
    n = 5000
    rebuild = ParquetSink(_cfg(tmp_path, rebuild_flush), window=(T0, T0 + 2 * DAY))  # no claims in its files
    _stream(rebuild, 0, n, n, 1000)
    assert _ids(tmp_path) == list(range(n))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)  # a recursion per small file shows at once, whatever the file count
    try:
        sink = ParquetSink(_cfg(tmp_path, 100))
        sink.bind(committer := _Committer())
        _stream(sink, 0, n, n, batch)
    finally:
        sys.setrecursionlimit(limit)
    assert _ids(tmp_path) == list(range(n))  # each record once: the rebuild's files replaced or dropped
    assert committer.commits[-1] == n
    heads = [f for f in (tmp_path / "t").rglob("*.parquet") if SEGMENT_END_KEY in (pq.read_schema(f).metadata or {})]
    assert len(heads) == len(committer.commits)


def test_many_claimed_segments_of_a_crashed_run_are_adopted_without_nesting(tmp_path):
    n = 6000
    crashed = ParquetSink(_cfg(tmp_path, 7))  # published 7-record segments, committed nothing
    _stream(crashed, 0, n, n, 1000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        sink = ParquetSink(_cfg(tmp_path, 5000))  # one buffer holds hundreds of claimed segments
        sink.bind(committer := _Committer())
        _stream(sink, 0, n, n, 6000)
    finally:
        sys.setrecursionlimit(limit)
    assert _ids(tmp_path) == list(range(n))
    assert committer.commits == list(range(7, n, 7)) + [n]  # the crashed run's ends, each adopted
