"""kafka_to_parquet_4p: 1,000,000 JSON messages on a 4-partition topic → Parquet with ``tasks_max`` tasks.

``HEADRACE_BENCH_TASKS`` (default 2) is the number of tasks: each is its own process (forked, as a
Dagster step process of the multiprocess executor would be, without its start-up cost), running
``run_sink(config, task=i)`` on the partitions it owns. Run it with 1 and 2 (and 4) to get the scaling
efficiency ``rate(n) / (n × rate(1))``.

Ceiling: the same processes, each draining the same partitions with the bare loop (consume → newline
join → pyarrow.json with the explicit schema → pyarrow.parquet files of FLUSH rows → commit).
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
from confluent_kafka import Message, TopicPartition

from bench.common import VALUE_SCHEMA, delete_topics, high_watermark, new_topic, produce_json_topic
from integrations.arrow_types import schema_from_mapping
from integrations.config import ParquetSinkConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.tasks import partition_task
from integrations.sinks.parquet import ParquetSink  # noqa: F401 - imported before timing, like the ceiling's pyarrow

NAME = "kafka_to_parquet_4p"
DEFAULT_ROWS = 1_000_000
PARTITIONS = 4
FLUSH = 100_000


def tasks() -> int:
    """The number of tasks of this run (``HEADRACE_BENCH_TASKS``)."""
    return int(os.environ.get("HEADRACE_BENCH_TASKS", "2"))


def setup(rows: int) -> dict:
    """Produce the messages once to a 4-partition topic; each run reads them into a fresh folder."""
    topic = new_topic("json4p")
    KafkaSettings.from_env().ensure_topic(topic, partitions=PARTITIONS)
    produce_json_topic(rows, topic)
    return {"topic": topic, "rows": rows, "dir": tempfile.mkdtemp(prefix="bench-pq4-")}


def _in_processes(n: int, fn: Callable[[int], int]) -> int:
    """``fn(i)`` for i in 0..n-1, each in a forked process at once; the sum of their results."""
    ctx = multiprocessing.get_context("fork")  # fork: ``fn`` need not be picklable, modules are loaded
    results = ctx.Queue()

    def run(i: int) -> None:
        try:
            results.put((i, fn(i), None))
        except BaseException as e:  # noqa: BLE001 - reported by the parent
            results.put((i, 0, f"{type(e).__name__}: {e}"))

    procs = [ctx.Process(target=run, args=(i,)) for i in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    errors = [f"task {i}: {err}" for i, _n, err in got if err]
    if errors:
        raise RuntimeError("; ".join(errors))
    return sum(rows for _i, rows, _e in got)


def engine(state: dict) -> int:
    """Drain the topic through Headrace's Parquet sink, one process per task."""
    out = Path(state["dir"]) / uuid.uuid4().hex[:8]
    cfg = ParquetSinkConfig(
        name=f"bench-{uuid.uuid4().hex[:8]}", type="parquet_sink", topics=[state["topic"]], path=str(out),
        flush_size=FLUSH, value_schema=VALUE_SCHEMA, compression="zstd", tasks_max=tasks(),
    )
    n = tasks()
    rows = _in_processes(n, lambda i: run_sink(cfg, task=i if n > 1 else None).rows)
    shutil.rmtree(out)
    return rows


def _drain(topic: str, partitions: list[int], out: Path, group: str) -> int:
    """One consumer assigned to ``partitions``; per partition, files of FLUSH rows, then a commit."""
    kafka = KafkaSettings.from_env()
    schema = schema_from_mapping(VALUE_SCHEMA)
    c = kafka.consumer(group_id=group)
    high = {p: high_watermark(topic, p) for p in partitions}
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    opts = pj.ParseOptions(explicit_schema=schema)
    buf: dict[int, list[pa.Table]] = {p: [] for p in partitions}
    buffered = dict.fromkeys(partitions, 0)
    start = dict.fromkeys(partitions, 0)
    pos = dict.fromkeys(partitions, 0)
    total = 0
    value, error = Message.value, Message.error
    while any(pos[p] < high[p] for p in partitions):
        msgs = c.consume(num_messages=min(50_000, sum(high[p] - pos[p] for p in partitions)), timeout=1.0)
        if not msgs:
            continue
        by_part: dict[int, list[bytes]] = {}
        for m in msgs:
            if error(m) is None:
                by_part.setdefault(m.partition(), []).append(value(m))
                pos[m.partition()] = m.offset() + 1
        for p, vals in by_part.items():
            blob = b"\n".join(vals)
            buf[p].append(pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=len(blob) + 1),
                                       parse_options=opts))
            buffered[p] += buf[p][-1].num_rows
        for p in partitions:
            while buffered[p] >= FLUSH or (pos[p] >= high[p] and buffered[p]):
                all_ = pa.concat_tables(buf[p])
                n = min(FLUSH, buffered[p])
                pq.write_table(all_.slice(0, n), out / f"{topic}+{p}+{start[p]:020d}.parquet", compression="zstd")
                c.commit(offsets=[TopicPartition(topic, p, start[p] + n)], asynchronous=False)
                start[p], total = start[p] + n, total + n
                rest = all_.slice(n)
                buf[p], buffered[p] = ([rest] if rest.num_rows else []), rest.num_rows
    c.close()
    return total


def ceiling(state: dict) -> int:
    """The bare loop in the same processes, over the same partitions as the tasks."""
    topic, n = state["topic"], tasks()
    out = Path(state["dir"]) / f"c-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    group = f"bench-c-{uuid.uuid4().hex[:8]}"

    def task(i: int) -> int:
        gc.set_threshold(100_000, 10, 10)
        mine = [p for p in range(PARTITIONS) if partition_task([topic], topic, p, n) == i]
        return _drain(topic, mine, out, group)

    rows = _in_processes(n, task)
    shutil.rmtree(out)
    return rows


def teardown(state: dict) -> None:
    """Delete the topic and the folder."""
    delete_topics(state["topic"])
    shutil.rmtree(state["dir"], ignore_errors=True)
