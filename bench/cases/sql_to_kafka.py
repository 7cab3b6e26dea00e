"""sql_to_kafka: a PostgreSQL table of 1,000,000 rows → Kafka through the engine's SQL source.

Ceiling: the same work with the bare libraries — one streaming ADBC query (COPY) cut into chunks of
the same size, numeric cast to the same decimal, DuckDB's to_json makes the same JSON values, keys are
the id's text, and an idempotent acks=all confluent-kafka producer sends them in a tight loop,
flushed (every record acknowledged) at the end of each chunk.
"""

from __future__ import annotations

import uuid
from collections import deque
from itertools import repeat

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Producer

from bench.common import adbc_chunks, delete_topics, drop_db, make_pg_table
from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source
from integrations.sources.sql import SqlSource  # noqa: F401 - imported before timing, like the ceiling's driver

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
    """One streaming ADBC SELECT (COPY) cut into CHUNK-row tables → DuckDB to_json → produce loop
    (``map`` over the C ``produce``), flushed (all acked) after each chunk like the engine."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-sqlc-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET threads=1")
    p = kafka.producer()
    total = 0
    # literal SQL: streamed by COPY
    for t in adbc_chunks(state["url"], "SELECT * FROM bench_rows WHERE id > 0 ORDER BY id", CHUNK):
        total += _produce_chunk(con, p, topic, t)
    delete_topics(topic)
    return total


def _produce_chunk(con: duckdb.DuckDBPyConnection, p: Producer, topic: str, t: pa.Table) -> int:
    """to_json → produce → flush one chunk; the same JSON as the engine (numeric(12,2) an exact number)."""
    amount = pa.chunked_array([c.storage for c in t.column("amount").chunks]).cast(pa.decimal128(12, 2))
    t = t.set_column(t.schema.get_field_index("amount"), "amount", amount)
    t = t.cast(t.schema.remove_metadata())
    con.register("b", t)
    vals = con.sql("SELECT to_json(b)::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
    con.unregister("b")
    keys = pc.cast(t.column("id"), pa.string()).to_pylist()
    deque(map(p.produce, repeat(topic), vals, keys), maxlen=0)  # the queue holds a whole chunk
    assert p.flush(120) == 0
    return t.num_rows


def teardown(state: dict) -> None:
    """Drop the database."""
    drop_db(state["url"])
