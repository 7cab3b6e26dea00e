"""One source batch on its way to Kafka: transforms, converters, produce, and the error handling of each
stage (bad rows located by bisection and handed to the error handler; the good path stays vectorised)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaException

from integrations.config import SqlSourceConfig
from integrations.converters.base import Converter
from integrations.kafka.cluster import KafkaSettings
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
from integrations.runtime.source_producing import Producing, RecordTooLarge
from integrations.sources.base import Source, SourceBatch
from integrations.transforms.batch import TIMESTAMP_TYPE
from integrations.transforms.batch import Batch as RecordBatch
from integrations.transforms.chain import TransformChain


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
    out = chain.apply(RecordBatch.of(batch.records, key=getattr(batch, "key", None), topic=batch.topic,
                                     timestamp=stamp))  # a source's own keys (Outgoing.key: CDC) reach the chain
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
        kafka.ensure_topic(topic, config.topic_partitions, config.topic_replication_factor, warn_partitions=True)
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
