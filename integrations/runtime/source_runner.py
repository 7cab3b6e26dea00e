"""Run a source connector for one micro-batch: poll → convert → produce → await acks → store offset."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import repeat
from operator import length_hint
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, KafkaException

from integrations.config import SqlSourceConfig, redact_url
from integrations.converters.base import Converter
from integrations.converters.factory import build_converter
from integrations.errors import DeliveryError
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.errors import (
    KAFKA_PRODUCE,
    KEY_CONVERTER,
    TASK_POLL,
    TRANSFORMATION,
    VALUE_CONVERTER,
    ErrorHandler,
    Failure,
    is_transient,
    locate_bad,
)
from integrations.runtime.faults import fault_point
from integrations.sources.base import Source, SourceBatch
from integrations.transforms.batch import TIMESTAMP_TYPE
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
    #: rows and value bytes per topic they were produced to (routers may send rows to other topics)
    rows_per_topic: dict[str, int] = field(default_factory=dict)
    bytes_per_topic: dict[str, int] = field(default_factory=dict)


@dataclass
class SourceResult:
    """The outcome of a source micro-batch."""

    connector: str
    per_partition: dict[str, TopicStats] = field(default_factory=dict)
    seconds: float = 0.0
    dead_lettered: int = 0  # records sent to the dead-letter topic (errors_tolerance: all)
    failed: int = 0  # records that failed (dead-lettered, or only skipped when no dlq_topic is set)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.per_partition.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.per_partition.values())

    def by_topic(self) -> dict[str, TopicStats]:
        """Stats per topic produced to, summed over source partitions; routed rows count under their topic."""
        out: dict[str, TopicStats] = {}
        for s in self.per_partition.values():
            split = s.rows_per_topic if set(s.rows_per_topic) - {s.topic} else {s.topic: s.rows}
            for t, n in split.items():
                agg = out.setdefault(t, TopicStats(topic=t))
                agg.rows += n
                agg.bytes += s.bytes_per_topic.get(t, 0) if len(split) > 1 else s.bytes
                agg.rows_per_topic[t] = agg.rows
                agg.bytes_per_topic[t] = agg.bytes
                if len(split) == 1:
                    agg.offset_before, agg.offset_after = s.offset_before, s.offset_after
        return out


def build_source(config: SqlSourceConfig) -> Source:
    """The Source implementation for a connector config."""
    from integrations.registry import source_class

    return source_class(config)(config)


#: Delivery errors that condemn one record rather than the batch (retrying would not help).
_RECORD_ERRORS = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG_SIZE,
                  KafkaError.INVALID_MSG, KafkaError.RECORD_LIST_TOO_LARGE}


class RecordTooLarge(Exception):
    """A record is larger than the producer's ``message.max.bytes``."""


