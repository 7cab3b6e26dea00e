"""sql_to_kafka_fast: 1,000,000 PostgreSQL rows → Kafka through the SQL source's Arrow fast path.

Engine: ``run_source`` in incrementing mode (no key), ADBC streaming reads of 500,000-row chunks
with the next chunk prefetched while this one is produced, DuckDB ``to_json``, an idempotent
acks=all producer, and the offset stored after each chunk is acknowledged.

Ceiling: the bare libraries doing the same work as fast as plain code can — one ADBC streaming
``SELECT`` into Arrow record batches, DuckDB ``to_json`` per batch, a tight confluent-kafka produce
loop (same producer settings), one flush at the end.
"""

from __future__ import annotations

import uuid

import adbc_driver_postgresql.dbapi as adbc
import duckdb
import pyarrow as pa

from bench.common import delete_topics, drop_db, make_pg_table
from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source

NAME = "sql_to_kafka_fast"
DEFAULT_ROWS = 1_000_000
CHUNK = 500_000


def setup(rows: int) -> dict:
    """Create the table in a dedicated database; topics are made fresh per run."""
    return {"url": make_pg_table(rows), "rows": rows}


def engine(state: dict) -> int:
    """Move the table to a fresh topic through Headrace (fresh connector name, so a full read)."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-sqlf-{tag}-"
    offsets = f"bench-sqlf-offsets-{tag}"
    cfg = SqlSourceConfig(
        name=f"bench-fast-{tag}", type="sql_source", connection_url=state["url"], mode="incrementing",
        incrementing_column="id", tables=["bench_rows"], topic_prefix=prefix, batch_max_rows=CHUNK,
    )
    try:
        res = run_source(cfg, offsets_topic=offsets)
    finally:
        delete_topics(prefix + "bench_rows", offsets)
    return res.rows


def ceiling(state: dict) -> int:
    """ADBC streaming read → DuckDB to_json → produce loop → flush, nothing else."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-sqlfc-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET threads=1")
    p = kafka.producer()
    conn = adbc.connect(state["url"], autocommit=True)
    total = 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM bench_rows ORDER BY id")
            for rb in cur.fetch_record_batch():
                t = pa.Table.from_batches([rb])
                t = t.cast(t.schema.remove_metadata())  # numeric stays its exact text, as JSON wants
                con.register("b", t)
                vals = con.sql("SELECT to_json(b)::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
                con.unregister("b")
                produce, poll = p.produce, p.poll
                for i, v in enumerate(vals):
                    try:
                        produce(topic, v)
                    except BufferError:
                        poll(0.05)
                        produce(topic, v)
                    if i & 0x3FFF == 0:
                        poll(0)
                total += t.num_rows
        assert p.flush(120) == 0
    finally:
        conn.close()
        delete_topics(topic)
    return total


def teardown(state: dict) -> None:
    """Drop the database (topics are deleted by each run)."""
    drop_db(state["url"])
