"""Run a sink connector over a fixed offset range ``[start, end)`` per topic-partition.

The range is planned once (from the group's committed offsets to the high watermark, or given by
the caller, e.g. from Dagster run tags), so retries of a run read exactly the same records. Group
offsets are committed only after the sink reports the records durable (for Parquet: after the
atomic rename), so a crash in between makes the next run rewrite the same files.

Routing transforms (RegexRouter, TimestampRouter) give each record a routed topic; the sink writes it
there (the routed topic's folder and file names, or the table ``table_name_format`` gives it), while
offsets are still planned, stored and committed per source topic-partition.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from confluent_kafka import Message, TopicPartition

from integrations.arrow_types import schema_from_mapping
from integrations.config import ParquetSinkConfig
from integrations.converters.base import PRIMITIVE_COLUMN, Converter
from integrations.converters.factory import build_converter
from integrations.errors import ConfigError, DeliveryError
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.errors import (
    KEY_CONVERTER,
    TRANSFORMATION,
    VALUE_CONVERTER,
    ErrorHandler,
    Failure,
    RecordError,
    is_transient,
    locate_bad,
)
from integrations.runtime.faults import fault_point
from integrations.runtime.gc_tuning import relaxed_gc
from integrations.sinks.base import Decoded, Sink, SinkStats, TopicPartitionRange, message_offsets, routes
from integrations.transforms import Batch as RecordBatch
from integrations.transforms import TransformChain, TransformError, primitive
from integrations.transforms.chain import build_chain
from integrations.transforms.config import FilterConfig

log = logging.getLogger("headrace.sink")
_EOF = -191  # librdkafka's _PARTITION_EOF


@dataclass
class SinkResult:
    """The outcome of a sink micro-batch."""

    connector: str
    ranges: list[TopicPartitionRange] = field(default_factory=list)
    rows_per_topic: dict[str, int] = field(default_factory=dict)  # rows read per source topic
    rows_per_target: dict[str, int] = field(default_factory=dict)  # rows handed to the sink per routed topic
    rows_per_route: dict[str, dict[str, int]] = field(default_factory=dict)  # source topic -> routed topic -> rows
    tombstones: int = 0
    stats: SinkStats = field(default_factory=SinkStats)
    lag_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    dead_lettered: int = 0  # records sent to the dead-letter topic (errors_tolerance: all)
    failed: int = 0  # records that failed (dead-lettered, or only skipped when no dlq_topic is set)

    @property
    def rows(self) -> int:
        return sum(self.rows_per_topic.values())

    def offsets(self) -> dict[str, dict[str, list[int]]]:
        """``{topic: {partition: [start, end]}}`` read by this run."""
        out: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for r in self.ranges:
            out[r.topic][str(r.partition)] = [r.start, r.end]
        return dict(out)

    def files_from(self, topic: str) -> list[str]:
        """Files written from records of source topic ``topic``, under whatever topic they were routed to.

        Uses the source of each file a sink records (``stats.sources``); for a sink that records none,
        the files under a ``/<topic>/`` folder."""
        sources = getattr(self.stats, "sources", None)
        if sources is None:
            return [f for f in self.stats.files if f"/{topic}/" in f]
        return list(dict.fromkeys(f for f in self.stats.files if sources.get(f) == topic))


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
        committed = _committed(kafka, group_id, topic, stored)
        for p, (low, high) in kafka.watermarks(topic).items():
            start = max(committed.get(p) if committed.get(p) is not None else low, low)
            if committed.get(p) is not None and committed[p] < low:
                log.warning("%s[%d]: records %d..%d were deleted by retention before this group read them; "
                            "resuming at %d", topic, p, committed[p], low - 1, low)
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


def _committed(kafka: KafkaSettings, group_id: str, topic: str, stored: dict[tuple[str, int], int] | None
               ) -> dict[int, int | None]:
    """The next offset per partition of ``topic``: the sink's own stored offsets when it keeps them with
    its data (those win over the group's, and the group is not asked), else the group's."""
    if stored is not None:
        return {p: o for (t, p), o in stored.items() if t == topic}
    return kafka.committed(group_id, topic)


def lag(kafka: KafkaSettings, group_id: str, topics: list[str],
        positions: dict[tuple[str, int], int] | None = None) -> dict[str, int]:
    """Records not yet committed by the group, per topic (cheap metadata calls only).

    With ``positions`` (the next offset per topic-partition of a sink that stores its offsets with
    its data) those are the committed offsets, and the group is not asked."""
    out = {}
    for topic in topics:
        committed = _committed(kafka, group_id, topic, positions)
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
    if config.dlq_topic and config.dlq_topic in config.topics:
        raise ConfigError(f"connector {config.name}: dlq_topic {config.dlq_topic!r} is also one of its topics; "
                          "dead-lettered records would be read again")
    errors = ErrorHandler(config, config.name, kafka)
    errors.retry(kafka.wait_available, "connecting to Kafka")
    group = config.consumer_group
    own_sink = sink is None
    schema = schema_from_mapping(config.value_schema) if config.value_schema else None
    converter = build_converter(config.value_converter)
    transform = build_chain(config)
    if "key" in transform.needs or getattr(config, "pk_mode", None) == "record_key":
        converter.key_converter = _chain_key_converter(config)  # keys are decoded only where they are read
    state: dict[str, Any] = {"sink": sink}

    def attempt() -> SinkResult:
        # each attempt re-plans from what is committed, with a fresh sink (no half-buffered state)
        if state["sink"] is None:
            state["sink"] = build_sink(config)
        current: Sink = state["sink"]
        stored = current.stored_offsets(config.topics)
        plan = plan_ranges(kafka, group, config.topics, config.max_records_per_run, ranges, stored)
        # where the sink stores offsets, a successful attempt leaves them at each range's end
        state["positions"] = None if stored is None else {**stored, **{(r.topic, r.partition): r.end
                                                                       for r in plan}}
        result = SinkResult(config.name, ranges=plan)
        consumer = kafka.consumer(group_id=group)
        try:
            if plan:
                with relaxed_gc():  # one GC-tracked Message per record: collect far less often
                    _drain(consumer, current, converter, transform, schema, plan, result, consume_batch, errors)
        except Exception as e:
            if own_sink and is_transient(e):
                current.close()
                state["sink"] = None
            raise
        finally:
            consumer.close()
        result.stats = current.stats
        return result

    try:
        result = errors.retry(attempt, f"draining {config.topics}") if own_sink else attempt()
    finally:
        if state["sink"] is not None:
            state["sink"].close()
    result.dead_lettered, result.failed = errors.dead_lettered, errors.failed
    result.lag_after = lag(kafka, group, config.topics, state.get("positions"))
    result.seconds = time.monotonic() - started
    return result


def _chain_key_converter(config) -> Converter:
    """The key converter for a chain that reads keys: a primitive key (Avro ``"string"``, a non-struct
    JSON envelope) decodes into the chain's primitive column, as string and bytes keys do."""
    key_converter = build_converter(config.key_converter, is_key=True)
    if getattr(key_converter, "self_describing", False) and hasattr(key_converter, "field"):
        key_converter.field = PRIMITIVE_COLUMN
    return key_converter


def _transformed(
    chain: TransformChain, table: pa.Table, topic: str, partition: int, offs: list[int] | range,
    msgs: list | None = None, key_converter: Converter | None = None,
) -> tuple[pa.Table, pa.Array, pa.Array | None]:
    """Run the transform chain with the records' Kafka metadata; return the table, its offsets and the
    routed topic of each row (None when no record changed topic).

    The timestamp, key, headers and tombstone flags are read from ``msgs`` only when the chain needs
    them. Tombstones (kept in the batch as null rows only for a chain that reads the flag) that are
    still tombstones after the chain are dropped, as they are without transforms."""
    if isinstance(offs, range):  # consecutive offsets (the fast path): no Python ints
        offsets = pa.array(np.arange(offs.start, offs.stop, offs.step, dtype=np.int64))
    else:
        offsets = pa.array(offs, pa.int64())
    if not len(chain) or not len(offsets):
        return table, offsets, None
    meta = _metadata(chain.needs, msgs, key_converter, topic) if msgs is not None else {}
    out = chain.apply(RecordBatch.of(table, topic=topic, partition=partition, offset=offsets, **meta))
    value, offsets, routed = out.value, out.offset, routed_topics(out, topic)
    if out.tombstone is not None and out.num_rows and pc.any(out.tombstone).as_py():
        live = pc.invert(pc.fill_null(out.tombstone, False))
        value, offsets = value.filter(live), pc.filter(offsets, live)
        routed = None if routed is None else routed.filter(live)
    return value, offsets.combine_chunks() if isinstance(offsets, pa.ChunkedArray) else offsets, routed


def routed_topics(out: RecordBatch, topic: str) -> pa.Array | None:
    """The routed topic of each record of a transformed batch, or None when all kept ``topic``."""
    if out.topic is None:
        return None
    if out.topic.null_count:
        raise TransformError(f"a transform left {out.topic.null_count} record(s) of {topic} without a topic")
    if set(out.topics()) <= {topic}:
        return None
    names = out.topic.cast(pa.string())
    return names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names


def _count_targets(result: SinkResult, topic: str, n: int, routed: pa.Array | None) -> None:
    """Add ``n`` rows to ``result.rows_per_target`` (and ``rows_per_route``), under their routed topics."""
    route = result.rows_per_route.setdefault(topic, {})
    if routed is None:
        if n:
            result.rows_per_target[topic] = result.rows_per_target.get(topic, 0) + n
            route[topic] = route.get(topic, 0) + n
        return
    counts = pc.value_counts(routed)
    for name, k in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
        result.rows_per_target[name] = result.rows_per_target.get(name, 0) + k
        route[name] = route.get(name, 0) + k


def _metadata(needs: frozenset[str], msgs: list, key_converter: Converter | None, topic: str) -> dict[str, Any]:
    """``Batch.of`` arguments for the metadata the chain reads, collected from the raw messages."""
    out: dict[str, Any] = {}
    if "timestamp" in needs:
        stamps = [m.timestamp() for m in msgs]  # (type, ms); type 0 is TIMESTAMP_NOT_AVAILABLE
        out["timestamp"] = pa.array([ms if kind else None for kind, ms in stamps], pa.int64())
    if "tombstone" in needs:
        out["tombstone"] = pa.array([m.value() is None for m in msgs], pa.bool_())
    if "headers" in needs:
        out["headers"] = _headers(msgs)
    if "key" in needs:
        out["key"] = _keys([m.key() for m in msgs], key_converter, topic)
    return out


def _headers(msgs: list) -> dict[str, pa.Array]:
    """One column per header name (the last value wins); UTF-8 values as strings, others as binary."""
    cols: dict[str, list] = {}
    n = len(msgs)
    for i, m in enumerate(msgs):
        for name, value in m.headers() or ():
            cols.setdefault(name, [None] * n)[i] = value
    out = {}
    for name, values in cols.items():
        arr = pa.array(values, pa.binary())
        try:
            out[name] = arr.cast(pa.string())
        except pa.ArrowInvalid:
            out[name] = arr
    return out


def _is_object(key: bytes | None) -> bool:
    return key is None or key[:1] == b"{"


def _keys(keys: list[bytes | None], converter: Converter | None, topic: str) -> pa.Table:
    """Message keys as the chain's key table: a struct key's fields are columns, else one primitive column."""
    kind = getattr(converter, "class_name", "")
    if kind.endswith("JsonConverter") and not getattr(converter, "self_describing", False):
        if keys and all(map(_is_object, keys)):  # object keys: parsed in C, one batch
            blob = b"\n".join(b"{}" if k is None else k for k in keys)
            with contextlib.suppress(pa.ArrowInvalid):
                return pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=max(1 << 20, len(blob) + 1)))
        parsed = [None if k is None else orjson.loads(k) for k in keys]
        if any(isinstance(k, dict) for k in parsed):
            if not all(k is None or isinstance(k, dict) for k in parsed):
                raise TransformError("the keys of one batch mix objects and primitive values")
            return pa.Table.from_pylist([k or {} for k in parsed])
        return primitive(pa.array(parsed))
    if converter is None or kind.endswith(("StringConverter", "ByteArrayConverter")):
        arr = pa.array(keys, pa.binary())
        return primitive(arr.cast(pa.string()) if kind.endswith("StringConverter") else arr)
    live = [i for i, k in enumerate(keys) if k is not None]
    table = converter.decode([keys[i] for i in live], None, topic)
    if len(live) == len(keys):
        return table
    pos = {j: i for i, j in enumerate(live)}
    return table.take(pa.array([pos.get(i) for i in range(len(keys))], pa.int64()))


