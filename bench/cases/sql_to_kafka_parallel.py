"""sql_to_kafka_parallel: a PostgreSQL table of 1,000,000 rows → Kafka in bulk mode, read in K key ranges.

``HEADRACE_BENCH_RANGES`` (default 2) is K; ``HEADRACE_BENCH_SPLIT`` says who reads the ranges:
``tasks`` (default: ``tasks_max: K``, one forked process per task, each ``run_source(config, task=i)``
reading its key range of the one table) or ``threads`` (one task, ``read_ranges=K``: K sessions read
at once while one producer sends). Run it with K = 1 and 2.

Ceiling: K forked processes, each one streaming ADBC query (COPY) of its key range cut into chunks of
the same size → DuckDB to_json → an idempotent acks=all producer (as bench/cases/sql_to_kafka.py).
"""

from __future__ import annotations

import os
import uuid

import duckdb

from bench.cases.kafka_to_parquet_4p import _in_processes
from bench.cases.sql_to_kafka import _produce_chunk
from bench.common import adbc_chunks, delete_topics, drop_db, make_pg_table
from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source
from integrations.runtime.tasks import key_range
from integrations.sources.sql import SqlSource  # noqa: F401 - imported before timing, like the ceiling's driver

NAME = "sql_to_kafka_parallel"
DEFAULT_ROWS = 1_000_000
CHUNK = 100_000


def ranges() -> int:
    """K, the key ranges of this run (``HEADRACE_BENCH_RANGES``)."""
    return int(os.environ.get("HEADRACE_BENCH_RANGES", "2"))


def setup(rows: int) -> dict:
    """Create the table; topics are made per run."""
    return {"url": make_pg_table(rows), "rows": rows}


def engine(state: dict) -> int:
    """Move the table to a fresh topic through Headrace (bulk, key = id), in K ranges."""
    prefix = f"bench-sqlp-{uuid.uuid4().hex[:8]}-"
    k = ranges()
    threads = os.environ.get("HEADRACE_BENCH_SPLIT", "tasks") == "threads"
    cfg = SqlSourceConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="sql_source", connection_url=state["url"], mode="bulk",
        tables=["bench_rows"], topic_prefix=prefix, key_columns=["id"], batch_max_rows=CHUNK,
        tasks_max=1 if threads else k,
    )
    # no Kafka client in this process before the fork (librdkafka's threads do not survive one)
    _in_processes(1, lambda _i: KafkaSettings.from_env().ensure_topic(prefix + "bench_rows") or 0)
    if threads or k == 1:
        rows = _in_processes(1, lambda _i: run_source(cfg, read_ranges=k).rows)
    else:
        rows = _in_processes(k, lambda i: run_source(cfg, task=i).rows)
    delete_topics(prefix + "bench_rows")
    return rows


def ceiling(state: dict) -> int:
    """K processes, each streaming its key range with ADBC and producing it."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-sqlpc-{uuid.uuid4().hex[:8]}"
    _in_processes(1, lambda _i: kafka.ensure_topic(topic) or 0)  # no client here before the forks
    k, rows = ranges(), state["rows"]

    def part(i: int) -> int:
        lo, hi = key_range(1, rows, k, i)
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        con.execute("SET threads=1")
        p = kafka.producer()
        query = f"SELECT * FROM bench_rows WHERE id BETWEEN {lo} AND {hi}"
        return sum(_produce_chunk(con, p, topic, t) for t in adbc_chunks(state["url"], query, CHUNK))

    total = _in_processes(k, part)
    delete_topics(topic)
    return total


def teardown(state: dict) -> None:
    """Drop the database."""
    drop_db(state["url"])
