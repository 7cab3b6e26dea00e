"""PostgreSQL table → Kafka: Headrace's SQL source (incrementing and bulk) vs Debezium's snapshot.

Data: ``bench_rows`` (bench/common.py), N rows. Every run writes a fresh topic; the check reads it back and
compares the message count and the sum of ``qty`` with the table's. Debezium runs stock
(``snapshot.mode=initial_only``, pgoutput, JSON converter without schemas) and as the named variant
"tuned" (bigger Debezium queue and batches, snapshot fetch size 100k, producer lz4 and 1 MB batches with
linger 20 ms, as Headrace's producer).
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import delete_topics, drop_db, high_watermark, make_pg_table
from bench.peers.common import Run, finish, headrace, topic_stats, unique
from bench.peers.connect import run_connector
from integrations.kafka.cluster import KafkaSettings

NAME = "sql_to_kafka"
TITLE = "PostgreSQL table → Kafka"
DEFAULT_ROWS = 1_000_000
TUNED_WORKER = {"producer.compression.type": "lz4", "producer.batch.size": 1_048_576, "producer.linger.ms": 20}
TUNED_DEBEZIUM = {"max.batch.size": 20_480, "max.queue.size": 81_920, "snapshot.fetch.size": 100_000}


def setup(rows: int) -> dict[str, Any]:
    """The table, and its expected (rows, sum of qty)."""
    url = make_pg_table(rows)
    with psycopg.connect(url) as c:
        n, s = c.execute("SELECT count(*), sum(qty) FROM bench_rows").fetchone()
    return {"url": url, "rows": rows, "expected": [int(n), int(s)]}


def _headrace(state: dict[str, Any], mode: str, side: str) -> Run:
    prefix = unique("peers-hr-")
    cfg: dict[str, Any] = {
        "name": unique("peers-sql-"), "type": "sql_source", "connection_url": state["url"], "mode": mode,
        "tables": ["bench_rows"], "topic_prefix": prefix, "key_columns": ["id"], "batch_max_rows": 100_000,
    }
    if mode == "incrementing":
        cfg["incrementing_column"] = "id"
    topic = prefix + "bench_rows"
    try:
        timed = headrace(cfg)
        got = topic_stats(topic) if timed.returncode == 0 else None
        return finish(side, timed, got, tuple(state["expected"]))
    finally:
        delete_topics(topic)


def headrace_incrementing(state: dict[str, Any]) -> Run:
    """Headrace's SQL source, incrementing mode on id."""
    return _headrace(state, "incrementing", "Headrace SQL source (incrementing)")


def headrace_bulk(state: dict[str, Any]) -> Run:
    """Headrace's SQL source, bulk mode."""
    return _headrace(state, "bulk", "Headrace SQL source (bulk)")


def _debezium(state: dict[str, Any], tuned: bool) -> Run:
    u = sa.make_url(state["url"])
    tag = unique("")
    prefix, slot = f"peers-dbz-{tag}", f"peers_dbz_{tag}"
    topic = f"{prefix}.public.bench_rows"
    KafkaSettings.from_env().ensure_topic(topic, partitions=1)
    n = state["expected"][0]
    connector = {
        "name": f"dbz-{tag}", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": 1, "database.hostname": u.host, "database.port": u.port, "database.user": u.username,
        "database.password": u.password or "", "database.dbname": u.database, "topic.prefix": prefix,
        "table.include.list": "public.bench_rows", "plugin.name": "pgoutput", "snapshot.mode": "initial_only",
        "slot.name": slot, "publication.name": slot, "publication.autocreate.mode": "filtered",
        **(TUNED_DEBEZIUM if tuned else {}),
    }
    side = "Debezium snapshot (tuned)" if tuned else "Debezium snapshot (stock)"
    try:
        timed = run_connector("debezium-connector-postgres", connector, lambda: high_watermark(topic) >= n,
                              worker_extra=TUNED_WORKER if tuned else None)
        got = topic_stats(topic, ("after", "qty")) if timed.returncode == 0 else None
        return finish(side, timed, got, tuple(state["expected"]))
    finally:
        delete_topics(topic)
        drop_slot(state["url"], slot)


def drop_slot(url: str, slot: str) -> None:
    """Drop a replication slot and the publication of the same name, if they exist."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  "WHERE slot_name = %s AND NOT active", (slot,))
        c.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')


def debezium_stock(state: dict[str, Any]) -> Run:
    """Debezium's PostgreSQL connector, snapshot.mode=initial_only, stock settings."""
    return _debezium(state, tuned=False)


def debezium_tuned(state: dict[str, Any]) -> Run:
    """The same with bigger batches and queue, and the producer tuned as Headrace's."""
    return _debezium(state, tuned=True)


SIDES = [headrace_incrementing, debezium_stock, headrace_bulk, debezium_tuned]
HEADRACE_SIDE = "Headrace SQL source (incrementing)"
GOALS = {"Debezium snapshot (stock)": 5.0}


def teardown(state: dict[str, Any]) -> None:
    """Drop the database."""
    drop_db(state["url"])
