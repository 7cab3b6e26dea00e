"""kafka_to_parquet: 1,000,000 JSON messages → a Parquet dataset through the engine's Parquet sink.

Ceiling: consume(num_messages=…) → newline-join → pyarrow.json with the same explicit schema →
pyarrow.parquet write of the same file size with the same codec, then commit.
"""

from __future__ import annotations

import gc
import io
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
from confluent_kafka import Message, TopicPartition

from bench.common import VALUE_SCHEMA, delete_topics, high_watermark, produce_json_topic
from integrations.arrow_types import schema_from_mapping
from integrations.config import ParquetSinkConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.parquet import ParquetSink  # noqa: F401 - imported before timing, like the ceiling's pyarrow

NAME = "kafka_to_parquet"
DEFAULT_ROWS = 1_000_000
FLUSH = 250_000


def setup(rows: int) -> dict:
    """Produce the messages once; each run reads them with a fresh group into a fresh folder."""
    return {"topic": produce_json_topic(rows), "rows": rows, "dir": tempfile.mkdtemp(prefix="bench-pq-")}


def engine(state: dict) -> int:
    """Drain the topic through Headrace's Parquet sink."""
    out = Path(state["dir"]) / uuid.uuid4().hex[:8]
    cfg = ParquetSinkConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="parquet_sink", topics=[state["topic"]], path=str(out),
        flush_size=FLUSH, value_schema=VALUE_SCHEMA, compression="zstd",
    )
    rows = run_sink(cfg).rows
    shutil.rmtree(out)
    return rows


def ceiling(state: dict) -> int:
    """The bare loop: consume batches, parse each with pyarrow.json, write files of FLUSH rows."""
    out = Path(state["dir"]) / f"c-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    total = drain_to_parquet(state["topic"], out)
    shutil.rmtree(out)
    return total


def drain_to_parquet(topic: str, out: Path) -> int:
    """The ceiling's loop over partition 0 of ``topic`` into folder ``out``: consume batches, parse
    them with pyarrow.json (explicit schema), write files of FLUSH rows, commit after each file."""
    kafka = KafkaSettings.from_env()
    schema = schema_from_mapping(VALUE_SCHEMA)
    c = kafka.consumer(group_id=f"bench-c-{uuid.uuid4().hex[:8]}")
    high = high_watermark(topic)
    c.assign([TopicPartition(topic, 0, 0)])
    opts = pj.ParseOptions(explicit_schema=schema)
    buf: list[pa.Table] = []
    buffered, total, start, pos = 0, 0, 0, 0
    value, error = Message.value, Message.error
    saved = gc.get_threshold()
    gc.set_threshold(100_000, 10, 10)  # one GC-tracked Message per record: collect 100x less often
    while pos < high:
        msgs = c.consume(num_messages=min(50_000, high - pos), timeout=1.0)  # never wait at the tail
        if not msgs:
            continue
        errs = list(map(error, msgs))
        vals = list(map(value, msgs))
        if errs.count(None) != len(msgs):  # EOF events (rare): keep the records only
            vals = [v for v, e in zip(vals, errs, strict=True) if e is None]
        if not vals:
            continue
        pos = msgs[-1].offset() + 1
        blob = b"\n".join(vals)
        t = pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=len(blob) + 1),
                         parse_options=opts)
        buf.append(t)
        buffered += t.num_rows
        while buffered >= FLUSH or (pos >= high and buffered):
            all_ = pa.concat_tables(buf)
            n = min(FLUSH, buffered)
            pq.write_table(all_.slice(0, n), out / f"{topic}+0+{start:020d}.parquet", compression="zstd")
            c.commit(offsets=[TopicPartition(topic, 0, start + n)], asynchronous=False)
            start += n
            total += n
            rest = all_.slice(n)
            buf, buffered = ([rest] if rest.num_rows else []), rest.num_rows
    gc.set_threshold(*saved)
    c.close()
    return total


def teardown(state: dict) -> None:
    """Delete the topic and the folder."""
    delete_topics(state["topic"])
    shutil.rmtree(state["dir"], ignore_errors=True)