def _drain(
    consumer, sink: Sink, converter: Converter, transform: TransformChain, schema: pa.Schema | None,
    plan: list[TopicPartitionRange], result: SinkResult, consume_batch: int, errors: ErrorHandler,
) -> None:
    ends = {(r.topic, r.partition): r.end for r in plan}
    pending = set(ends)
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in plan])

    def commit(topic: str, partition: int, offset: int | None) -> None:
        if offset is not None:
            errors.flush()  # dead-lettered records are acknowledged before offsets move past them
            consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)

    nxt = {(r.topic, r.partition): r.start for r in plan}  # next offset expected per partition
    idle_deadline = time.monotonic() + 60
    while pending:
        # never ask for more than the planned ranges still hold: consume() waits its whole timeout
        # whenever fewer messages than asked for are available, which would stall every run's tail
        left = sum(ends[k] - nxt[k] for k in pending)
        msgs = consumer.consume(num_messages=max(1, min(consume_batch, left)), timeout=1.0)
        if not msgs:
            if time.monotonic() > idle_deadline:
                raise DeliveryError(f"no records arrived for 60s while reading {sorted(pending)}")
            continue
        idle_deadline = time.monotonic() + 60
        fast = _group_fast(msgs, pending, ends, sink.wants_messages, len(ends) > 1)
        if fast is not None:
            key, vals, offs, raw = fast
            grouped = {key: (vals, offs, raw)} if len(vals) else {}
            nxt[key] = offs.stop
            finished = [key] if offs.stop >= ends[key] else []
        else:
            grouped, finished = _group_slow(msgs, pending, ends, nxt, sink.wants_messages, result,
                                            "tombstone" in transform.needs)
        for (topic, partition), (vals, offs, raw) in grouped.items():
            if sink.wants_messages:
                n, dead, durable = _put_messages(sink, converter, transform, schema, topic, partition, vals,
                                                 errors, commit, result)
                result.rows_per_topic[topic] = result.rows_per_topic.get(topic, 0) + n
                result.tombstones += dead
                commit(topic, partition, durable)
                continue
            table, offsets, routed = _convert(converter, transform, schema, topic, partition, vals, offs, raw,
                                              errors, sink, commit)
            if table.num_rows == 0:  # all filtered out: nothing to write; the range end is committed below
                continue
            result.rows_per_topic[topic] = result.rows_per_topic.get(topic, 0) + table.num_rows
            _count_targets(result, topic, table.num_rows, routed)
            durable = sink.put(topic, partition, table, offsets, routed)
            commit(topic, partition, durable)
        for key in finished:
            if key in pending:
                sink.flush(*key)
                commit(key[0], key[1], ends[key])
                consumer.incremental_unassign([TopicPartition(key[0], key[1])])
                pending.discard(key)


