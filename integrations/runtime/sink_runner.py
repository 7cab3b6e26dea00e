"""Run a sink connector over a fixed offset range ``[start, end)`` per topic-partition.

The range is planned once (from the group's committed offsets to the high watermark, or given by
the caller, e.g. from Dagster run tags), so retries of a run read exactly the same records. Group
offsets are committed only after the sink reports the records durable (for Parquet: after the
atomic rename), so a crash in between makes the next run rewrite the same files.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
from confluent_kafka import TopicPartition

from integrations.arrow_types import schema_from_mapping
from integrations.config import ParquetSinkConfig
from integrations.converters.factory import build_converter
from integrations.converters.json import JsonConverter
from integrations.errors import DeliveryError
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.faults import fault_point
from integrations.sinks.base import Sink, SinkStats, TopicPartitionRange
from integrations.transforms import Batch as RecordBatch
from integrations.transforms import TransformChain, TransformError
from integrations.transforms.chain import build_chain

log = logging.getLogger("headrace.sink")
_EOF = -191  # librdkafka's _PARTITION_EOF


@dataclass
class SinkResult:
    """The outcome of a sink micro-batch."""

    connector: str
    ranges: list[TopicPartitionRange] = field(default_factory=list)
    rows_per_topic: dict[str, int] = field(default_factory=dict)
    tombstones: int = 0
    stats: SinkStats = field(default_factory=SinkStats)
    lag_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.rows_per_topic.values())

    def offsets(self) -> dict[str, dict[str, list[int]]]:
        """``{topic: {partition: [start, end]}}`` read by this run."""
        out: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for r in self.ranges:
            out[r.topic][str(r.partition)] = [r.start, r.end]
        return dict(out)


def plan_ranges(
    kafka: KafkaSettings, group_id: str, topics: list[str], max_records: int | None = None,
    requested: list[TopicPartitionRange] | None = None, stored: dict[tuple[str, int], int] | None = None,
) -> list[TopicPartitionRange]:
    """Ranges to read: from the committed offset (or the log start) to the high watermark.

    With ``requested`` ranges (from a sensor's run tags), each start is raised to the committed
    offset when a later run already committed past it, and the end is kept as requested.
    """
    wanted = {(r.topic, r.partition): r for r in requested or []}
    out = []
    for topic in topics:
        committed = kafka.committed(group_id, topic)
        if stored is not None:  # the sink keeps its offsets with the data: those win over the group's
            committed = {p: o for (t, p), o in stored.items() if t == topic}
        for p, (low, high) in kafka.watermarks(topic).items():
            start = max(committed.get(p) if committed.get(p) is not None else low, low)
            end = high
            if (topic, p) in wanted:
                req = wanted[(topic, p)]
                start, end = max(start, req.start), min(req.end, high)
            elif requested is not None:
                continue
            if max_records is not None:
                end = min(end, start + max_records)
            if end > start:
                out.append(TopicPartitionRange(topic, p, start, end))
    return out


def lag(kafka: KafkaSettings, group_id: str, topics: list[str]) -> dict[str, int]:
    """Records not yet committed by the group, per topic (cheap metadata calls only)."""
    out = {}
    for topic in topics:
        committed = kafka.committed(group_id, topic)
        total = 0
        for p, (low, high) in kafka.watermarks(topic).items():
            c = committed.get(p)
            total += high - max(c if c is not None else low, low)
        out[topic] = total
    return out


def build_sink(config: ParquetSinkConfig) -> Sink:
    """The Sink implementation for a connector config."""
    from integrations.registry import sink_class

    return sink_class(config)(config, after_write=lambda _f: fault_point("sink_after_write"))


def run_sink(
    config: ParquetSinkConfig, kafka: KafkaSettings | None = None,
    ranges: list[TopicPartitionRange] | None = None, consume_batch: int = 50_000, sink: Sink | None = None,
) -> SinkResult:
    """Drain the planned (or given) ranges into the sink and commit offsets after durable writes."""
    kafka = kafka or KafkaSettings.from_env()
    started = time.monotonic()
    kafka.wait_available()
    group = config.consumer_group
    sink = sink or build_sink(config)
    stored = sink.stored_offsets(config.topics)
    plan = plan_ranges(kafka, group, config.topics, config.max_records_per_run, ranges, stored)
    result = SinkResult(config.name, ranges=plan)
    schema = schema_from_mapping(config.value_schema) if config.value_schema else None
    converter = build_converter(config.value_converter)
    transform = build_chain(config)
    consumer = kafka.consumer(group_id=group)
    try:
        if plan:
            _drain(consumer, sink, converter, transform, schema, plan, result, consume_batch)
    finally:
        consumer.close()
        sink.close()
    result.stats = sink.stats
    result.lag_after = lag(kafka, group, config.topics)
    result.seconds = time.monotonic() - started
    return result


def _transformed(
    chain: TransformChain, table: pa.Table, topic: str, partition: int, offs: list[int]
) -> tuple[pa.Table, pa.Array]:
    """Run the transform chain with the records' Kafka metadata; return the table and its offsets."""
    offsets = pa.array(offs, pa.int64())
    if not len(chain):
        return table, offsets
    out = chain.apply(RecordBatch.of(table, topic=topic, partition=partition, offset=offsets))
    if out.topics() not in ([], [topic]):
        raise TransformError(f"routing {topic} to {out.topics()} is not supported by sinks yet "
                             "(RegexRouter/TimestampRouter work on source connectors)")
    return out.value, out.offset.combine_chunks() if isinstance(out.offset, pa.ChunkedArray) else out.offset


def _drain(
    consumer, sink: Sink, converter: JsonConverter, transform: TransformChain, schema: pa.Schema | None,
    plan: list[TopicPartitionRange], result: SinkResult, consume_batch: int,
) -> None:
    ends = {(r.topic, r.partition): r.end for r in plan}
    pending = set(ends)
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in plan])

    def commit(topic: str, partition: int, offset: int | None) -> None:
        if offset is not None:
            consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)

    idle_deadline = time.monotonic() + 60
    while pending:
        msgs = consumer.consume(num_messages=consume_batch, timeout=1.0)
        if not msgs:
            if time.monotonic() > idle_deadline:
                raise DeliveryError(f"no records arrived for 60s while reading {sorted(pending)}")
            continue
        idle_deadline = time.monotonic() + 60
        grouped: dict[tuple[str, int], tuple[list[bytes], list[int]]] = {}
        finished: list[tuple[str, int]] = []
        for m in msgs:
            err = m.error()
            key = (m.topic(), m.partition())
            if err is not None:
                if err.code() == _EOF:
                    if key in pending and m.offset() >= ends[key]:
                        finished.append(key)
                    continue
                raise DeliveryError(f"consuming {key}: {err}")
            off = m.offset()
            if key not in pending or off >= ends[key]:
                continue
            value = m.value()
            if sink.wants_messages:  # keys, timestamps and tombstones go to the sink as they are
                grouped.setdefault(key, ([], []))[0].append(m)
            elif value is None:
                result.tombstones += 1
            else:
                vals, offs = grouped.setdefault(key, ([], []))
                vals.append(value)
                offs.append(off)
            if off + 1 >= ends[key]:
                finished.append(key)
        for (topic, partition), (vals, offs) in grouped.items():
            if sink.wants_messages:
                n, dead, durable = sink.put_messages(topic, partition, vals, lambda v: transform(converter.decode(v, schema)))
                result.rows_per_topic[topic] = result.rows_per_topic.get(topic, 0) + n
                result.tombstones += dead
                commit(topic, partition, durable)
                continue
            # --- transforms: the chain sees topic, partition and offsets; Filter keeps offsets aligned ---
            table, offsets = _transformed(transform, converter.decode(vals, schema), topic, partition, offs)
            if table.num_rows == 0:  # all filtered out: nothing to write; the range end is committed below
                continue
            # --- end transforms ---
            result.rows_per_topic[topic] = result.rows_per_topic.get(topic, 0) + table.num_rows
            durable = sink.put(topic, partition, table, offsets)
            commit(topic, partition, durable)
        for key in finished:
            if key in pending:
                sink.flush(*key)
                commit(key[0], key[1], ends[key])
                consumer.incremental_unassign([TopicPartition(key[0], key[1])])
                pending.discard(key)
