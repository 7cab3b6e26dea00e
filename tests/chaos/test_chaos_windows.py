"""Chaos: window rebuilds (what a Dagster backfill of a time partition runs) beside streaming runs of the
same time-partitioned Parquet sink (issue 11 item 7).

Numbered records span four days of Kafka timestamps. Streaming runs (``headrace run``, capped by
``max_records_per_run`` so several runs are needed) drain the topic while, at the same time, rebuild
processes cycle over the four days, each swapping its day's folder. Every record must end in exactly
one file: a rebuild never discards a file a streaming run published, and never writes a record a
streaming run writes too.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from tests.chaos.connectors import parquet_sink
from tests.chaos.harness import (
    FULL,
    SCALE,
    Run,
    one_line_failure,
    parquet_ids,
    produce_numbered,
    tally,
    topic_ids,
)

D0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
DAYS = 4
REBUILD = """
import datetime as dt, sys
from headrace.cli import load_connector
from integrations.sinks.windows import rebuild_window
res = rebuild_window(load_connector(sys.argv[1]), dt.datetime.fromisoformat(sys.argv[2]),
                     dt.datetime.fromisoformat(sys.argv[3]))
print(res.rows)
"""


def test_window_rebuilds_beside_streaming_runs(chaos, unique):
    n = SCALE.rows
    topic = chaos.topic(f"chaos-win-{unique}")
    step = DAYS * 86_400_000 / n
    t0 = int(D0.timestamp() * 1000)
    produce_numbered(chaos.kafka, topic, range(1, n + 1), timestamp=lambda i: t0 + int((i - 1) * step))
    lake = chaos.folder / "lake"
    per_run = -(-n // 3 // (5 if FULL else 3))  # several streaming runs to drain each partition
    cfg = chaos.connector(parquet_sink(f"chaos-win-{unique}", topic, lake, partitioner="time",
                                       flush_size=max(SCALE.batch // 4, 500), max_records_per_run=per_run))
    streams: list[Run] = []
    rebuilds: list[Run] = []
    rebuild: Run | None = None
    day = 0
    while True:
        stream = chaos.start(cfg, f"stream{len(streams) + 1}")
        streams.append(stream)
        while stream.code is None:  # rebuild one day after another while the streaming run works
            if rebuild is None or rebuild.code is not None:
                start = D0 + dt.timedelta(days=day % DAYS)
                rebuild = chaos.start(cfg, f"rebuild-day{day % DAYS}", args=[
                    sys.executable, "-c", REBUILD, str(cfg), start.isoformat(),
                    (start + dt.timedelta(days=1)).isoformat()])
                rebuilds.append(rebuild)
                day += 1
            time.sleep(0.05)
        if stream.code == 0 and stream.result().get("rows") == 0 and not sum(stream.result()["lag_after"].values()):
            break
        if stream.code != 0:  # lost a race with a rebuild: one line, then the next run goes on
            one_line_failure(stream, code=1)
        assert len(streams) < 20, f"streaming never caught up: {stream.describe()}"
    if rebuild is not None:
        rebuild.wait(300)
    got = tally("parquet dataset", parquet_ids(lake), n)
    got.note = f"{len(rebuilds)} rebuilds, {len(streams)} streaming runs"
    chaos.record(tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n), got)
    chaos.kills = len(rebuilds)
    for r in streams + rebuilds:  # a run that lost a race fails with one line, never with a traceback
        if r.code != 0:
            one_line_failure(r, code=1)
    assert any(r.code == 0 for r in rebuilds), f"no rebuild completed: {rebuilds[-1].describe()}"
    assert (got.missing, got.stray) == (0, 0), "records lost: a rebuild discarded a streamed file"
    assert got.duplicates == 0, f"records written twice by a rebuild and a streaming run: {_where_twice(lake)}"


def _where_twice(lake) -> str:
    """Which files hold the same records (what to look at when a rebuild and a streaming run overlap)."""
    import collections

    import pyarrow.parquet as pq

    seen: dict[int, list[str]] = collections.defaultdict(list)
    for f in sorted(lake.rglob("*.parquet")):
        for i in pq.read_table(f, columns=["id"]).column("id").to_pylist():
            seen[i].append(str(f.relative_to(lake)))
    pairs = collections.Counter(tuple(v) for v in seen.values() if len(v) > 1)
    return "; ".join(f"{n} records in {' and '.join(files)}" for files, n in pairs.most_common(5))