_value, _error, _offset, _partition, _topic, _key = (Message.value, Message.error, Message.offset,
                                                     Message.partition, Message.topic, Message.key)


def _group_fast(msgs: list, pending: set, ends: dict, wants_messages: bool, many: bool
                ) -> tuple[tuple[str, int], list, range, list] | None:
    """The common batch without per-message Python: one topic-partition, consecutive offsets, no
    errors or EOF events, no tombstones. Returns (key, values or messages, offsets, messages), or None
    when the batch is not like that (the general ``_group_slow`` handles it)."""
    n = len(msgs)
    m0 = msgs[0]
    key = (m0.topic(), m0.partition())
    if key not in pending:
        return None
    first = m0.offset()
    if msgs[-1].offset() - first != n - 1 or first < 0:
        return None
    errs = list(map(_error, msgs))
    if errs.count(None) != n:
        return None
    if many and (list(map(_partition, msgs)).count(key[1]) != n or list(map(_topic, msgs)).count(key[0]) != n):
        return None
    k = max(0, min(n, ends[key] - first))  # records past the planned end are not ours
    raw = msgs if k == n else msgs[:k]
    if wants_messages:
        return key, raw, range(first, first + k), raw
    vals = list(map(_value, raw))
    if None in vals:  # tombstones are counted and skipped by the general path
        return None
    return key, vals, range(first, first + k), raw


