"""Kafka → Parquet: Headrace's Parquet sink vs Quix Streams' file sink vs a plain confluent-kafka + pandas script.

Data: N JSON messages of the bench shape (bench/common.py) in one one-partition topic, produced once; each
run reads it with a fresh consumer group into a fresh folder; the check reads the folder back (rows, sum
of qty). Headrace: files of 250k rows, zstd, declared value schema (exact decimals, typed timestamps).
Quix Streams: ``LocalFileSink`` with ``ParquetFormat(compression="zstd")``, one file per checkpoint (its
default commit interval), ``Application.run(count=N)``. Plain script: bench/peers/scripts/plain_parquet.py
(json.loads per message, a pandas DataFrame and ``to_parquet`` per 250k rows).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from bench.common import VALUE_SCHEMA, delete_topics, produce_json_topic
from bench.peers.common import Run, finish, headrace, parquet_stats, python_peer, unique
from integrations.kafka.cluster import KafkaSettings

NAME = "kafka_to_parquet"
TITLE = "Kafka → Parquet"
DEFAULT_ROWS = 1_000_000
FLUSH = 250_000


def setup(rows: int) -> dict[str, Any]:
    """Produce the topic once; expected (rows, sum of qty) from the generator's formula."""
    total = duckdb.sql(f"SELECT sum(g % 1000) FROM range(1, {rows + 1}) t(g)").fetchall()[0][0]
    return {"topic": produce_json_topic(rows), "rows": rows, "expected": [rows, int(total)],
            "dir": tempfile.mkdtemp(prefix="peers_pq_"), "bootstrap": KafkaSettings.from_env().bootstrap_servers}


def _out(state: dict[str, Any]) -> Path:
    return Path(state["dir"]) / unique("out_")  # Quix's file sink allows only [a-zA-Z0-9 ._] in paths


def headrace_sink(state: dict[str, Any]) -> Run:
    """Headrace's Parquet sink through ``headrace run``."""
    out = _out(state)
    cfg = {"name": unique("peers-pq-"), "type": "parquet_sink", "topics": [state["topic"]], "path": str(out),
           "flush_size": FLUSH, "value_schema": VALUE_SCHEMA, "compression": "zstd"}
    try:
        timed = headrace(cfg)
        return finish("Headrace Parquet sink", timed, parquet_stats(out) if timed.returncode == 0 else None,
                      tuple(state["expected"]))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _peer(state: dict[str, Any], script: str, side: str) -> Run:
    out = _out(state)
    args = {"bootstrap": state["bootstrap"], "topic": state["topic"], "group": unique("peers-g-"),
            "dir": str(out), "rows": state["rows"], "flush": FLUSH}
    try:
        timed = python_peer(script, args)
        return finish(side, timed, parquet_stats(out) if timed.returncode == 0 else None, tuple(state["expected"]))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def quix(state: dict[str, Any]) -> Run:
    """Quix Streams' file sink (Parquet)."""
    return _peer(state, "quix_parquet.py", "Quix Streams file sink (Parquet)")


def plain(state: dict[str, Any]) -> Run:
    """The plain confluent-kafka + pandas script."""
    return _peer(state, "plain_parquet.py", "plain confluent-kafka + pandas script")


SIDES = [headrace_sink, quix, plain]
HEADRACE_SIDE = "Headrace Parquet sink"
GOALS = {"Quix Streams file sink (Parquet)": 3.0, "plain confluent-kafka + pandas script": 2.0}


def teardown(state: dict[str, Any]) -> None:
    """Delete the topic and the folder."""
    delete_topics(state["topic"])
    if os.path.isdir(state["dir"]):
        shutil.rmtree(state["dir"], ignore_errors=True)
