"""Helpers of the fencing and stop tests: connector files, background ``headrace run`` processes, and
counts of numbered records (``{"id": n}``) in Parquet datasets and tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
import psycopg
import pyarrow.fs as pafs

from integrations.sinks.parquet import file_origin
from tests.conftest import REPO
from tests.helpers import produce_all, write_connector


def produce_ids(kafka, topic: str, lo: int, hi: int, partitions: int = 1) -> None:
    """Records ``{"id": n}`` for n in ``[lo, hi)``, round robin over the partitions."""
    produce_all(kafka, topic, ({"value": orjson.dumps({"id": i}), "partition": i % partitions} for i in range(lo, hi)))


def parquet_world(kafka, topic_factory, tmp_path: Path, prefix: str, name: str, n: int, flush_size: int,
                  partitions: int = 2) -> tuple[str, Path, Path]:
    """A topic of ``n`` numbered records over ``partitions`` and a Parquet sink connector file for it:
    ``(topic, dataset root, connector file)``."""
    topic = topic_factory(prefix, partitions=partitions)
    produce_ids(kafka, topic, 0, n, partitions=partitions)
    root = tmp_path / "lake"
    cfg = connector(tmp_path / "c", {"type": "parquet_sink", "name": name, "topics": [topic], "path": str(root),
                                     "flush_size": flush_size})
    return topic, root, cfg


def spawn(cfg: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``headrace run <cfg>`` in the background (its own process group, killed by ``reap``)."""
    return subprocess.Popen([sys.executable, "-m", "headrace.cli", "run", str(cfg)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                            start_new_session=True)


def spawn_paused(cfg: Path, point: str, once: Path) -> subprocess.Popen:
    """``headrace run <cfg>`` stopped (SIGSTOP to itself) the first time it reaches fault ``point``
    (``once`` marks that it fired); returns once the process is stopped. A signal sent now is
    delivered when the test resumes it with SIGCONT: a stop at a known place, whatever the load."""
    p = spawn(cfg, {"HEADRACE_FAULT": point, "HEADRACE_FAULT_ACTION": "pause", "HEADRACE_FAULT_ONCE": str(once)})
    wait_for(lambda: p.poll() is not None or process_state(p.pid) == "T", timeout=120, every=0.02)
    assert p.poll() is None, finish(p)
    return p


def process_state(pid: int) -> str:
    """The state letter of ``pid`` from /proc (``T``: stopped; ``?``: gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "?"


def reap(*procs: subprocess.Popen) -> None:
    """Kill what is still running (a failed test leaves no process behind)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, list[str]]:
    """Wait for a background run: its exit code and its non-empty stderr lines."""
    _out, err = p.communicate(timeout=timeout)
    return p.returncode, [line for line in err.splitlines() if line.strip()]


def wait_for(predicate, timeout: float = 60, every: float = 0.005) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


def parquet_counts(root: Path, topic: str) -> tuple[int, int, int, int]:
    """``(rows, distinct ids, min id, max id)`` over every published Parquet file of a topic."""
    files = [str(f) for f in (root / topic).rglob("*.parquet") if not f.name.startswith(".")]
    if not files:
        return 0, 0, 0, 0
    return duckdb.sql(f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM read_parquet({files!r})").fetchall()[0]


def overlaps(root: Path, topic: str) -> list[tuple]:
    """Pairs of files of one partition whose offset ranges ``[start, end)`` overlap (headrace.end_offset)."""
    fs = pafs.LocalFileSystem()
    spans = sorted(file_origin(fs, str(f))[1:] for f in (root / topic).rglob("*.parquet") if not f.name.startswith("."))
    return [(a, b) for a, b in zip(spans, spans[1:], strict=False) if a[0] == b[0] and b[1] < a[2]]


def table_counts(url: str, table: str) -> tuple[int, int, int, int]:
    """``(rows, distinct ids, min id, max id)`` of a table in DuckDB or PostgreSQL."""
    sql = f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{table}"'
    if url.startswith("duckdb"):
        con = duckdb.connect(url.split(":///", 1)[1], read_only=True)
        try:
            return con.execute(sql).fetchone()
        finally:
            con.close()
    with psycopg.connect(url) as c:
        return c.execute(sql).fetchone()


def connector(folder: Path, config: dict) -> Path:
    """Write a connector file."""
    return write_connector(folder, config)
