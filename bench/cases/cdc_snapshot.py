"""cdc_snapshot: a 1,000,000-row PostgreSQL table snapshotted to Kafka through the postgres_cdc source
(``snapshot_mode: initial_only``: key-ordered chunks, one Debezium ``op: r`` envelope per row, JSON
converter, key = the primary key).

Ceiling: the same work with the bare libraries — one streaming ADBC query (COPY) in key order cut into
chunks of the same size, DuckDB's ``to_json`` builds the same envelope (``before`` null, ``after`` the
row, the same ``source`` fields, ``op``, ``ts_ms``) and the key object, and an idempotent acks=all
confluent-kafka producer sends them in a tight loop, flushed at the end of each chunk. It reads the
table in one query where the connector pages through it (``WHERE key > last ORDER BY key LIMIT n``,
no long transaction): that difference is part of what the ratio shows.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from itertools import repeat

import duckdb
import pyarrow as pa
from confluent_kafka import Producer

from bench.common import adbc_chunks, delete_topics, drop_db, make_pg_table
from integrations.config import PostgresCdcConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source
from integrations.sources import postgres_cdc as _cdc  # noqa: F401 - imported before timing

NAME = "cdc_snapshot"
DEFAULT_ROWS = 1_000_000
CHUNK = 100_000


def setup(rows: int) -> dict:
    """Create the table; topics are made per run."""
    return {"url": make_pg_table(rows), "rows": rows}


def engine(state: dict) -> int:
    """Snapshot the table through the connector (no slot: initial_only)."""
    prefix = f"bench-cdcs-{uuid.uuid4().hex[:8]}"
    cfg = PostgresCdcConfig(type="postgres_cdc", name=prefix, connection_url=state["url"], topic_prefix=prefix,
                            slot_name=f"bench_{uuid.uuid4().hex[:8]}", table_include=[r"public\.bench_rows"],
                            snapshot_mode="initial_only", snapshot_fetch_size=CHUNK, batch_max_events=CHUNK,
                            publication_autocreate="disabled")
    res = run_source(cfg, offsets_topic=f"{prefix}-offsets")
    delete_topics(f"{prefix}.public.bench_rows", f"{prefix}-offsets", f"{prefix}.public.snapshot",
                  f"{prefix}.public.heartbeat")
    assert res.rows == state["rows"], f"{res.rows} records for {state['rows']} rows"
    return res.rows


_ENVELOPE = """SELECT to_json({{'before': NULL, 'after': b,
  'source': {{'version': 'headrace', 'connector': 'postgresql', 'name': '{prefix}', 'ts_ms': {now},
              'snapshot': 'true', 'db': 'bench', 'schema': 'public', 'table': 'bench_rows', 'txId': NULL,
              'lsn': 0}},
  'op': 'r', 'ts_ms': {now}}})::VARCHAR, to_json({{'id': b.id}})::VARCHAR FROM b"""


def ceiling(state: dict) -> int:
    """One streaming ADBC SELECT in key order → DuckDB builds envelope and key JSON → produce loop."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-cdcsc-{uuid.uuid4().hex[:8]}"
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
    amount = pa.chunked_array([c.storage for c in t.column("amount").chunks]).cast(pa.decimal128(12, 2))
    t = t.set_column(t.schema.get_field_index("amount"), "amount", amount)
    t = t.cast(t.schema.remove_metadata())
    con.register("b", t)
    out = con.sql(_ENVELOPE.format(prefix="bench", now=int(time.time() * 1000))).to_arrow_table()
    con.unregister("b")
    deque(map(p.produce, repeat(topic), out.column(0).to_pylist(), out.column(1).to_pylist()), maxlen=0)
    assert p.flush(120) == 0
    return t.num_rows


def teardown(state: dict) -> None:
    """Drop the database."""
    drop_db(state["url"])