class Producing:
    """Produces converted batches with one idempotent producer and checks every acknowledgement."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.errors: list[str] = []
        self.rejected: list[tuple[Any, Any]] = []  # (KafkaError, Message) rejected for the record itself
        self.producer = kafka.producer(on_delivery=self._on_delivery)
        self.max_bytes = int(kafka.client_config.get("message.max.bytes", 1_000_000))
        self.topics_ready: set[str] = set()  # topics checked/created in this run (one admin call each)

    def _on_delivery(self, err: Any, msg: Any) -> None:  # only called for failures
        if err is None:
            return
        if err.code() in _RECORD_ERRORS:
            self.rejected.append((err, msg))
        elif len(self.errors) < 20:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, values: list[Any], keys: list[Any] | None) -> list[tuple[int, Exception]]:
        """Queue every record (blocking on a full queue, never dropping); return records refused at once.

        The loop is ``map`` over the C ``produce`` (no Python bytecode per record); when a record
        raises, its index is what the value iterator has consumed, and the loop resumes after it."""
        produce = self.producer.produce
        refused: list[tuple[int, Exception]] = []
        n = len(values)
        vals = iter(values)
        calls = map(produce, repeat(topic), vals) if keys is None else map(produce, repeat(topic), vals, keys)
        while True:
            try:
                deque(calls, maxlen=0)
                return refused
            except (BufferError, KafkaException) as e:
                i = n - length_hint(vals) - 1
                try:
                    if not isinstance(e, BufferError):
                        raise e
                    self._produce_blocking(topic, values[i], None if keys is None else keys[i])  # queue full
                except KafkaException as refusal:  # refused at once (e.g. too large): note it, go on
                    if is_transient(refusal):
                        raise
                    refused.append((i, refusal))

    def send_extra(self, topic: str, values: list[Any], keys: list[Any] | None, headers: list | None,
                   timestamps: list[int | None] | None) -> list[tuple[int, Exception]]:
        """``send`` for records with headers (a list of (name, bytes) pairs or None per record) and/or
        timestamps (epoch ms or None per record), as a transform chain set them."""
        refused: list[tuple[int, Exception]] = []
        produce, poll = self.producer.produce, self.producer.poll
        for i, value in enumerate(values):
            extra: dict[str, Any] = {}
            if headers is not None and headers[i]:
                extra["headers"] = headers[i]
            if timestamps is not None and timestamps[i] is not None:
                extra["timestamp"] = timestamps[i]
            key = None if keys is None else keys[i]
            try:
                try:
                    produce(topic, value, key, **extra)
                except BufferError:
                    self._produce_blocking(topic, value, key, **extra)
            except KafkaException as e:  # refused at once (e.g. too large): note it, go on with the rest
                if is_transient(e):
                    raise
                refused.append((i, e))
            if i & 0x3FFF == 0:
                poll(0)
        return refused

    def _produce_blocking(self, topic: str, value: Any, key: Any, **extra: Any) -> None:
        """Produce, waiting for room in a full queue instead of dropping."""
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)

    def wait_acked(self, timeout: float) -> None:
        """Wait until every queued record is acknowledged; raise DeliveryError otherwise."""
        left = self.producer.flush(timeout)
        if left or self.errors:
            errors, self.errors = self.errors, []
            raise DeliveryError(f"{left} record(s) not acknowledged within {timeout:.0f}s; errors: {errors[:5]}")


def run_source(config: SqlSourceConfig, kafka: KafkaSettings | None = None, offsets_topic: str | None = None
               ) -> SourceResult:
    """Move new rows of every source partition to Kafka; store each offset after its batch is acked."""
    kafka = kafka or KafkaSettings.from_env()
    started = time.monotonic()
    kafka.wait_available()
    store = OffsetStore(kafka, offsets_topic) if offsets_topic else OffsetStore(kafka)
    store.ensure()
    stored = store.read(config.name)
    key_converter = build_converter(config.key_converter, is_key=True)
    value_converter = build_converter(config.value_converter)
    transform = build_chain(config)
    result = SourceResult(config.name)
    budget = [config.max_rows_per_run]
    producing = Producing(kafka)
    errors = ErrorHandler(config, config.name, kafka)
    source = errors.retry(lambda: build_source(config), "connecting to the source")
    log.info("source %s reading %s", config.name, redact_url(getattr(config, "connection_url", "")))
    try:
        for partition in errors.retry(source.partitions, "listing the source partitions"):
            pkey = orjson.dumps(partition, option=orjson.OPT_SORT_KEYS).decode()
            stats = result.per_partition.setdefault(
                pkey, TopicStats(topic="", offset_before=stored.get(pkey), offset_after=stored.get(pkey))
            )

            def move(partition: dict[str, Any] = partition, pkey: str = pkey, stats: TopicStats = stats) -> None:
                # a retry starts again from the offset stored last (at-least-once for the batch in flight)
                for batch in source.poll(partition, stats.offset_after):
                    if budget[0] is not None and budget[0] <= 0:
                        break
                    if budget[0] is not None and batch.num_rows > budget[0]:
                        batch = _truncate(batch, budget[0], source)
                    rows_read = batch.num_rows
                    _report_rejects(batch, errors, pkey, type(source).__name__)  # unparseable input, first
                    # --- transforms: the chain sees the topic; routers may send rows to other topics ---
                    routed = _transform_tolerant(transform, batch, errors, pkey)
                    sent = 0
                    for sub in routed:
                        nbytes, nrows = _deliver(kafka, producing, key_converter, value_converter, config, sub,
                                                 errors, pkey)
                        stats.bytes += nbytes
                        sent += nrows
                        if nrows:
                            stats.rows_per_topic[sub.topic] = stats.rows_per_topic.get(sub.topic, 0) + nrows
                            stats.bytes_per_topic[sub.topic] = stats.bytes_per_topic.get(sub.topic, 0) + nbytes
                    # --- end transforms ---
                    errors.flush()  # dead-lettered records are acknowledged before the offset moves
                    fault_point("source_after_produce")
                    if batch.offset is not None:
                        store.write(config.name, {pkey: batch.offset})
                    # the topic the partition's rows went to (its own topic when none, or when routed to several)
                    stats.topic = next(iter(stats.rows_per_topic)) if len(stats.rows_per_topic) == 1 else batch.topic
                    stats.rows += sent
                    stats.offset_after = batch.offset
                    if budget[0] is not None:
                        budget[0] -= rows_read

            errors.retry(move, f"moving {pkey}")
            if not stats.topic:
                stats.topic = config.topic_for(partition.get("table", "query"))
    finally:
        source.close()
        result.dead_lettered, result.failed = errors.dead_lettered, errors.failed
    result.seconds = time.monotonic() - started
    return result


@dataclass
class Outgoing(SourceBatch):
    """A transformed batch for one topic, with the key, headers and timestamps the chain set (or None)."""

    key: pa.Table | None = None  # set by a key transform (e.g. ValueToKey); else keys come from key_columns
    headers: dict[str, Any] = field(default_factory=dict)  # header name → column (null: no such header)
    timestamp: Any = None  # timestamp[ms, UTC] column: the message timestamps

    def take(self, idx: list[int]) -> Outgoing:
        """The records at ``idx``."""
        return Outgoing(self.partition, self.topic, self.records.take(idx), self.offset,
                        None if self.key is None else self.key.take(idx),
                        {h: c.take(idx) for h, c in self.headers.items()},
                        None if self.timestamp is None else self.timestamp.take(idx))


def _transformed(chain: TransformChain, batch: SourceBatch) -> list[SourceBatch]:
    """Run the transform chain on a polled batch: one batch per (possibly routed) topic.

    A chain that reads the record timestamp gets the poll time (what the producer would stamp), and
    that timestamp is then produced with the record."""
    if not len(chain):
        return [batch]
    stamp = int(time.time() * 1000) if "timestamp" in chain.needs else None
    out = chain.apply(RecordBatch.of(batch.records, topic=batch.topic, timestamp=stamp))
    parts = out.split_by_topic() or {batch.topic: out}
    return [Outgoing(batch.partition, topic, part.value, batch.offset, part.key, dict(part.headers), part.timestamp)
            for topic, part in parts.items()]


def _report_rejects(batch: SourceBatch, errors: ErrorHandler, pkey: str, source_class: str) -> None:
    """Hand a batch's ``rejects`` (unparseable source input, see ``Rejected``) to the error handler."""
    rejects = getattr(batch, "rejects", None)
    if not rejects:
        return
    context = {"topic": batch.topic, "partition": pkey, "offset": _json(batch.offset)}
    errors.report([
        Failure(TASK_POLL, r.error, source_class, **context, value=r.value,
                headers=[("__headrace.errors.position", r.position.encode())] if r.position else None)
        for r in rejects
    ])


