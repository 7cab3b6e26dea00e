"""Small incremental rerun: +10k rows in PostgreSQL → Parquet, as CLI processes: Headrace's SQL source + Parquet
sink (kept connector names, so offsets make each rerun move only the new rows) vs dlt's sql_database
with ``dlt.sources.incremental("id")`` (kept pipeline state, pyarrow backend).

Data: ``bench_rows`` with N rows, loaded once by both sides before timing. Each round adds 10k rows
(untimed), then each side runs once; the check is cumulative: the side's Parquet files hold every row of
the table and its sum of qty (nothing lost, nothing loaded twice). The time is dominated by process
start-up and imports.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from bench.common import delete_topics, drop_db
from bench.peers.case_sql_to_kafka import setup as sql_setup
from bench.peers.case_sql_to_parquet import dlt_run, headrace_source_sink
from bench.peers.common import Run, finish, parquet_stats, unique

NAME = "incremental"
TITLE = "Small incremental rerun (+10k rows, CLI processes)"
DEFAULT_ROWS = 100_000
STEP = 10_000
INSERT = """INSERT INTO bench_rows
SELECT g, (g %% 1000)::int, ((g %% 100000) / 100.0)::numeric(12,2), 'name-' || g,
       timestamptz '2024-01-01 00:00:00+00' + (g || ' seconds')::interval
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g"""


def _table_stats(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as c:
        n, s = c.execute("SELECT count(*), sum(qty) FROM bench_rows").fetchone()
    return int(n), int(s)


def _grow(state: dict[str, Any], side: str) -> tuple[int, int]:
    """Add STEP rows when this side has already loaded everything (the first side of a round adds them)."""
    n, _ = _table_stats(state["url"])
    if state["loaded"][side] >= n:
        with psycopg.connect(state["url"]) as c:
            c.execute(INSERT, {"lo": n + 1, "hi": n + STEP})
    return _table_stats(state["url"])


def setup(rows: int) -> dict[str, Any]:
    """The table, then both sides' first (full, untimed) load."""
    state = sql_setup(rows)
    d = Path(tempfile.mkdtemp(prefix="peers_inc_"))
    state.update({"dir": str(d), "hr_name": unique("peers-inc-"), "prefix": unique("peers-inc-"),
                  "dlt_name": unique("p_"), "work_rows": STEP})
    first = headrace_source_sink(state["url"], state["hr_name"], state["prefix"], d / "hr")
    second = dlt_run(state["url"], "pyarrow", d / "dlt", d / "pipelines", state["dlt_name"], incremental=True)
    if first.returncode or second.returncode:
        teardown(state)
        raise RuntimeError(f"first load failed: {(first.log + second.log)[-500:]}")
    state["loaded"] = {"headrace": rows, "dlt": rows}
    return state


def headrace_rerun(state: dict[str, Any]) -> Run:
    """Headrace: the same source and sink again (offsets kept)."""
    want = _grow(state, "headrace")
    d = Path(state["dir"])
    timed = headrace_source_sink(state["url"], state["hr_name"], state["prefix"], d / "hr")
    state["loaded"]["headrace"] = want[0]
    return finish("Headrace source + sink rerun", timed, parquet_stats(d / "hr") if timed.returncode == 0 else None,
                  want)


def dlt_rerun(state: dict[str, Any]) -> Run:
    """dlt: the same incremental pipeline again (state kept)."""
    want = _grow(state, "dlt")
    d = Path(state["dir"])
    timed = dlt_run(state["url"], "pyarrow", d / "dlt", d / "pipelines", state["dlt_name"], incremental=True)
    state["loaded"]["dlt"] = want[0]
    got = parquet_stats(d / "dlt" / "bench" / "bench_rows") if timed.returncode == 0 else None
    return finish("dlt incremental (pyarrow)", timed, got, want)


SIDES = [headrace_rerun, dlt_rerun]
HEADRACE_SIDE = "Headrace source + sink rerun"
GOALS = {"dlt incremental (pyarrow)": 1.0}


def teardown(state: dict[str, Any]) -> None:
    """Drop the database, the topic and the folder."""
    delete_topics(state["prefix"] + "bench_rows")
    drop_db(state["url"])
    shutil.rmtree(state["dir"], ignore_errors=True)
