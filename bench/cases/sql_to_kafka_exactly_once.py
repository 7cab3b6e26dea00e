"""sql_to_kafka_exactly_once: sql_to_kafka's table and work with ``exactly_once: true`` (KIP-618's design).

Engine: the SQL source with ``exactly_once: true``: per 100,000-row batch one Kafka transaction holding
the batch's records and its source offset record (offsets topic), committed before the next batch.

Ceiling: the same work with the bare libraries, as sql_to_kafka's ceiling (one streaming ADBC COPY cut
into chunks, DuckDB to_json, a tight produce loop) through a bare confluent-kafka transactional
producer: ``init_transactions`` once, then per chunk ``begin_transaction`` → produce the records →
produce the chunk's offset record to a compacted offsets topic → ``commit_transaction``. Its cost
beside sql_to_kafka's ceiling is what transactions cost; the ratio is what Headrace adds to that.
"""

from __future__ import annotations

import uuid
from collections import deque
from itertools import repeat

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Producer

from bench.cases.sql_to_kafka import CHUNK, DEFAULT_ROWS, setup, teardown  # noqa: F401 - the same table
from bench.common import adbc_chunks, delete_topics
from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source
from integrations.sources.sql import SqlSource  # noqa: F401 - imported before timing, like the ceiling's driver

NAME = "sql_to_kafka_exactly_once"


def engine(state: dict) -> int:
    """Move the table to a fresh topic through Headrace with exactly_once (incrementing mode, key = id)."""
    prefix = f"bench-sqleos-{uuid.uuid4().hex[:8]}-"
    cfg = SqlSourceConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="sql_source", connection_url=state["url"],
        mode="incrementing", incrementing_column="id", tables=["bench_rows"], topic_prefix=prefix,
        key_columns=["id"], batch_max_rows=CHUNK, exactly_once=True,
    )
    res = run_source(cfg)
    delete_topics(prefix + "bench_rows")
    return res.rows


def ceiling(state: dict) -> int:
    """One streaming ADBC SELECT (COPY) in CHUNK-row tables → DuckDB to_json → produce loop, one
    transaction per chunk with its offset record, through a bare transactional producer."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-sqleosc-{uuid.uuid4().hex[:8]}"
    offsets = f"bench-sqleosc-offsets-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    kafka.ensure_topic(offsets, config={"cleanup.policy": "compact"})
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET threads=1")
    p = kafka.producer(**{"transactional.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
                          "transaction.timeout.ms": kafka.message_timeout_ms})
    p.init_transactions(60)
    total = 0
    # literal SQL: streamed by COPY
    for t in adbc_chunks(state["url"], "SELECT * FROM bench_rows WHERE id > 0 ORDER BY id", CHUNK):
        total += _transact_chunk(con, p, topic, offsets, t)
    delete_topics(topic, offsets)
    return total


def _transact_chunk(con: duckdb.DuckDBPyConnection, p: Producer, topic: str, offsets: str, t: pa.Table) -> int:
    """One transaction: the chunk's records (the same JSON as the engine) and its offset record."""
    amount = pa.chunked_array([c.storage for c in t.column("amount").chunks]).cast(pa.decimal128(12, 2))
    t = t.set_column(t.schema.get_field_index("amount"), "amount", amount)
    t = t.cast(t.schema.remove_metadata())
    con.register("b", t)
    vals = con.sql("SELECT to_json(b)::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
    con.unregister("b")
    keys = pc.cast(t.column("id"), pa.string()).to_pylist()
    p.begin_transaction()
    deque(map(p.produce, repeat(topic), vals, keys), maxlen=0)  # the queue holds a whole chunk
    p.produce(offsets, key=b'["bench",{"table":"bench_rows"}]',
              value=orjson.dumps({"incrementing": t.column("id")[-1].as_py()}))
    p.commit_transaction(120)  # flushes, then commits: every record acknowledged
    return t.num_rows