def _transform_tolerant(chain: TransformChain, batch: SourceBatch, errors: ErrorHandler, pkey: str
                       ) -> list[SourceBatch]:
    """``_transformed``, with rows the chain cannot handle located and sent to the error handler."""
    try:
        return _transformed(chain, batch)
    except Exception as e:
        if is_transient(e):
            raise
        error = e
    records = batch.records
    bad, good = locate_bad(records.num_rows, lambda idx: _transformed(
        chain, SourceBatch(batch.partition, batch.topic, records.take(idx), batch.offset)))
    if not bad:
        raise error
    context = {"topic": batch.topic, "partition": pkey, "offset": _json(batch.offset)}
    errors.report([_row_failure(records, i, _Staged(TRANSFORMATION, type(chain).__name__, e), context)
                   for i, e in sorted(bad.items())])
    return good or []


def _truncate(batch: SourceBatch, n: int, source: Source) -> SourceBatch:
    records = batch.records.slice(0, n)
    advance = getattr(source, "_advance", None)
    offset = advance({}, records) if advance and batch.offset is not None else batch.offset
    return SourceBatch(batch.partition, batch.topic, records, offset)


def _deliver(
    kafka: KafkaSettings, producing: Producing, key_converter: Converter, value_converter: Converter,
    config: SqlSourceConfig, batch: SourceBatch, errors: ErrorHandler, pkey: str = "",
) -> tuple[int, int]:
    """Convert and produce one batch, wait for every acknowledgement; return (value bytes, records sent).

    Bad rows (conversion failures, oversized records, records the broker refuses) go to the error
    handler: under ``errors_tolerance: none`` it raises before anything of a failing batch is
    produced (or, for broker refusals, before the offset is stored).
    """
    if batch.num_rows == 0:
        return 0, 0
    topic = batch.topic
    if topic not in producing.topics_ready:
        kafka.ensure_topic(topic, config.topic_partitions, config.topic_replication_factor)
        producing.topics_ready.add(topic)
    records = batch.records
    context = {"topic": topic, "partition": pkey, "offset": _json(batch.offset)}

    def convert(part: SourceBatch) -> tuple[Any, list | None]:
        table = part.records
        try:
            values = value_converter.encode_values(table, topic)
        except Exception as e:
            raise _Staged(VALUE_CONVERTER, value_converter.class_name, e) from e
        try:
            if getattr(part, "key", None) is not None:  # a key made by the chain: the whole key is encoded
                keys = key_converter.encode_values(part.key, topic).to_pylist()
            else:
                keys = key_converter.encode_keys(table, config.key_columns, topic)
        except Exception as e:
            raise _Staged(KEY_CONVERTER, key_converter.class_name, e) from e
        return values, keys

    def take(idx: list[int]) -> SourceBatch:
        if isinstance(batch, Outgoing):
            return batch.take(idx)
        return SourceBatch(batch.partition, topic, records.take(idx), batch.offset)

    try:
        values, keys = convert(batch)
    except _Staged as staged:
        if is_transient(staged.error):
            raise staged.error from None
        bad, _ = locate_bad(records.num_rows, lambda idx: convert(take(idx)))
        if len(bad) == 0:  # fails as a whole only: not a record problem
            raise staged.error from None
        errors.report([_row_failure(records, i, e, context) for i, e in sorted(bad.items())])
        batch = take([i for i in range(records.num_rows) if i not in bad])
        records = batch.records
        if records.num_rows == 0:
            return 0, 0
        values, keys = convert(batch)
    headers, stamps = _headers_and_stamps(batch)

    # oversized records: a cheap upper bound first (a str key's UTF-8 is at most 4 bytes a character),
    # the exact per-record check only when the bound does not clear the whole batch
    vsizes = pc.binary_length(values)
    bound = pc.max(vsizes).as_py() or 0
    if keys is not None:
        bound += 4 * max(map(len, filter(None, keys)), default=0)
    if bound > producing.max_bytes:
        sizes = vsizes
        if keys is not None:
            sizes = pc.add(sizes, pc.fill_null(pc.binary_length(pa.array(keys, pa.binary())), 0))
        over = pc.greater(pc.fill_null(sizes, 0), producing.max_bytes)
    if bound > producing.max_bytes and pc.any(over).as_py():
        idx = pc.indices_nonzero(over).to_pylist()
        vlist = values.to_pylist() if isinstance(values, pa.ChunkedArray | pa.Array) else values
        errors.report([
            Failure(KAFKA_PRODUCE, RecordTooLarge(
                f"record of {sizes[i].as_py()} bytes exceeds the producer's message.max.bytes "
                f"({producing.max_bytes})"), "KafkaProducer", **context, value=vlist[i],
                key=keys[i] if keys is not None else None)
            for i in idx
        ])
        keep = pc.invert(over)
        values = pc.filter(values, keep)
        flags = over.to_pylist()
        keys = [k for k, o in zip(keys, flags, strict=True) if not o] if keys is not None else None
        headers = [h for h, o in zip(headers, flags, strict=True) if not o] if headers is not None else None
        stamps = [t for t, o in zip(stamps, flags, strict=True) if not o] if stamps is not None else None
    value_list = values.to_pylist()
    if headers is None and stamps is None:
        refused = producing.send(topic, value_list, keys)
    else:
        refused = producing.send_extra(topic, value_list, keys, headers, stamps)
    producing.wait_acked(timeout=kafka.message_timeout_ms / 1000 + 30)
    failures = [Failure(KAFKA_PRODUCE, e, "KafkaProducer", **context, value=value_list[i],
                        key=keys[i] if keys is not None else None) for i, e in refused]
    rejected, producing.rejected = producing.rejected, []
    failures += [Failure(KAFKA_PRODUCE, KafkaException(err), "KafkaProducer", **context, value=msg.value(),
                         key=msg.key()) for err, msg in rejected]
    errors.report(failures)
    return utf8_bytes(values), len(value_list) - len(failures)