def _group_slow(msgs: list, pending: set, ends: dict, nxt: dict, wants_messages: bool, result: SinkResult,
                keep_tombstones: bool = False
                ) -> tuple[dict[tuple[str, int], tuple[list, list[int], list]], list[tuple[str, int]]]:
    """Group a consumed batch by topic-partition, message by message (EOF events, errors, tombstones).

    Tombstones are counted; with ``keep_tombstones`` (a chain reading the flag) they stay in the batch."""
    grouped: dict[tuple[str, int], tuple[list, list[int], list]] = {}
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
        nxt[key] = off + 1
        value = m.value()
        if wants_messages:  # keys, timestamps and tombstones go to the sink as they are
            grouped.setdefault(key, ([], [], []))[0].append(m)
        elif value is None and not keep_tombstones:
            result.tombstones += 1
        else:
            if value is None:
                result.tombstones += 1
            vals, offs, raw = grouped.setdefault(key, ([], [], []))
            vals.append(value)
            offs.append(off)
            raw.append(m)
        if off + 1 >= ends[key]:
            finished.append(key)
    return grouped, finished


class _Staged(Exception):
    """A failure tagged with its Kafka Connect stage."""

    def __init__(self, stage: str, class_name: str, error: Exception) -> None:
        super().__init__(str(error))
        self.stage, self.class_name, self.error = stage, class_name, error


