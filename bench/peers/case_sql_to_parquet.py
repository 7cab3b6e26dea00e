"""PostgreSQL → Parquet, end to end: Headrace's SQL source + Parquet sink vs dlt's sql_database source with
the pyarrow and connectorx backends.

Data: ``bench_rows`` (bench/common.py), N rows. Headrace: two ``headrace run`` processes one after the
other, the SQL source (incrementing on id, 100k-row batches) into a fresh topic, then the Parquet sink
(250k-row files, zstd) into a fresh folder; the time is the sum of both processes (both start-ups
included). dlt: one process, ``sql_table(backend=…, chunk_size=100_000)`` → the ``filesystem``
destination with ``loader_file_format="parquet"``, fresh pipeline state per run (bench/peers/scripts/
dlt_sql_parquet.py). Check: rows and sum of qty of the table's Parquet files.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import VALUE_SCHEMA, delete_topics, drop_db
from bench.peers.case_sql_to_kafka import setup as sql_setup
from bench.peers.common import Run, finish, headrace, parquet_stats, python_peer, unique
from bench.peers.proc import Timed

NAME = "sql_to_parquet"
TITLE = "PostgreSQL → Parquet, end to end"
DEFAULT_ROWS = 1_000_000


def setup(rows: int) -> dict[str, Any]:
    """The table and its expected (rows, sum of qty); a scratch folder."""
    state = sql_setup(rows)
    state["dir"] = tempfile.mkdtemp(prefix="peers_e2e_")
    return state


def chain(first: Timed, second: Timed) -> Timed:
    """Two processes run one after the other, as one measurement."""
    return Timed(first.seconds + second.seconds, max(first.peak_rss_mb, second.peak_rss_mb),
                 round((first.load_avg + second.load_avg) / 2, 2), max(first.load_max, second.load_max),
                 first.returncode or second.returncode, first.log + second.log)


def headrace_source_sink(url: str, name: str, prefix: str, out: Path) -> Timed:
    """Run the SQL source into ``<prefix>bench_rows``, then the Parquet sink into ``out`` (names are kept, so a
    rerun with the same ones moves only what is new)."""
    src = {"name": f"{name}-src", "type": "sql_source", "connection_url": url, "mode": "incrementing",
           "incrementing_column": "id", "tables": ["bench_rows"], "topic_prefix": prefix,
           "key_columns": ["id"], "batch_max_rows": 100_000}
    sink = {"name": f"{name}-sink", "type": "parquet_sink", "topics": [prefix + "bench_rows"], "path": str(out),
            "flush_size": 250_000, "value_schema": VALUE_SCHEMA, "compression": "zstd"}
    first = headrace(src)
    if first.returncode != 0:
        return first
    return chain(first, headrace(sink))


def headrace_e2e(state: dict[str, Any]) -> Run:
    """Headrace: SQL source then Parquet sink."""
    out = Path(state["dir"]) / unique("hr_")
    prefix = unique("peers-e2e-")
    try:
        timed = headrace_source_sink(state["url"], unique("peers-e2e-"), prefix, out)
        return finish("Headrace SQL source + Parquet sink", timed,
                      parquet_stats(out) if timed.returncode == 0 else None, tuple(state["expected"]))
    finally:
        delete_topics(prefix + "bench_rows")
        shutil.rmtree(out, ignore_errors=True)


def dlt_run(url: str, backend: str, out: Path, pipelines: Path, name: str, incremental: bool = False) -> Timed:
    """One dlt process (bench/peers/scripts/dlt_sql_parquet.py)."""
    return python_peer("dlt_sql_parquet.py", {
        "url": url, "table": "bench_rows", "backend": backend, "dir": str(out), "pipelines_dir": str(pipelines),
        "name": name, "incremental": incremental})


def _dlt(state: dict[str, Any], backend: str) -> Run:
    base = Path(state["dir"]) / unique("dlt_")
    try:
        timed = dlt_run(state["url"], backend, base / "out", base / "pipelines", unique("p_"))
        got = parquet_stats(base / "out" / "bench" / "bench_rows") if timed.returncode == 0 else None
        return finish(f"dlt sql_database ({backend})", timed, got, tuple(state["expected"]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def dlt_pyarrow(state: dict[str, Any]) -> Run:
    """dlt with the pyarrow backend."""
    return _dlt(state, "pyarrow")


def dlt_connectorx(state: dict[str, Any]) -> Run:
    """dlt with the connectorx backend."""
    return _dlt(state, "connectorx")


SIDES = [headrace_e2e, dlt_connectorx, dlt_pyarrow]
HEADRACE_SIDE = "Headrace SQL source + Parquet sink"
GOALS = {"dlt sql_database (connectorx)": 1.0}


def teardown(state: dict[str, Any]) -> None:
    """Drop the database and the folder."""
    drop_db(state["url"])
    shutil.rmtree(state["dir"], ignore_errors=True)
