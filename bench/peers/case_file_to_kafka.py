"""File → Kafka: Headrace's file source (CSV) vs Kafka Connect's FileStreamSource.

Different work, said plainly: Headrace parses each CSV row into typed columns (declared value schema) and
produces one JSON object per row keyed by id; FileStreamSource sends each line as an unparsed string
(StringConverter, no key). Data: one CSV file of N rows of the bench shape with a header. Each run reads it
into a fresh topic; the check reads the topic back (messages; sum of qty from the JSON objects, or from the
lines' second field for FileStreamSource). FileStreamSource runs stock (batch.size 2000) and is timed until
the topic holds every line.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
from confluent_kafka import TopicPartition

from bench.common import VALUE_SCHEMA, delete_topics, high_watermark
from bench.peers.common import Run, finish, headrace, topic_stats, unique
from bench.peers.connect import run_connector
from integrations.kafka.cluster import KafkaSettings

NAME = "file_to_kafka"
TITLE = "File → Kafka (different work: parsed rows vs lines)"
DEFAULT_ROWS = 1_000_000


def setup(rows: int) -> dict[str, Any]:
    """Write the CSV once (header + ``rows`` lines); expected (rows, sum of qty)."""
    d = Path(tempfile.mkdtemp(prefix="peers_file_"))
    (d / "in").mkdir()
    path = d / "in" / "rows.csv"
    duckdb.sql(f"""COPY (SELECT g AS id, (g % 1000)::INT AS qty, ((g % 100000) / 100)::DECIMAL(12,2) AS amount,
                   'name-' || g AS name, TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g) AS created_at
                   FROM range(1, {rows + 1}) t(g)) TO '{path}' (HEADER, DELIMITER ',')""")
    total = duckdb.sql(f"SELECT sum(g % 1000) FROM range(1, {rows + 1}) t(g)").fetchall()[0][0]
    return {"dir": str(d), "file": str(path), "rows": rows, "expected": [rows, int(total)]}


def headrace_file(state: dict[str, Any]) -> Run:
    """Headrace's file source (CSV, declared schema, key id) through ``headrace run``."""
    topic = unique("peers-file-")
    KafkaSettings.from_env().ensure_topic(topic, partitions=1)
    cfg = {"name": unique("peers-file-"), "type": "file_source", "input_path": str(Path(state["file"]).parent),
           "input_file_pattern": r"rows\.csv", "format": "csv", "topic": topic, "file_minimum_age": 0,
           "cleanup_policy": "none", "batch_size": 100_000, "key_columns": ["id"], "value_schema": VALUE_SCHEMA}
    try:
        timed = headrace(cfg)
        return finish("Headrace file source (CSV rows)", timed, topic_stats(topic) if timed.returncode == 0 else None,
                      tuple(state["expected"]))
    finally:
        delete_topics(topic)


def line_stats(topic: str) -> tuple[int, int]:
    """(messages, sum of the second CSV field) of a topic of raw lines; the header line is not counted."""
    high = high_watermark(topic)
    c = KafkaSettings.from_env().consumer(group_id=unique("peers-check-"))
    c.assign([TopicPartition(topic, 0, 0)])
    count, total, pos = 0, 0, 0
    opts = pcsv.ReadOptions(column_names=["id", "qty", "amount", "name", "created_at"])
    conv = pcsv.ConvertOptions(include_columns=["qty"], column_types={"qty": pa.string()})
    try:
        while pos < high:
            msgs = [m for m in c.consume(num_messages=100_000, timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            pos = msgs[-1].offset() + 1
            lines = [v for m in msgs if (v := m.value()) is not None and not v.startswith(b"id,")]
            count += len(lines)
            t = pcsv.read_csv(io.BytesIO(b"\n".join(lines)), read_options=opts, convert_options=conv)
            total += int(pa.compute.sum(t.column("qty").cast(pa.int64())).as_py() or 0)
    finally:
        c.close()
    return count, total


def stall_check(topic: str, want: int, stall_s: float = 10.0) -> Callable[[], bool]:
    """A ``done()`` for the worker: True once the topic holds ``want`` messages; raises when it stops
    growing for ``stall_s`` seconds short of that (FileStreamSource can leave its last lines unsent)."""
    last = {"n": -1, "t": time.monotonic(), "t0": time.monotonic()}

    def done() -> bool:
        n = high_watermark(topic)
        now = time.monotonic()
        if n != last["n"]:
            last.update(n=n, t=now)
        elif n > 0 and now - last["t"] > stall_s:
            raise RuntimeError(f"stalled: {n:,} of {want:,} lines in the topic, none for {stall_s:.0f} s "
                               f"(the last arrived {last['t'] - last['t0']:.1f} s after the start)")
        return n >= want

    return done


def filestream(state: dict[str, Any]) -> Run:
    """Kafka Connect's FileStreamSource (lines as strings), stock settings."""
    topic = unique("peers-fs-")
    KafkaSettings.from_env().ensure_topic(topic, partitions=1)
    want = state["rows"] + 1  # the header is a line too
    connector = {"name": unique("fs-"), "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                 "tasks.max": 1, "file": state["file"], "topic": topic,
                 "value.converter": "org.apache.kafka.connect.storage.StringConverter",
                 "key.converter": "org.apache.kafka.connect.storage.StringConverter"}
    try:
        timed = run_connector("connect-file", connector, stall_check(topic, want))
        return finish("Kafka Connect FileStreamSource (lines)", timed,
                      line_stats(topic) if timed.returncode == 0 else None, tuple(state["expected"]))
    finally:
        delete_topics(topic)


SIDES = [headrace_file, filestream]
HEADRACE_SIDE = "Headrace file source (CSV rows)"
GOALS: dict[str, float] = {}


def teardown(state: dict[str, Any]) -> None:
    """Remove the folder."""
    shutil.rmtree(state["dir"], ignore_errors=True)
