"""PostgreSQL row changes → Kafka: Headrace's CDC source (``postgres_cdc``, wal2json) vs Debezium streaming
(pgoutput).

Data: ``bench_rows`` with N rows. For each run, untimed: the side's replication slot is created (Headrace:
a first ``headrace run`` with ``snapshot_mode: never``; Debezium: the slot and the publication by SQL),
then every row is updated once (``qty = qty + 1``) in transactions of 10k rows, so the slot holds N
update events. Timed: Headrace's ``headrace run`` (reads every change pending at its start and ends);
Debezium's worker (``snapshot.mode=no_data`` on the existing slot) from JVM start until the topic holds N
events, stock settings otherwise. Check: N events and the sum of ``after.qty`` equal to the table's.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import delete_topics, drop_db, high_watermark, make_pg_table
from bench.peers.case_sql_to_kafka import drop_slot
from bench.peers.common import Run, finish, headrace, topic_stats, unique
from bench.peers.connect import run_connector
from integrations.kafka.cluster import KafkaSettings

NAME = "cdc"
TITLE = "PostgreSQL row changes → Kafka (CDC)"
DEFAULT_ROWS = 500_000
TXN = 10_000


def setup(rows: int) -> dict[str, Any]:
    """The table (every run updates all of it once)."""
    return {"url": make_pg_table(rows), "rows": rows, "expected": [rows, 0]}


def _update_all(state: dict[str, Any]) -> tuple[int, int]:
    """Update every row once, TXN rows per transaction; the expected (events, sum of after.qty)."""
    n = state["rows"]
    with psycopg.connect(state["url"], autocommit=True) as c:
        for lo in range(1, n + 1, TXN):
            c.execute("UPDATE bench_rows SET qty = qty + 1 WHERE id >= %s AND id < %s", (lo, lo + TXN))
        total = c.execute("SELECT sum(qty) FROM bench_rows").fetchone()[0]
    state["expected"] = [n, int(total)]
    return n, int(total)


def headrace_cdc(state: dict[str, Any]) -> Run:
    """Headrace's postgres_cdc source through ``headrace run``."""
    tag = unique("")
    prefix, slot = f"peers-cdc-{tag}", f"peers_cdc_{tag}"
    topic = f"{prefix}.public.bench_rows"
    KafkaSettings.from_env().ensure_topic(topic, partitions=1)
    cfg = {"name": f"peers-cdc-{tag}", "type": "postgres_cdc", "connection_url": state["url"],
           "topic_prefix": prefix, "table_include": [r"public\.bench_rows"], "slot_name": slot,
           "publication_name": slot, "snapshot_mode": "never"}
    try:
        first = headrace(cfg)  # creates the slot at the current position; nothing to read yet
        if first.returncode != 0:
            return finish("Headrace CDC source", first, None, tuple(state["expected"]))
        expected = _update_all(state)
        timed = headrace(cfg)
        got = topic_stats(topic, ("after", "qty")) if timed.returncode == 0 else None
        return finish("Headrace CDC source", timed, got, expected)
    finally:
        delete_topics(topic)
        drop_slot(state["url"], slot)


def debezium_streaming(state: dict[str, Any]) -> Run:
    """Debezium's PostgreSQL connector streaming from an existing pgoutput slot, stock settings."""
    u = sa.make_url(state["url"])
    tag = unique("")
    prefix, slot = f"peers-dbzcdc-{tag}", f"peers_dbzcdc_{tag}"
    topic = f"{prefix}.public.bench_rows"
    KafkaSettings.from_env().ensure_topic(topic, partitions=1)
    with psycopg.connect(state["url"], autocommit=True) as c:
        c.execute(f'CREATE PUBLICATION "{slot}" FOR TABLE bench_rows')
        c.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    connector = {
        "name": f"dbzcdc-{tag}", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": 1, "database.hostname": u.host, "database.port": u.port, "database.user": u.username,
        "database.password": u.password or "", "database.dbname": u.database, "topic.prefix": prefix,
        "table.include.list": "public.bench_rows", "plugin.name": "pgoutput", "snapshot.mode": "no_data",
        "slot.name": slot, "publication.name": slot, "publication.autocreate.mode": "disabled",
    }
    try:
        expected = _update_all(state)
        n = expected[0]
        timed = run_connector("debezium-connector-postgres", connector, lambda: high_watermark(topic) >= n)
        got = topic_stats(topic, ("after", "qty")) if timed.returncode == 0 else None
        return finish("Debezium streaming", timed, got, expected)
    finally:
        delete_topics(topic)
        drop_slot(state["url"], slot)


SIDES = [headrace_cdc, debezium_streaming]
HEADRACE_SIDE = "Headrace CDC source"
GOALS = {"Debezium streaming": 4.0}


def teardown(state: dict[str, Any]) -> None:
    """Drop the database."""
    drop_db(state["url"])