def _headers_and_stamps(batch: SourceBatch) -> tuple[list | None, list | None]:
    """Per record: the Kafka headers the chain set, and the message timestamp (None when not set)."""
    cols = getattr(batch, "headers", None) or {}
    headers = None
    if cols:
        lists = {name: col.to_pylist() for name, col in cols.items()}
        headers = [[(name, _header_bytes(v[i])) for name, v in lists.items() if v[i] is not None] or None
                   for i in range(batch.num_rows)]
    ts = getattr(batch, "timestamp", None)
    stamps = None if ts is None else ts.cast(TIMESTAMP_TYPE).cast(pa.int64()).to_pylist()
    return headers, stamps


def _header_bytes(v: Any) -> bytes:
    """A header value as Kafka's SimpleHeaderConverter writes it: text as is, other values as JSON."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return orjson.dumps(v, default=str)


class _Staged(Exception):
    """A conversion failure tagged with its Kafka Connect stage."""

    def __init__(self, stage: str, class_name: str, error: Exception) -> None:
        super().__init__(str(error))
        self.stage, self.class_name, self.error = stage, class_name, error


def _row_failure(records: pa.Table, i: int, e: BaseException, context: dict[str, Any]) -> Failure:
    """A source row that could not be converted: the DLQ gets the row as JSON."""
    stage, cls, exc = (e.stage, e.class_name, e.error) if isinstance(e, _Staged) else (VALUE_CONVERTER, "", e)
    row = records.slice(i, 1).to_pylist()[0]
    return Failure(stage, exc, cls, **context, value=orjson.dumps(row, default=str,
                                                                  option=orjson.OPT_NON_STR_KEYS),
                   headers=[("__headrace.errors.row", str(i).encode())])


def _json(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v, default=str, option=orjson.OPT_SORT_KEYS).decode()


def utf8_bytes(values: pa.ChunkedArray | pa.Array) -> int:
    """Total UTF-8 bytes of a string column."""
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)
