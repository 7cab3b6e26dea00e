"""Test helpers: produce records (checking each delivery), read a whole topic, read a Parquet dataset,
write connector files."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import yaml
from confluent_kafka import TopicPartition

from integrations.kafka.cluster import KafkaSettings


def produce_all(kafka: KafkaSettings, topic: str, records: Iterable[dict[str, Any]], **overrides: Any) -> None:
    """Produce each record (``produce()`` keyword arguments) and fail unless every one was delivered."""
    p = kafka.producer(**overrides)
    failed: list[str] = []

    def report(err: object, _msg: object) -> None:  # called for failed deliveries only (delivery.report.only.error)
        if err is not None:
            failed.append(str(err))

    for kw in records:
        p.produce(topic, on_delivery=report, **kw)
        p.poll(0)
    assert p.flush(60) == 0
    assert not failed, f"records were not delivered to {topic}: {failed[:3]}"


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 60) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """Every record of a topic as (key, value, partition, offset), read up to the high watermarks."""
    c = kafka.consumer(group_id=f"test-reader-{uuid.uuid4().hex[:8]}")
    out = []
    try:
        highs = {p: hi for p, (_lo, hi) in kafka.watermarks(topic).items() if hi > 0}
        if not highs:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in highs])
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(highs):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for m in c.consume(num_messages=100_000, timeout=0.2):
                if m.error():
                    continue
                out.append((m.key(), m.value(), m.partition(), m.offset()))
                if m.offset() + 1 >= highs[m.partition()]:
                    done.add(m.partition())
    finally:
        c.close()
    return out


def read_dataset(folder: Path, hive: bool = False) -> pa.Table:
    """All Parquet files under a folder as one table (union schema); ``hive`` adds path columns."""
    return ds.dataset(str(folder), format="parquet", partitioning="hive" if hive else None).to_table()


def write_connector(folder: Path, config: dict) -> Path:
    """Write one connector YAML file named after the connector."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def read_messages(kafka: KafkaSettings, topic: str, timeout: float = 30) -> list:
    """Every Message of partition 0 of a topic, in order, with keys, headers and timestamps."""
    c = kafka.consumer(group_id=f"test-msgs-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high == low:
            return []
        c.assign([TopicPartition(topic, 0, low)])
        out, deadline = [], time.monotonic() + timeout
        while len(out) < high - low:
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            out += [m for m in c.consume(num_messages=1000, timeout=0.5) if m.error() is None]
        return out
    finally:
        c.close()
