"""Helpers for the SQL source tests: databases for each dialect, run a connector, read a topic back."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from integrations.config import SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.source_runner import SourceResult, run_source


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every value of a one-partition topic, decoded, in order."""
    _, high = kafka.watermarks(topic).get(0, (0, 0))
    if high == 0:
        return []
    c = kafka.consumer(group_id=f"t-{uuid.uuid4().hex[:8]}")
    out: list[dict[str, Any]] = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        import time

        deadline = time.monotonic() + timeout
        while len(out) < high and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=0.5):
                if m.error() is None:
                    out.append(orjson.loads(m.value()))
    finally:
        c.close()
    return out


def run(config: SqlSourceConfig, kafka: KafkaSettings, offsets_topic: str) -> SourceResult:
    """One micro-batch of a source connector with a test's own offsets topic."""
    return run_source(config, kafka, offsets_topic=offsets_topic)


def stored_offsets(kafka: KafkaSettings, offsets_topic: str, connector: str) -> dict[str, Any]:
    """The connector's stored offsets, ``{partition json: offset}``."""
    return OffsetStore(kafka, offsets_topic).read(connector)


def config(name: str, url: str, **kw: Any) -> SqlSourceConfig:
    """A SQL source config."""
    return SqlSourceConfig(name=name, type="sql_source", connection_url=url, **kw)
