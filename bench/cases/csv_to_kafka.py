"""csv_to_kafka: a 1,000,000-row CSV file → Kafka through the file source.

Engine: ``run_source`` on a ``file_source`` connector (fresh name, fresh topic, fresh offsets topic,
so each run does the full work): ``pyarrow.csv.open_csv`` streaming reads regrouped into batches of
``batch_size`` rows, DuckDB ``to_json``, an idempotent acks=all producer, and the file's offset
stored after each batch is acknowledged.

Ceiling: the bare libraries doing the same work as fast as plain code can — ``pyarrow.csv.read_csv``
of the whole file (multi-threaded, unbounded memory), DuckDB ``to_json`` per slice, a tight
confluent-kafka produce loop (same producer settings), one flush at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections import deque
from itertools import repeat

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.common import delete_topics
from integrations.config import FileSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source

NAME = "csv_to_kafka"
DEFAULT_ROWS = 1_000_000
BATCH = 500_000


def setup(rows: int) -> dict:
    """Write ``rows`` rows of id,qty,amount,name,created_at to a CSV file in a fresh temp folder."""
    folder = tempfile.mkdtemp(prefix="bench-csv-")
    os.makedirs(os.path.join(folder, "in"))
    path = os.path.join(folder, "in", "rows.csv")
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(f"""
        COPY (SELECT g AS id, (g % 1000)::INT AS qty, ((g % 100000) / 100)::DECIMAL(12,2) AS amount,
                     CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g || '-é漢' END AS name,
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g) AS created_at
              FROM range(1, {rows} + 1) t(g))
        TO '{path}' (HEADER, DELIMITER ',')""")
    return {"folder": folder, "input": os.path.dirname(path), "path": path, "rows": rows}


def engine(state: dict) -> int:
    """Move the file to a fresh topic through Headrace (fresh connector, so a full read)."""
    tag = uuid.uuid4().hex[:8]
    topic, offsets = f"bench-csv-{tag}", f"bench-csv-offsets-{tag}"
    cfg = FileSourceConfig(
        name=f"bench-csv-{tag}", type="file_source", input_path=state["input"], input_file_pattern=r".*\.csv",
        format="csv", topic=topic, batch_size=BATCH, cleanup_policy="none",
    )
    try:
        res = run_source(cfg, offsets_topic=offsets)
    finally:
        delete_topics(topic, offsets)
    return res.rows


def ceiling(state: dict) -> int:
    """read_csv → DuckDB to_json per slice → produce loop → flush, nothing else."""
    kafka = KafkaSettings.from_env()
    topic = f"bench-csvc-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET threads=1")
    p = kafka.producer()
    total = 0
    try:
        table = pacsv.read_csv(state["path"])
        for lo in range(0, table.num_rows, BATCH):
            t: pa.Table = table.slice(lo, BATCH)
            con.register("b", t)
            vals = con.sql("SELECT to_json(b)::VARCHAR FROM b").to_arrow_table().column(0).to_pylist()
            con.unregister("b")
            deque(map(p.produce, repeat(topic), vals), maxlen=0)  # the queue holds a whole slice
            assert p.flush(120) == 0  # every record of the slice acknowledged, as the engine waits
            total += t.num_rows
    finally:
        delete_topics(topic)
    return total


def teardown(state: dict) -> None:
    """Remove the temp folder (topics are deleted by each run)."""
    shutil.rmtree(state["folder"], ignore_errors=True)