def _decoder(converter: Converter, transform: TransformChain, schema: pa.Schema | None, topic: str,
             partition: int):
    """decode + transform of a list of values (with their offsets), failures tagged by stage."""
    key_converter = getattr(converter, "key_converter", None)

    def run(vals: list[bytes], offs: list[int] | range, msgs: list | None = None
            ) -> tuple[pa.Table, pa.Array, pa.Array | None]:
        try:
            table = _decode_live(converter, vals, schema, topic)
        except Exception as e:
            raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
        try:
            return _transformed(transform, table, topic, partition, offs, msgs, key_converter)
        except Exception as e:
            raise _Staged(TRANSFORMATION, type(transform).__name__, e) from e
    return run


def _decode_live(converter: Converter, vals: list, schema: pa.Schema | None, topic: str) -> pa.Table:
    """Decode values; tombstones (None, kept only for a chain that reads them) become null rows."""
    if None not in vals:
        return converter.decode(vals, schema, topic)
    live = [i for i, v in enumerate(vals) if v is not None]
    table = converter.decode([vals[i] for i in live], schema, topic)
    if table.num_columns == 0:
        return pa.table({"_": pa.nulls(len(vals))}).drop_columns(["_"])
    pos = {j: i for i, j in enumerate(live)}
    return table.take(pa.array([pos.get(i) for i in range(len(vals))], pa.int64()))


