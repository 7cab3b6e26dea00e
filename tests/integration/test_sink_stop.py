"""Clean stops of sinks (issue 11, item 3): SIGTERM and SIGINT end a run right after a commit, with one
line and exit code 128 + signal; what is published is exactly what is committed, nothing is staged,
and the next run completes with every numbered record once."""

from __future__ import annotations

import os
import signal

import psycopg

from tests.conftest import run_cli
from tests.integration.sink_race import (
    connector,
    finish,
    overlaps,
    parquet_counts,
    parquet_world,
    produce_ids,
    reap,
    spawn_paused,
    table_counts,
)


def test_sigterm_stops_a_parquet_run_at_a_commit(kafka, topic_factory, unique, tmp_path):
    n, name = 100_000, f"sp-{unique}"
    topic, root, cfg = parquet_world(kafka, topic_factory, tmp_path, "stop-pq", name, n, flush_size=1000)
    p = spawn_paused(cfg, "sink_after_write", tmp_path / "once")  # its first file is published
    try:
        os.kill(p.pid, signal.SIGTERM)
        os.kill(p.pid, signal.SIGCONT)
        rc, lines = finish(p)
    finally:
        reap(p)
    assert rc == 128 + signal.SIGTERM, lines
    assert len(lines) == 1 and lines[0].startswith(f"stopped: connector {name}: stopped at a batch boundary"), lines
    committed = kafka.committed(f"headrace-{name}", topic)
    done = sum(o or 0 for o in committed.values())
    assert 0 < done < n
    rows, distinct, _lo, _hi = parquet_counts(root, topic)
    assert rows == distinct == done  # what is published is exactly what is committed
    assert not list(root.rglob("*.tmp"))
    run_cli("run", str(cfg), check=True)
    assert parquet_counts(root, topic) == (n, n, 0, n - 1)
    assert overlaps(root, topic) == []
    assert kafka.committed(f"headrace-{name}", topic) == {0: n // 2, 1: n // 2}


def test_sigint_stops_a_table_run_after_a_transaction(kafka, topic_factory, unique, tmp_path, pg_url):
    topic = topic_factory("stop-tb")
    n = 60_000
    produce_ids(kafka, topic, 0, n)
    name, table = f"st-{unique}", f"st_{unique}"
    cfg = connector(tmp_path / "c", {"type": "table_sink", "name": name, "topics": [topic], "connection_url": pg_url,
                                     "auto_create": True, "table_name_format": table, "batch_size": 500})

    def stored() -> int | None:
        with psycopg.connect(pg_url) as c:
            if not c.execute("SELECT 1 FROM pg_tables WHERE tablename = 'headrace_sink_offsets'").fetchone():
                return None
            row = c.execute("SELECT next_offset FROM headrace_sink_offsets WHERE connector = %s", [name]).fetchone()
            return None if row is None else row[0]

    p = spawn_paused(cfg, "sink_after_write", tmp_path / "once")  # its first transaction is committed
    try:
        assert stored() is not None
        os.kill(p.pid, signal.SIGINT)
        os.kill(p.pid, signal.SIGCONT)
        rc, lines = finish(p)
    finally:
        reap(p)
    assert rc == 128 + signal.SIGINT, lines
    assert len(lines) == 1 and lines[0].startswith(f"stopped: connector {name}: stopped at a batch boundary"), lines
    done = stored()
    assert 0 < done < n
    assert table_counts(pg_url, table) == (done, done, 0, done - 1)  # rows and offset in one transaction
    run_cli("run", str(cfg), check=True)
    assert table_counts(pg_url, table) == (n, n, 0, n - 1)
