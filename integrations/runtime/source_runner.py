"""Run a source connector for one micro-batch: poll → convert → produce → await acks → store offset.

Per batch, in order: the records are produced and every acknowledgement checked, then the batch's
offset is stored through the connector's transactional producer (``source_fence``), then a stop
request (SIGTERM, SIGINT, Dagster's run termination: ``runtime.stopping``) ends the run there. With
``exactly_once: true`` the records, dead-lettered records and offset of a batch are one Kafka
transaction. Pieces: ``source_delivery`` (transforms, converters, bad rows), ``source_producing``
(the produce loop), ``source_fence`` (fencing and transactions).

Tasks (``tasks_max > 1``, ``runtime.tasks``): ``run_source(config, task=i)`` reads only the tables task
``i`` owns (or, for one table in bulk mode, its key range), fenced by its own ``transactional.id``
(``headrace-source-<name>-<i>``); offsets stay keyed by table, so any task can take a table over.
Without ``task`` a connector with several tasks runs them one after another in this process.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException

from integrations.config import SqlSourceConfig, redact_url
from integrations.converters.factory import build_converter
from integrations.errors import ConfigError
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetRegression, OffsetStore, offset_regressed
from integrations.runtime import stopping
from integrations.runtime.errors import ErrorHandler
from integrations.runtime.faults import fault_point
from integrations.runtime.source_delivery import (  # noqa: F401 (re-exported: tests and older imports)
    Outgoing,
    _deliver,
    _headers_and_stamps,
    _json,
    _report_rejects,
    _transform_tolerant,
    _transformed,
    _truncate,
    utf8_bytes,
)
from integrations.runtime.source_fence import (  # noqa: F401
    SourceFenced,
    Transactions,
    is_fenced,
    transactional_id,
)
from integrations.runtime.source_producing import Producing, RecordTooLarge  # noqa: F401
from integrations.runtime.tasks import check_task, source_partitions
from integrations.sources.base import Source
from integrations.transforms.chain import build_chain

log = logging.getLogger("headrace.source")

__all__ = ["Producing", "SourceFenced", "SourceResult", "TopicStats", "build_source", "run_source"]


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


def _open_transactions(config: SqlSourceConfig, kafka: KafkaSettings, store: OffsetStore, task: int | None = None
                       ) -> tuple[Producing, Transactions]:
    """The run's record producer and its connector's (task's) transactional producer (the same one under
    ``exactly_once``; else a small one that only writes offsets)."""
    tid = transactional_id(config.name, task)
    label = f"source {config.name}" + ("" if task is None else f" task {task}")  # names its progress lines
    if getattr(config, "exactly_once", False):
        producing = Producing(kafka, transactional_id=tid, label=label)
        return producing, Transactions(store, config.name, producing.producer, exactly_once=True, task=task)
    offsets_producer = kafka.producer(**{"transactional.id": tid, "transaction.timeout.ms": kafka.message_timeout_ms,
                                         "linger.ms": 0, "delivery.report.only.error": False})
    return Producing(kafka, label=label), Transactions(store, config.name, offsets_producer, exactly_once=False,
                                                       task=task)


def merge_results(connector: str, results: list[SourceResult]) -> SourceResult:
    """One result for several tasks' results (a bulk table split into key ranges is added up)."""
    out = SourceResult(connector)
    for r in results:
        for pkey, s in r.per_partition.items():
            have = out.per_partition.get(pkey)
            if have is None:
                out.per_partition[pkey] = s
                continue
            have.rows += s.rows
            have.bytes += s.bytes
            have.topic = have.topic or s.topic
            for t, n in s.rows_per_topic.items():
                have.rows_per_topic[t] = have.rows_per_topic.get(t, 0) + n
            for t, n in s.bytes_per_topic.items():
                have.bytes_per_topic[t] = have.bytes_per_topic.get(t, 0) + n
        out.seconds += r.seconds
        out.dead_lettered += r.dead_lettered
        out.failed += r.failed
    return out


