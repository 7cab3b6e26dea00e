"""Helpers shared by benchmark cases: a PostgreSQL table of the test shape, JSON topics, cleanup."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from itertools import chain

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from confluent_kafka import IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from integrations.kafka.cluster import KafkaSettings

PG_URL = os.environ.get("HEADRACE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:54329/postgres")

SHAPE_SQL = """
CREATE TABLE bench_rows (
  id bigint PRIMARY KEY, qty integer, amount numeric(12,2), name text, created_at timestamptz
);
INSERT INTO bench_rows
SELECT g, (g % 1000)::int, ((g % 100000) / 100.0)::numeric(12,2),
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g || '-é漢' END,
       timestamptz '2024-01-01 00:00:00+00' + (g || ' seconds')::interval
FROM generate_series(1, {rows}) g;
"""
VALUE_SCHEMA = {"id": "int64", "qty": "int32", "amount": "decimal(12,2)", "name": "string",
                "created_at": "timestamp[us, tz=UTC]"}


def admin_engine() -> sa.Engine:
    """An autocommit engine on the server's maintenance database."""
    return sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def make_pg_table(rows: int) -> str:
    """Create a fresh database holding ``bench_rows`` with ``rows`` rows; return its URL."""
    name = f"hr_bench_{uuid.uuid4().hex[:8]}"
    with admin_engine().connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    eng = sa.create_engine(url)
    with eng.begin() as c:
        for stmt in SHAPE_SQL.format(rows=rows).split(";"):
            if stmt.strip():
                c.execute(sa.text(stmt))
        c.execute(sa.text("ANALYZE bench_rows"))
    eng.dispose()
    return url


def drop_db(url: str) -> None:
    """Drop a benchmark database."""
    name = sa.make_url(url).database
    with admin_engine().connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def new_topic(prefix: str) -> str:
    """A unique topic name (created on first produce, or by the caller)."""
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def produce_json_topic(rows: int, topic: str | None = None) -> str:
    """Produce ``rows`` JSON messages of the test shape to a new one-partition topic; return its name."""
    kafka = KafkaSettings.from_env()
    topic = topic or new_topic("json")
    kafka.ensure_topic(topic, partitions=1)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    p: Producer = kafka.producer()
    step = 200_000
    for lo in range(1, rows + 1, step):
        hi = min(lo + step, rows + 1)
        vals = con.sql(f"""
            SELECT to_json({{'id': g, 'qty': (g % 1000)::INT, 'amount': ((g % 100000) / 100)::DECIMAL(12,2),
                   'name': CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g || '-é漢' END,
                   'created_at': TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g)}})::VARCHAR
            FROM range({lo}, {hi}) t(g)""").to_arrow_table().column(0).to_pylist()
        for v in vals:
            try:
                p.produce(topic, v)
            except BufferError:
                p.poll(0.05)
                p.produce(topic, v)
        p.poll(0)
    assert p.flush(120) == 0
    return topic


def delete_topics(*topics: str) -> None:
    """Delete benchmark topics."""
    KafkaSettings.from_env().delete_topics([t for t in topics if t])


def high_watermark(topic: str, partition: int = 0) -> int:
    """The ceilings' end offset: one ListOffsets request on an open admin connection (a new consumer's
    first ``get_watermark_offsets`` sometimes waits ~700 ms for metadata, which would slow a ceiling)."""
    tp = TopicPartition(topic, partition)
    futures = KafkaSettings.from_env().admin().list_offsets(
        {tp: OffsetSpec.latest()}, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10)
    return futures[tp].result(timeout=15).offset


def adbc_chunks(url: str, query: str, chunk: int) -> Iterator[pa.Table]:
    """One streaming ADBC query (COPY under the hood) cut into tables of ``chunk`` rows (the last may be
    shorter): the ceilings' bare read of a PostgreSQL table."""
    import adbc_driver_postgresql.dbapi as adbc

    conn = adbc.connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            pending: list[pa.RecordBatch] = []
            rows = 0
            for rb in chain(cur.fetch_record_batch(), [None]):  # streamed; None marks the end
                if rb is not None:
                    pending.append(rb)
                    rows += rb.num_rows
                while rows >= chunk or (rb is None and rows):
                    t = pa.Table.from_batches(pending)
                    t, rest = t.slice(0, chunk), t.slice(chunk)
                    pending, rows = rest.to_batches(), rest.num_rows
                    yield t
    finally:
        conn.close()