def _convert(
    converter: Converter, transform: TransformChain, schema: pa.Schema | None, topic: str, partition: int,
    vals: list[bytes], offs: list[int] | range, raw: list, errors: ErrorHandler, sink: Sink, commit,
) -> tuple[pa.Table, pa.Array, pa.Array | None]:
    """Decode and transform one topic-partition's values; route bad records to the error handler.

    The batch is converted whole; only a failing batch is bisected to find its bad records. Under
    ``errors_tolerance: none`` the records before the first bad one are written and committed, so the
    group's offset stops exactly at the bad record, then the error is raised.
    """
    run = _decoder(converter, transform, schema, topic, partition)
    try:
        return run(vals, offs, raw)
    except _Staged as staged:
        if is_transient(staged.error):
            raise staged.error from None
    bad, good = locate_bad(len(vals), lambda idx: run([vals[i] for i in idx], [offs[i] for i in idx],
                                                      [raw[i] for i in idx]))
    if not bad:
        raise RecordError(f"the batch of {topic}[{partition}] at offsets {offs[0]}..{offs[-1]} fails as a whole")
    failures = [_failure(raw[i], e) for i, e in sorted(bad.items())]
    if not errors.tolerate:
        first = min(bad)
        if first > 0:  # keep everything before the bad record, so the next run starts exactly at it
            table, offsets, routed = run(vals[:first], offs[:first], raw[:first])
            if table.num_rows:
                sink.put(topic, partition, table, offsets, routed)
            sink.flush(topic, partition)
        commit(topic, partition, offs[first])
        errors.report(failures[:1])
    errors.report(failures)
    if good is None:
        return pa.table({}), pa.array([], pa.int64()), None
    return good


