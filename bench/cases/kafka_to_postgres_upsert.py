"""kafka_to_postgres_upsert: 1,000,000 JSON messages (700,000 ids, 30% are updates) → PostgreSQL upsert.

Engine: Headrace's table sink (pk_mode record_value on ``id``, insert_mode upsert, offsets stored in the
same transaction). Ceiling: consume(num_messages=…) → pyarrow.json → keep the last row per id →
psycopg COPY (CSV written by pyarrow) into a temporary table → ``INSERT … ON CONFLICT DO UPDATE``.
"""

from __future__ import annotations

import io
import uuid

import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv

from bench.cases.kafka_to_duckdb_upsert import BATCH, last_per_id, produce_upsert_topic, read_batches
from bench.common import VALUE_SCHEMA, admin_engine, delete_topics, drop_db
from integrations.config import TableSinkConfig
from integrations.runtime.sink_runner import run_sink

NAME = "kafka_to_postgres_upsert"
DEFAULT_ROWS = 1_000_000
DDL = ("CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, amount numeric(12,2), name text, "
       "created_at timestamptz)")


def setup(rows: int) -> dict:
    """Produce the messages once and create an empty database; each run writes a fresh table."""
    import sqlalchemy as sa

    from bench.common import PG_URL

    name = f"hr_bench_{uuid.uuid4().hex[:8]}"
    with admin_engine().connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    return {"topic": produce_upsert_topic(rows), "rows": rows, "url": url}


def _drop(url: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP TABLE IF EXISTS "{table}"')


def engine(state: dict) -> int:
    """Drain the topic through Headrace's table sink into a fresh PostgreSQL table."""
    table = f"rows_{uuid.uuid4().hex[:8]}"
    cfg = TableSinkConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="table_sink", topics=[state["topic"]],
        connection_url=state["url"], table_name_format=table, insert_mode="upsert", pk_mode="record_value",
        pk_fields=["id"], auto_create=True, batch_size=BATCH, value_schema=VALUE_SCHEMA,
    )
    rows = run_sink(cfg).rows
    _drop(state["url"], table)
    return rows


def ceiling(state: dict) -> int:
    """The bare loop: consume, parse, dedup, COPY into a temp table, INSERT … ON CONFLICT."""
    table = f"c_{uuid.uuid4().hex[:8]}"
    total = 0
    with psycopg.connect(state["url"]) as conn:
        conn.execute(DDL.format(t=table))
        conn.commit()
        for t, _pos in read_batches(state["topic"], BATCH):
            total += t.num_rows
            batch = last_per_id(t)
            with conn.cursor() as cur:
                cur.execute(f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT * FROM {table} WITH NO DATA")
                with cur.copy("COPY stage FROM STDIN (FORMAT csv)") as copy:
                    for rb in batch.to_batches(max_chunksize=200_000):
                        buf = io.BytesIO()
                        pcsv.write_csv(pa.Table.from_batches([rb]), buf,
                                       write_options=pcsv.WriteOptions(include_header=False))
                        copy.write(buf.getvalue())
                cur.execute(f"INSERT INTO {table} SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET "
                            "qty = EXCLUDED.qty, amount = EXCLUDED.amount, name = EXCLUDED.name, "
                            "created_at = EXCLUDED.created_at")
            conn.commit()
    _drop(state["url"], table)
    return total


def teardown(state: dict) -> None:
    """Delete the topic and the database."""
    delete_topics(state["topic"])
    drop_db(state["url"])