def run_source(config: SqlSourceConfig, kafka: KafkaSettings | None = None, offsets_topic: str | None = None,
               task: int | None = None, read_ranges: int | None = None) -> SourceResult:
    """Move new rows of every source partition to Kafka; store each offset after its batch is acked.

    ``task``: with ``tasks_max > 1``, only the partitions (tables, key ranges) that task owns (None:
    every task in turn, in this process). ``read_ranges``: a bulk table, or an incrementing table's first
    load, is read in that many key ranges at once (SQL sources; default: the config's ``read_ranges``
    when it has that field, else 1). Raises ``SourceFenced`` when another run of the connector (task) took over,
    ``OffsetRegression`` when an offset would move backwards, and ``StopRequested`` after the batch
    during which a stop came."""
    kafka = kafka or KafkaSettings.from_env()
    check_task(task, config.tasks_max, config.name)
    if config.tasks_max > 1 and config.type == "postgres_cdc":
        raise ConfigError(f"connector {config.name}: postgres_cdc reads one replication slot in order; "
                          "tasks_max must be 1")
    if task is None and config.tasks_max > 1:
        return merge_results(config.name, [run_source(config, kafka, offsets_topic, i, read_ranges)
                                           for i in range(config.tasks_max)])
    task = None if config.tasks_max == 1 else task
    started = time.monotonic()
    kafka.wait_available()
    store = OffsetStore(kafka, offsets_topic) if offsets_topic else OffsetStore(kafka)
    store.ensure()
    exactly_once = bool(getattr(config, "exactly_once", False))
    producing, txn = _open_transactions(config, kafka, store, task)
    errors = ErrorHandler(config, config.name, kafka)
    # fence older runs while the source connects; offsets are read only once that is done
    with ThreadPoolExecutor(1, thread_name_prefix="source-fence") as pool:
        fencing = pool.submit(txn.init)
        try:
            source = errors.retry(lambda: build_source(config), "connecting to the source")
        finally:
            fencing.result()
    if hasattr(source, "read_ranges"):
        source.read_ranges = max(1, read_ranges or getattr(config, "read_ranges", 1) or 1)
    try:
        if exactly_once:
            errors.share_producer(producing.producer)  # dead letters go in the batch's transaction
        stored = store.read(config.name)
        log.info("source %s reading %s", config.name, redact_url(getattr(config, "connection_url", "")))
        try:
            return _run(config, kafka, source, stored, producing, txn, errors, started, task)
        except KafkaException as e:
            if is_fenced(e):  # fenced while producing or ending a transaction: the one fencing line
                raise txn.fenced_error(e) from e
            raise
    finally:
        try:
            source.close()
        finally:
            txn.close()


def _task_partitions(config: SqlSourceConfig, source: Source, task: int | None) -> list[dict[str, Any]]:
    """The source partitions this task reads now (all of them without tasks). One table in bulk mode is
    split into key ranges instead: every task gets it, and the source reads only the task's range."""
    parts = source.partitions()
    if task is None:
        return parts
    if getattr(config, "mode", None) == "bulk" and len(parts) == 1 and hasattr(source, "split"):
        source.split = (task, config.tasks_max)
        return parts
    return source_partitions(getattr(config, "source_names", []), parts, config.tasks_max, task)


