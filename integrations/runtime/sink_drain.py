"""The sink's consume loop: read the planned ranges, group messages per topic-partition, hand them to the
sink (decoded, or raw for sinks that take messages), and commit offsets the sink reports durable."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import repeat
from operator import is_not

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import TopicPartition

from integrations.converters.base import Converter
from integrations.errors import DeliveryError
from integrations.runtime import stopping
from integrations.runtime.errors import ErrorHandler, RecordError, is_transient, locate_bad
from integrations.runtime.progress import Progress
from integrations.runtime.sink_decode import (
    _decoder,
    _error,
    _failure,
    _message_decoder,
    _partition,
    _skipping,
    _Staged,
    _topic,
    _value,
)
from integrations.runtime.sink_result import SinkResult
from integrations.sinks.base import Decoded, Sink, TopicPartitionRange
from integrations.sinks.fencing import Committer
from integrations.transforms import TransformChain

_EOF = -191  # librdkafka's _PARTITION_EOF


def _drain(
    consumer, sink: Sink, converter: Converter, transform: TransformChain, schema: pa.Schema | None,
    plan: list[TopicPartitionRange], result: SinkResult, consume_batch: int, errors: ErrorHandler,
    committer: Committer,
) -> None:
    """Read ``plan`` into ``sink``; commit through ``committer`` what the sink reports durable.

    A stop request (SIGTERM, SIGINT) ends the run right after a commit, a batch boundary: everything
    committed is published, nothing after it is (the sink's buffers are dropped, never staged)."""
    ends = {(r.topic, r.partition): r.end for r in plan}
    pending = set(ends)
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in plan])
    where = f"connector {result.connector}"

    class _Commit:
        """The sink's view of the committer: dead letters acknowledged first, a stop checked after."""

        check = staticmethod(committer.check)
        probe = staticmethod(committer.probe)

        @staticmethod
        def commit(topic: str, partition: int, offset: int) -> None:
            errors.flush()  # dead-lettered records are acknowledged before offsets move past them
            committer.commit(topic, partition, offset)
            stopping.check(where)

        close = staticmethod(committer.close)

    sink.bind(_Commit)

    def commit(topic: str, partition: int, offset: int | None) -> None:
        if offset is not None:
            _Commit.commit(topic, partition, offset)

    nxt = {(r.topic, r.partition): r.start for r in plan}  # next offset expected per partition
    progress = Progress(f"sink {result.connector}", total=sum(r.end - r.start for r in plan), unit="records")
    try:
        _loop(consumer, sink, converter, transform, schema, result, consume_batch, errors, commit, ends, pending,
              nxt, progress)
    finally:
        progress.close()


def _loop(consumer, sink: Sink, converter: Converter, transform: TransformChain, schema: pa.Schema | None,
          result: SinkResult, consume_batch: int, errors: ErrorHandler, commit: Callable, ends: dict, pending: set,
          nxt: dict, progress: Progress) -> None:
    """The consume loop of :func:`_drain` (``progress`` counts the records read)."""
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
        progress.add(len(msgs))
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
                need = sink.read_until(*key)
                if need is not None and need > ends[key]:  # complete a segment another run published
                    _extend(consumer, result, key, ends, need)
                    continue
                sink.flush(*key)
                commit(key[0], key[1], ends[key])
                consumer.incremental_unassign([TopicPartition(key[0], key[1])])
                pending.discard(key)



def _extend(consumer, result: SinkResult, key: tuple[str, int], ends: dict[tuple[str, int], int], need: int) -> None:
    """Read ``key`` on to ``need``: seek back to the old end (records past it were dropped) and widen the
    range the result reports."""
    topic, partition = key
    consumer.seek(TopicPartition(topic, partition, ends[key]))
    ends[key] = need
    result.ranges = [TopicPartitionRange(r.topic, r.partition, r.start, need) if (r.topic, r.partition) == key else r
                     for r in result.ranges]


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
    # identity, not ``errs.count(None)``: confluent-kafka's KafkaError == None leaves a TypeError set in C
    # and the next call raises SystemError (any batch holding an error event, e.g. a partition EOF)
    if any(map(is_not, map(_error, msgs), repeat(None))):
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
