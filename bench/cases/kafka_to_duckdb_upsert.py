"""kafka_to_duckdb_upsert: 1,000,000 JSON messages (700,000 ids, 30% are updates) → DuckDB upsert.

Engine: Headrace's table sink (pk_mode record_value on ``id``, insert_mode upsert, offsets stored in the
same transaction). Ceiling: consume(num_messages=…) → pyarrow.json with the same schema → keep the
last row per id → ``INSERT … ON CONFLICT DO UPDATE`` from Arrow in DuckDB, in the same batch size.
"""

from __future__ import annotations

import gc
import io
import shutil
import tempfile
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.json as pj
from confluent_kafka import Message, TopicPartition

from bench.common import VALUE_SCHEMA, delete_topics, high_watermark
from integrations.arrow_types import schema_from_mapping
from integrations.config import TableSinkConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.sink_runner import run_sink

NAME = "kafka_to_duckdb_upsert"
DEFAULT_ROWS = 1_000_000
BATCH = 250_000
COLS = ["id", "qty", "amount", "name", "created_at"]


def produce_upsert_topic(rows: int) -> str:
    """``rows`` keyed JSON messages of the test shape; ids repeat so 30% of messages are updates."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-upsert-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, partitions=1)
    distinct = max(rows * 7 // 10, 1)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    p = kafka.producer()
    for lo in range(0, rows, 200_000):
        hi = min(lo + 200_000, rows)
        t = con.sql(f"""
            SELECT (g % {distinct}) + 1 AS k, to_json({{'id': (g % {distinct}) + 1, 'qty': (g % 1000)::INT,
                   'amount': ((g % 100000) / 100)::DECIMAL(12,2),
                   'name': CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g || '-é漢' END,
                   'created_at': TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g)}})::VARCHAR AS v
            FROM range({lo}, {hi}) t(g)""").to_arrow_table()
        for k, v in zip(t.column(0).cast(pa.string()).to_pylist(), t.column(1).to_pylist(), strict=True):
            try:
                p.produce(topic, v, k)
            except BufferError:
                p.poll(0.05)
                p.produce(topic, v, k)
        p.poll(0)
    assert p.flush(120) == 0
    return topic


def setup(rows: int) -> dict:
    """Produce the messages once; each run writes a fresh database file."""
    return {"topic": produce_upsert_topic(rows), "rows": rows, "dir": tempfile.mkdtemp(prefix="bench-duck-")}


def engine(state: dict) -> int:
    """Drain the topic through Headrace's table sink into a fresh DuckDB file."""
    db = Path(state["dir"]) / f"{uuid.uuid4().hex[:8]}.duckdb"
    cfg = TableSinkConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="table_sink", topics=[state["topic"]],
        connection_url=f"duckdb:///{db}", table_name_format="rows", insert_mode="upsert", pk_mode="record_value",
        pk_fields=["id"], auto_create=True, batch_size=BATCH, value_schema=VALUE_SCHEMA,
    )
    rows = run_sink(cfg).rows
    db.unlink()
    return rows


def read_batches(topic: str, batch: int):
    """The ceiling's consume loop: yield ``(table, next offset)`` per ``batch`` messages, parsed by pyarrow."""
    kafka = KafkaSettings.from_env()
    schema = schema_from_mapping(VALUE_SCHEMA)
    c = kafka.consumer(group_id=f"bench-c-{uuid.uuid4().hex[:8]}")
    high = high_watermark(topic)
    c.assign([TopicPartition(topic, 0, 0)])
    opts = pj.ParseOptions(explicit_schema=schema)
    vals: list[bytes] = []
    pos = 0
    value, error = Message.value, Message.error
    saved = gc.get_threshold()
    gc.set_threshold(100_000, 10, 10)  # one GC-tracked Message per record: collect 100x less often
    try:
        while pos < high:
            msgs = c.consume(num_messages=min(50_000, high - pos), timeout=1.0)  # never wait at the tail
            if msgs:
                got = list(map(value, msgs))
                errs = list(map(error, msgs))
                if errs.count(None) != len(msgs):  # EOF events (rare): keep the records only
                    got = [v for v, e in zip(got, errs, strict=True) if e is None]
                    msgs = [m for m, e in zip(msgs, errs, strict=True) if e is None]
                if msgs:
                    vals += got
                    pos = msgs[-1].offset() + 1
            if len(vals) >= batch or (pos >= high and vals):
                blob = b"\n".join(vals)
                t = pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=len(blob) + 1),
                                 parse_options=opts)
                vals = []
                yield t, pos
                c.commit(offsets=[TopicPartition(topic, 0, pos)], asynchronous=False)
    finally:
        gc.set_threshold(*saved)
        c.close()


def last_per_id(t: pa.Table) -> pa.Table:
    """Keep the last row of each id (an upsert statement may touch a row once)."""
    ordered = t.append_column("_o", pa.array(np.arange(t.num_rows)))
    keep = ordered.group_by(["id"], use_threads=False).aggregate([("_o", "max")]).column("_o_max")
    return t.take(keep)


def ceiling(state: dict) -> int:
    """The bare loop: consume, parse with pyarrow.json, dedup, upsert from Arrow in DuckDB."""
    db = Path(state["dir"]) / f"c-{uuid.uuid4().hex[:8]}.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE rows (id BIGINT PRIMARY KEY, qty INTEGER, amount DECIMAL(12,2), name VARCHAR, "
                "created_at TIMESTAMPTZ)")
    total = 0
    for t, _pos in read_batches(state["topic"], BATCH):
        total += t.num_rows
        batch = last_per_id(t)  # noqa: F841 (scanned by DuckDB)
        con.execute("BEGIN")
        con.execute("INSERT INTO rows SELECT * FROM batch ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty, "
                    "amount = EXCLUDED.amount, name = EXCLUDED.name, created_at = EXCLUDED.created_at")
        con.execute("COMMIT")
    con.close()
    db.unlink()
    return total


def teardown(state: dict) -> None:
    """Delete the topic and the folder."""
    delete_topics(state["topic"])
    shutil.rmtree(state["dir"], ignore_errors=True)
