"""kafka_to_parquet_daily: 1,000,000 JSON messages → a daily time-partitioned Parquet dataset.

Records carry ``created_at`` one second apart (about 12 days). Engine: Headrace's Parquet sink with
``partitioner: time`` on ``created_at``. Ceiling: consume(num_messages=…) → pyarrow.json with the same
schema → per block of FLUSH records, one pyarrow.parquet file per day under year=/month=/day=, then
commit.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.cases.kafka_to_duckdb_upsert import read_batches
from bench.common import VALUE_SCHEMA, delete_topics, produce_json_topic
from integrations.config import ParquetSinkConfig
from integrations.runtime.sink_runner import run_sink

NAME = "kafka_to_parquet_daily"
DEFAULT_ROWS = 1_000_000
FLUSH = 250_000


def setup(rows: int) -> dict:
    """Produce the messages once; each run writes a fresh folder."""
    return {"topic": produce_json_topic(rows), "rows": rows, "dir": tempfile.mkdtemp(prefix="bench-pqd-")}


def engine(state: dict) -> int:
    """Drain the topic through Headrace's time-partitioned Parquet sink."""
    out = Path(state["dir"]) / uuid.uuid4().hex[:8]
    cfg = ParquetSinkConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="parquet_sink", topics=[state["topic"]], path=str(out),
        partitioner="time", timestamp_field="created_at", flush_size=FLUSH, value_schema=VALUE_SCHEMA,
        compression="zstd",
    )
    rows = run_sink(cfg).rows
    shutil.rmtree(out)
    return rows


def ceiling(state: dict) -> int:
    """The bare loop: consume, parse, split each block of FLUSH rows by day, write one file per day."""
    topic = state["topic"]
    out = Path(state["dir"]) / f"c-{uuid.uuid4().hex[:8]}"
    total, start = 0, 0
    for t, _pos in read_batches(topic, FLUSH):
        enc = pc.floor_temporal(t.column("created_at"), unit="day").combine_chunks().dictionary_encode()
        idx = enc.indices.to_numpy()
        order = np.argsort(idx, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=len(enc.dictionary)))])
        names = pc.strftime(enc.dictionary, format="year=%Y/month=%m/day=%d").to_pylist()
        for d, path in enumerate(names):
            rows = order[bounds[d]:bounds[d + 1]]
            folder = out / topic / path
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(t.take(pa.array(rows)), folder / f"{topic}+0+{start + int(rows[0]):020d}.parquet",
                           compression="zstd")
        start += t.num_rows
        total += t.num_rows
    shutil.rmtree(out)
    return total


def teardown(state: dict) -> None:
    """Delete the topic and the folder."""
    delete_topics(state["topic"])
    shutil.rmtree(state["dir"], ignore_errors=True)
