"""sql_to_kafka: a PostgreSQL table of 1,000,000 rows → Kafka through the engine's SQL source.

Ceiling: the same work with the bare libraries — ADBC reads the table in the same chunk size into
Arrow, DuckDB's to_json makes the JSON values, and an idempotent acks=all confluent-kafka producer
sends them in a tight loop, flushed at the end of each chunk.
"""

from __future__ import annotations

import uuid

import adbc_driver_postgresql.dbapi as adbc
import duckdb

from bench.common import delete_topics, drop_db, make_pg_table
from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source

NAME = "sql_to_kafka"
DEFAULT_ROWS = 1_000_000
CHUNK = 100_000


def setup(rows: int) -> dict:
    """Create the table; topics are made per run."""
    return {"url": make_pg_table(rows), "rows": rows, "topics": []}


def engine(state: dict) -> int:
    """Move the table to a fresh topic through Headrace (incrementing mode, key = id)."""
    prefix = f"bench-sql-{uuid.uuid4().hex[:8]}-"
    cfg = SqlSourceConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="sql_source", connection_url=state["url"],
        mode="incrementing", incrementing_column="id", tables=["bench_rows"], topic_prefix=prefix,
        key_columns=["id"], batch_max_rows=CHUNK,
    )
    res = run_source(cfg)
    delete_topics(prefix + "bench_rows")
    return res.rows


def ceiling(state: dict) -> int:
    """ADBC chunked read → DuckDB to_json → produce loop, with the same delivery guarantees."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-sqlc-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    p = kafka.producer()
    conn = adbc.connect(state["url"])
    last, total = 0, 0
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM bench_rows WHERE id > $1 ORDER BY id LIMIT $2", (last, CHUNK))
            t = cur.fetch_arrow_table()
        if t.num_rows == 0:
            break
        t = t.cast(t.schema.remove_metadata())  # numeric arrives as opaque text; JSON gets the same text
        con.register("b", t)
        vals = con.sql("SELECT to_json(b)::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
        keys = con.sql("SELECT id::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
        con.unregister("b")
        produce = p.produce
        for k, v in zip(keys, vals, strict=True):
            try:
                produce(topic, v, k)
            except BufferError:
                p.poll(0.05)
                produce(topic, v, k)
        assert p.flush(120) == 0
        total += t.num_rows
        last = t.column("id")[-1].as_py()
    conn.close()
    delete_topics(topic)
    return total


def teardown(state: dict) -> None:
    """Drop the database."""
    drop_db(state["url"])
