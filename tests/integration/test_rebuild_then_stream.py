"""A window rebuilt before the connector ever committed, then streamed: every record exactly once.

A rebuild of a topic-partition that the connector has never committed reads everything Kafka has for
the window (a backfill before streaming) and writes files named ``<topic>+<partition>+<offset>``, cut
into its own segments. The first streaming runs then meet files in the same folders, some under the
very names they publish, with other offset spans. Before the fix a streaming run skipped a non-first
file of its segment whenever one of that name existed (taking it for a crashed run's copy) and
committed past it: records missing (100 of 200 when two days alternate), or written twice where the
rebuild's and the stream's segments were cut differently.

On the real broker: a daily time-partitioned Parquet sink, 200 numbered records over three days,
one day rebuilt with ``rebuild_window`` before any streaming run, then ``run_sink`` to the end.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.parquet import END_OFFSET_KEY, FILE_RE
from integrations.sinks.windows import rebuild_window
from tests.integration.sink_helpers import produce

DAY1 = dt.datetime(2024, 6, 3, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
N = 200


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _stamp(i: int, layout: str) -> int:
    """The Kafka timestamp of record ``i``: three consecutive days in offset order ("blocks"), or every
    record on the day ``i % 3`` (days alternate, so each day's offsets interleave with the others')."""
    day = i % 3 if layout == "alternating" else i * 3 // N
    return _ms(DAY1 + day * DAY) + i * 1000


def _spans(root: Path, topic: str) -> dict[str, list[tuple[int, int, str]]]:
    """``{folder: [(start, end offset, name)]}`` of every visible file, from names and metadata."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for f in sorted((root / topic).rglob("*.parquet")):
        rel = f.relative_to(root / topic)
        if any(p.startswith(".") for p in rel.parts):
            continue
        m = FILE_RE.fullmatch(f.name)
        assert m is not None, f"stray file {rel}"
        meta = pq.read_schema(f).metadata or {}
        out.setdefault(str(rel.parent), []).append((int(m["start"]), int(meta[END_OFFSET_KEY]), f.name))
    return out


CASES = [  # (layout of the days over the offsets, flush_size, max_records_per_run)
    ("alternating", 1000, None),  # one streaming segment; the rebuilt day's file has the stream's name
    ("blocks", 30, None),  # segments cut at other offsets than the rebuild's: names and spans collide
    ("blocks", 1000, 70),  # several streaming runs, each ending inside the rebuilt day
    ("alternating", 40, 90),
]


@pytest.mark.parametrize(("layout", "flush_size", "per_run"), CASES)
def test_rebuild_before_first_stream_keeps_every_record_once(kafka, topic_factory, tmp_path, unique,
                                                             layout, flush_size, per_run):
    topic = topic_factory("rts")
    produce(kafka, topic, [(0, None, {"id": i}, _stamp(i, layout)) for i in range(N)])
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"rts-{unique}", topics=[topic], path=str(tmp_path),
                            partitioner="time", partition_duration="daily", timezone="UTC",
                            flush_size=flush_size, max_records_per_run=per_run)
    assert kafka.committed(cfg.consumer_group, topic).get(0) is None  # never committed

    rebuilt = rebuild_window(cfg, DAY1 + DAY, DAY1 + 2 * DAY, kafka)  # the middle day, before any streaming run
    day2 = [i for i in range(N) if _stamp(i, layout) // 86_400_000 == _ms(DAY1 + DAY) // 86_400_000]
    got = sorted(ds.dataset(str(tmp_path / topic), format="parquet").to_table().column("id").to_pylist())
    # days in offset order: the whole day; alternating days: offsets_for_times finds only a part of it
    assert rebuilt.rows == len(got) > 0 and set(got) <= set(day2) and (layout != "blocks" or got == day2)

    for _ in range(N):  # to the end (several runs with max_records_per_run)
        if run_sink(cfg, kafka).rows == 0 and kafka.committed(cfg.consumer_group, topic).get(0) == N:
            break
    assert kafka.committed(cfg.consumer_group, topic).get(0) == N

    ids = ds.dataset(str(tmp_path / topic), format="parquet").to_table().column("id").to_pylist()
    missing, twice = sorted(set(range(N)) - set(ids)), len(ids) - len(set(ids))
    assert (missing, twice) == ([], 0), f"{len(missing)} missing {missing[:10]}, {twice} duplicated"
    assert sorted(ids) == list(range(N))
    for folder, spans in _spans(tmp_path, topic).items():  # no two files of a folder share an offset
        spans.sort()
        for (s0, e0, a), (s1, _e1, b) in zip(spans, spans[1:], strict=False):
            assert e0 <= s1, f"{folder}: {a} [{s0}, {e0}) overlaps {b}"
    # a streaming run after the end finds nothing more to write, and changes nothing
    assert run_sink(cfg, kafka).rows == 0
    assert sorted(ds.dataset(str(tmp_path / topic), format="parquet").to_table().column("id").to_pylist()) == \
        list(range(N))
