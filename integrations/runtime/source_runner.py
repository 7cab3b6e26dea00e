"""Run a source connector for one micro-batch: poll → convert → produce → await acks → store offset."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from integrations.config import SqlSourceConfig, redact_url
from integrations.converters.factory import build_converter
from integrations.converters.json import JsonConverter
from integrations.errors import DeliveryError
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.faults import fault_point
from integrations.sources.base import Source, SourceBatch
from integrations.transforms.batch import Batch as RecordBatch
from integrations.transforms.chain import TransformChain, build_chain

log = logging.getLogger("headrace.source")


@dataclass
class TopicStats:
    """What one source partition produced in a run."""

    topic: str
    rows: int = 0
    bytes: int = 0
    offset_before: dict[str, Any] | None = None
    offset_after: dict[str, Any] | None = None


@dataclass
class SourceResult:
    """The outcome of a source micro-batch."""

    connector: str
    per_partition: dict[str, TopicStats] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.per_partition.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.per_partition.values())

    def by_topic(self) -> dict[str, TopicStats]:
        return {s.topic: s for s in self.per_partition.values()}


def build_source(config: SqlSourceConfig) -> Source:
    """The Source implementation for a connector config."""
    from integrations.registry import source_class

    return source_class(config)(config)


class Producing:
    """Produces converted batches with one idempotent producer and checks every acknowledgement."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.errors: list[str] = []
        self.producer = kafka.producer(on_delivery=self._on_delivery)

    def _on_delivery(self, err: Any, msg: Any) -> None:  # only called for failures
        if err is not None and len(self.errors) < 20:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, values: list[Any], keys: list[Any] | None) -> None:
        """Queue every record; block on a full queue instead of dropping."""
        produce, poll = self.producer.produce, self.producer.poll
        if keys is None:
            for i, v in enumerate(values):
                try:
                    produce(topic, v)
                except BufferError:
                    poll(0.05)
                    produce(topic, v)
                if i & 0x3FFF == 0:
                    poll(0)
        else:
            for i, (k, v) in enumerate(zip(keys, values, strict=True)):
                try:
                    produce(topic, v, k)
                except BufferError:
                    poll(0.05)
                    produce(topic, v, k)
                if i & 0x3FFF == 0:
                    poll(0)

    def wait_acked(self, timeout: float) -> None:
        """Wait until every queued record is acknowledged; raise DeliveryError otherwise."""
        left = self.producer.flush(timeout)
        if left or self.errors:
            raise DeliveryError(
                f"{left} record(s) not acknowledged within {timeout:.0f}s; errors: {self.errors[:5]}"
            )


def run_source(config: SqlSourceConfig, kafka: KafkaSettings | None = None, offsets_topic: str | None = None
               ) -> SourceResult:
    """Move new rows of every source partition to Kafka; store each offset after its batch is acked."""
    kafka = kafka or KafkaSettings.from_env()
    started = time.monotonic()
    kafka.wait_available()
    store = OffsetStore(kafka, offsets_topic) if offsets_topic else OffsetStore(kafka)
    store.ensure()
    stored = store.read(config.name)
    converter = build_converter(config.value_converter)
    transform = build_chain(config)
    result = SourceResult(config.name)
    budget = config.max_rows_per_run
    source = build_source(config)
    producing = Producing(kafka)
    log.info("source %s reading %s", config.name, redact_url(getattr(config, "connection_url", "")))
    try:
        for partition in source.partitions():
            pkey = orjson.dumps(partition, option=orjson.OPT_SORT_KEYS).decode()
            stats = result.per_partition.setdefault(
                pkey, TopicStats(topic="", offset_before=stored.get(pkey), offset_after=stored.get(pkey))
            )
            for batch in source.poll(partition, stored.get(pkey)):
                if budget is not None and budget <= 0:
                    break
                if budget is not None and batch.num_rows > budget:
                    batch = _truncate(batch, budget, source)
                rows_read = batch.num_rows
                # --- transforms: the chain sees the topic; routers may send rows to other topics ---
                routed = _transformed(transform, batch)
                for sub in routed:
                    stats.bytes += _deliver(kafka, producing, converter, config, sub)
                # --- end transforms ---
                fault_point("source_after_produce")
                if batch.offset is not None:
                    store.write(config.name, {pkey: batch.offset})
                stats.topic = batch.topic
                stats.rows += sum(sub.num_rows for sub in routed)
                stats.offset_after = batch.offset
                if budget is not None:
                    budget -= rows_read
            if not stats.topic:
                stats.topic = config.topic_for(partition.get("table", "query"))
    finally:
        source.close()
    result.seconds = time.monotonic() - started
    return result


def _transformed(chain: TransformChain, batch: SourceBatch) -> list[SourceBatch]:
    """Run the transform chain on a polled batch: one SourceBatch per (possibly routed) topic."""
    if not len(chain):
        return [batch]
    out = chain.apply(RecordBatch.of(batch.records, topic=batch.topic))
    parts = out.split_by_topic() or {batch.topic: out}
    return [SourceBatch(batch.partition, topic, part.value, batch.offset) for topic, part in parts.items()]


def _truncate(batch: SourceBatch, n: int, source: Source) -> SourceBatch:
    records = batch.records.slice(0, n)
    advance = getattr(source, "_advance", None)
    offset = advance({}, records) if advance and batch.offset is not None else batch.offset
    return SourceBatch(batch.partition, batch.topic, records, offset)


def _deliver(
    kafka: KafkaSettings, producing: Producing, converter: JsonConverter, config: SqlSourceConfig,
    batch: SourceBatch,
) -> int:
    """Produce one batch and wait for every acknowledgement; return the value bytes sent."""
    if batch.num_rows == 0:
        return 0
    kafka.ensure_topic(batch.topic, config.topic_partitions, config.topic_replication_factor)
    encoded = converter.encode_array(batch.records)
    keys = converter.encode_keys(batch.records, config.key_columns)
    producing.send(batch.topic, encoded.to_pylist(), keys)
    producing.wait_acked(timeout=kafka.message_timeout_ms / 1000 + 30)
    return utf8_bytes(encoded)


def utf8_bytes(values: pa.ChunkedArray | pa.Array) -> int:
    """Total UTF-8 bytes of a string column."""
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)