def _message_decoder(converter: Converter, transform: TransformChain, schema: pa.Schema | None, topic: str,
                     partition: int, keys: bool = False) -> Callable[[list], Decoded]:
    """decode + transform of whole messages (for sinks that take them), failures tagged by stage.

    The chain sees the real offsets and, as ``chain.needs`` asks, timestamps, keys, headers and
    tombstone flags. Tombstones go through the chain (as null rows) when it reads the flag, has a
    Filter or routes (a routed tombstone deletes from its routed table), or when ``keys`` asks for
    the keys the chain makes; otherwise they bypass it and stay tombstones. Without transforms no
    chain work is done. With ``keys``, ``Decoded.keys`` holds the kept messages' keys."""
    key_converter = getattr(converter, "key_converter", None)
    through = "tombstone" in transform.needs or any(isinstance(c, FilterConfig) for c in transform.configs) \
        or routes(transform.configs) or keys
    needs = transform.needs | {"key"} if keys else transform.needs

    def run(msgs: list) -> Decoded:
        n = len(msgs)
        vals = list(map(_value, msgs))
        nulls = vals.count(None)
        has_tomb = nulls > 0
        tomb = np.fromiter((v is None for v in vals), dtype=bool, count=n) if has_tomb else np.zeros(n, bool)
        if not len(transform):  # the hot path: decode the values, keep every message
            live = [v for v in vals if v is not None] if has_tomb else vals
            try:
                rows = converter.decode(live, schema, topic) if live else None
            except Exception as e:
                raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
            try:
                key_table = _keys(list(map(_key, msgs)), key_converter, topic) if keys else None
            except Exception as e:
                raise _Staged(KEY_CONVERTER, getattr(key_converter, "class_name", "key converter"), e) from e
            return Decoded(rows, np.arange(n), tomb, keys=key_table, nulls=nulls)
        idx = np.arange(n) if through or not has_tomb else np.flatnonzero(~tomb)
        sub = msgs if len(idx) == n else [msgs[i] for i in idx]
        sub_vals = vals if len(idx) == n else [vals[i] for i in idx]
        if not sub:
            return Decoded(None, idx, tomb[idx], nulls=nulls)
        try:
            table = _decode_live(converter, sub_vals, schema, topic)
        except Exception as e:
            raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
        offs = message_offsets(sub)
        try:
            meta = _metadata(needs, sub, key_converter, topic)
            if through:
                meta["tombstone"] = pa.array(tomb[idx])
            out = transform.apply(RecordBatch.of(table, topic=topic, partition=partition, offset=pa.array(offs),
                                                 **meta))
            routed = routed_topics(out, topic)
        except Exception as e:
            raise _Staged(TRANSFORMATION, type(transform).__name__, e) from e
        kept_off = np.asarray(out.offset.to_numpy(), dtype=np.int64) if out.num_rows else np.empty(0, np.int64)
        kept = idx[np.searchsorted(offs, kept_off)]
        if out.tombstone is not None and out.num_rows:
            out_tomb = np.asarray(pc.fill_null(out.tombstone, False).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            out_tomb = np.zeros(len(kept), dtype=bool)
        rows = out.value.filter(pa.array(~out_tomb)) if out_tomb.any() else out.value
        if not through and has_tomb:  # tombstones bypassed the chain: they are all kept
            dead = np.flatnonzero(tomb)
            kept = np.concatenate([kept, dead])
            out_tomb = np.concatenate([out_tomb, np.ones(len(dead), dtype=bool)])
            order = np.argsort(kept, kind="stable")
            kept, out_tomb = kept[order], out_tomb[order]
            if routed is not None:  # bypassing tombstones keep their source topic
                routed = pa.concat_arrays([routed, pa.array([topic] * len(dead), pa.string())]).take(pa.array(order))
        return Decoded(rows if rows.num_rows else None, kept, out_tomb, routed, out.key if keys else None, nulls)
    return run


def _put_messages(sink: Sink, converter: Converter, transform: TransformChain, schema: pa.Schema | None,
                  topic: str, partition: int, msgs: list, errors: ErrorHandler, commit, result: SinkResult
                  ) -> tuple[int, int, int | None]:
    """Hand raw messages to a sink that wants them; on a decode failure, drop the bad ones and retry.

    Under ``errors_tolerance: all`` the bad messages are dropped like filtered ones: the sink still
    gets the whole list (with a decode that skips them), so its stored offsets move past them even
    when no message of the batch is good."""
    decode = _message_decoder(converter, transform, schema, topic, partition, sink.wants_keys)
    try:
        return sink.put_messages(topic, partition, msgs, _counting(decode, result, topic))
    except _Staged as staged:
        if is_transient(staged.error):
            raise staged.error from None
    bad, _ = locate_bad(len(msgs), lambda idx: decode([msgs[i] for i in idx]))
    if not bad:
        raise RecordError(f"the batch of {topic}[{partition}] fails as a whole")
    failures = [_failure(msgs[i], e) for i, e in sorted(bad.items())]
    if not errors.tolerate:
        first = min(bad)
        if first > 0:
            sink.put_messages(topic, partition, msgs[:first], _counting(decode, result, topic))
            sink.flush(topic, partition)
        commit(topic, partition, msgs[first].offset())
        errors.report(failures[:1])
    errors.report(failures)
    good = [i for i in range(len(msgs)) if i not in bad]
    return sink.put_messages(topic, partition, msgs, _counting(_skipping(decode, good), result, topic))


def _counting(decode: Callable[[list], Decoded], result: SinkResult, topic: str) -> Callable[[list], Decoded]:
    """``decode`` that also counts the rows it returns per routed topic (``rows_per_target``)."""
    def run(msgs: list) -> Decoded:
        d = decode(msgs)
        if d.rows is not None:
            _count_targets(result, topic, d.rows.num_rows, d.live_topics)
        return d
    return run


def _skipping(decode: Callable[[list], Decoded], good: list[int]) -> Callable[[list], Decoded]:
    """A decode of the whole message list that drops every position not in ``good`` (the bad records)."""
    pos = np.asarray(good, dtype=np.int64)

    def run(msgs: list) -> Decoded:
        if not len(pos):
            return Decoded(None, pos, np.zeros(0, dtype=bool))
        d = decode([msgs[i] for i in good])
        return Decoded(d.rows, pos[d.kept], d.tombstone, d.topics, d.keys, d.nulls)
    return run


def _failure(m, e: BaseException) -> Failure:
    stage, cls, exc = (e.stage, e.class_name, e.error) if isinstance(e, _Staged) else (VALUE_CONVERTER, "", e)
    return Failure(stage, exc, cls, topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key(),
                   value=m.value(), headers=list(m.headers() or []))
