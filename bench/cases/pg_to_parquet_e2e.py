"""pg_to_parquet_e2e: a PostgreSQL table of 1,000,000 rows → Kafka → a Parquet dataset, end to end
through Headrace's SQL source and then its Parquet sink, in one process (issue 15).

Engine: ``run_source`` (incrementing mode, key = id, 100k-row batches, JSON) into a fresh
one-partition topic, then ``run_sink`` (250k-row zstd files, the same explicit value schema) into a
fresh folder. Ceiling: the two bare loops of the same libraries doing the same work one after the
other — sql_to_kafka's (one streaming ADBC COPY, DuckDB to_json, the produce loop flushed per chunk)
and kafka_to_parquet's (consume, pyarrow.json, Parquet files, a commit per file).

dlt with connectorx (``make bench-peers``) writes Parquet straight from the query without the Kafka
hop; this case measures what the hop and the two connectors cost against their own ceilings.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import duckdb

from bench.cases.kafka_to_parquet import FLUSH, drain_to_parquet
from bench.cases.sql_to_kafka import CHUNK, _produce_chunk
from bench.common import VALUE_SCHEMA, adbc_chunks, delete_topics, drop_db, make_pg_table
from integrations.config import ParquetSinkConfig, SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from integrations.sinks.parquet import ParquetSink  # noqa: F401 - imported before timing, like the ceiling's
from integrations.sources.sql import SqlSource  # noqa: F401 - libraries

NAME = "pg_to_parquet_e2e"
DEFAULT_ROWS = 1_000_000


def setup(rows: int) -> dict:
    """Create the table and a scratch folder; topics and datasets are made per run."""
    return {"url": make_pg_table(rows), "rows": rows, "dir": tempfile.mkdtemp(prefix="bench-e2e-")}


def engine(state: dict) -> int:
    """The table through the SQL source into a new topic, then the topic through the Parquet sink."""
    tag = uuid.uuid4().hex[:8]
    prefix, out = f"bench-e2e-{tag}-", Path(state["dir"]) / tag
    KafkaSettings.from_env().ensure_topic(prefix + "bench_rows", partitions=1)
    src = SqlSourceConfig(
        name=f"bench-src-{tag}", type="sql_source", connection_url=state["url"], mode="incrementing",
        incrementing_column="id", tables=["bench_rows"], topic_prefix=prefix, key_columns=["id"],
        batch_max_rows=CHUNK,
    )
    sink = ParquetSinkConfig(
        name=f"bench-sink-{tag}", type="parquet_sink", topics=[prefix + "bench_rows"], path=str(out),
        flush_size=FLUSH, value_schema=VALUE_SCHEMA, compression="zstd",
    )
    moved = run_source(src).rows
    rows = run_sink(sink).rows
    assert rows == moved, f"the sink wrote {rows} rows of the source's {moved}"
    delete_topics(prefix + "bench_rows")
    shutil.rmtree(out)
    return rows


def ceiling(state: dict) -> int:
    """sql_to_kafka's bare loop into a new topic, then kafka_to_parquet's bare loop out of it."""
    kafka = KafkaSettings.from_env()
    tag = uuid.uuid4().hex[:8]
    topic, out = f"bench-e2ec-{tag}", Path(state["dir"]) / f"c-{tag}"
    kafka.ensure_topic(topic, partitions=1)
    out.mkdir()
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET threads=1")
    p = kafka.producer()
    produced = 0
    for t in adbc_chunks(state["url"], "SELECT * FROM bench_rows WHERE id > 0 ORDER BY id", CHUNK):
        produced += _produce_chunk(con, p, topic, t)
    rows = drain_to_parquet(topic, out)
    assert rows == produced, f"the ceiling wrote {rows} rows of {produced}"
    delete_topics(topic)
    shutil.rmtree(out)
    return rows


def teardown(state: dict) -> None:
    """Drop the database and the scratch folder."""
    drop_db(state["url"])
    shutil.rmtree(state["dir"], ignore_errors=True)