def _run(config: SqlSourceConfig, kafka: KafkaSettings, source: Source, stored: dict[str, Any],
         producing: Producing, txn: Transactions, errors: ErrorHandler, started: float, task: int | None = None
         ) -> SourceResult:
    key_converter = build_converter(config.key_converter, is_key=True)
    value_converter = build_converter(config.value_converter)
    transform = build_chain(config)
    result = SourceResult(config.name)
    budget = [config.max_rows_per_run]
    where = f"source connector {config.name}"
    try:
        for partition in errors.retry(lambda: _task_partitions(config, source, task), "listing the source partitions"):
            stopping.check(where)
            pkey = orjson.dumps(partition, option=orjson.OPT_SORT_KEYS).decode()
            stats = result.per_partition.setdefault(
                pkey, TopicStats(topic="", offset_before=stored.get(pkey), offset_after=stored.get(pkey))
            )

            def move(partition: dict[str, Any] = partition, pkey: str = pkey, stats: TopicStats = stats) -> None:
                # a retry starts again from the offset stored last (at-least-once for the batch in flight;
                # under exactly_once the failed batch's transaction was aborted)
                batches = source.poll(partition, stats.offset_after)
                try:
                    for batch in batches:
                        if budget[0] is not None and budget[0] <= 0:
                            break
                        if budget[0] is not None and batch.num_rows > budget[0]:
                            batch = _truncate(batch, budget[0], source)
                        rows_read = batch.num_rows
                        sent, rows_to, bytes_to = _move_batch(config, kafka, producing, txn, errors, batch,
                                                              pkey, stats, key_converter, value_converter,
                                                              transform, source)
                        # counted only once the batch is stored (a retried batch is not counted twice)
                        for t, n in rows_to.items():
                            stats.rows_per_topic[t] = stats.rows_per_topic.get(t, 0) + n
                            stats.bytes_per_topic[t] = stats.bytes_per_topic.get(t, 0) + bytes_to[t]
                        stats.bytes += sum(bytes_to.values())
                        # the topic the partition's rows went to (its own topic when none, or when routed to several)
                        stats.topic = next(iter(stats.rows_per_topic)) if len(stats.rows_per_topic) == 1 \
                            else batch.topic
                        stats.rows += sent
                        if budget[0] is not None:
                            budget[0] -= rows_read
                        if batch.offset is None:  # a part of a larger unit (a CDC chunk's batches before its
                            continue  # last): no offset is stored here, so neither a retry nor a stop starts here
                        stats.offset_after = batch.offset
                        stopping.check(where)  # the batch's records are acknowledged and its offset stored
                except BaseException:
                    txn.abort()  # a unit's batches left in an open transaction (exactly_once) never show
                    raise
                finally:
                    close = getattr(batches, "close", None)
                    if close is not None:
                        close()

            errors.retry(move, f"moving {pkey}")
            if not stats.topic:
                stats.topic = config.topic_for(partition.get("table", "query"))
    finally:
        result.dead_lettered, result.failed = errors.dead_lettered, errors.failed
        result.seconds = time.monotonic() - started
    return result


def _move_batch(config: SqlSourceConfig, kafka: KafkaSettings, producing: Producing, txn: Transactions,
                errors: ErrorHandler, batch: Any, pkey: str, stats: TopicStats, key_converter: Any,
                value_converter: Any, transform: Any, source: Source
                ) -> tuple[int, dict[str, int], dict[str, int]]:
    """Produce one polled batch and store its offset; return (records sent, rows and bytes per topic)."""
    if offset_regressed(stats.offset_after, batch.offset):
        raise OffsetRegression(f"connector {config.name} partition {pkey}: the offset would move backwards "
                               f"from {_json(stats.offset_after)} to {_json(batch.offset)}; refused, nothing "
                               "of the batch stored")
    sent, rows_to, bytes_to = 0, {}, {}
    try:
        if txn.exactly_once:
            txn.begin()
        _report_rejects(batch, errors, pkey, type(source).__name__)  # unparseable input, first
        # --- transforms: the chain sees the topic; routers may send rows to other topics ---
        for sub in _transform_tolerant(transform, batch, errors, pkey):
            nbytes, nrows = _deliver(kafka, producing, key_converter, value_converter, config, sub, errors, pkey)
            sent += nrows
            if nrows:
                rows_to[sub.topic] = rows_to.get(sub.topic, 0) + nrows
                bytes_to[sub.topic] = bytes_to.get(sub.topic, 0) + nbytes
            elif nbytes:
                bytes_to[sub.topic] = bytes_to.get(sub.topic, 0) + nbytes
        # --- end transforms ---
        errors.flush()  # dead-lettered records are acknowledged before the offset moves
        fault_point("source_after_produce")
        # a batch without an offset is part of a larger unit (a CDC chunk's batches before its last): under
        # exactly_once its records stay in the open transaction, committed with the unit's offset
        if batch.offset is not None:
            txn.commit({pkey: batch.offset})
        fault_point("source_after_commit")
    except BaseException:
        if txn.exactly_once:
            txn.abort()  # nothing of the batch becomes visible
        raise
    return sent, rows_to, bytes_to
