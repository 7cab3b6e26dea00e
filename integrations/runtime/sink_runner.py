"""Run a sink connector over a fixed offset range ``[start, end)`` per topic-partition.

The range is planned once (from the committed offsets to the high watermark, or given by the caller,
e.g. from Dagster run tags), so retries of a run read exactly the same records. Offsets are committed
only after the sink reports the records durable (for Parquet: after the segment's files are
published), and every commit is fenced (``integrations.sinks.fencing``): a Parquet run first takes
its connector's transactional producer, whose ``init_transactions`` fences older runs, then plans; a
table sink's offsets move only where they still are what the run started from. SIGTERM/SIGINT end a
run right after a commit (``runtime.stopping``). Modules: ``sink_plan`` (ranges, lag), ``sink_decode``
(converters and transforms), ``sink_drain`` (the consume loop), ``sink_result``.

Tasks (``tasks_max > 1``, ``runtime.tasks``): ``run_sink(config, task=i)`` reads only the topic
partitions task ``i`` owns, fences with its own ``transactional.id`` (``headrace-sink-<name>-task-<i>``)
and stores offsets per topic-partition as a single task does, so any task may take a partition over.
Without ``task`` a connector with several tasks runs them one after another in this process.

Routing transforms (RegexRouter, TimestampRouter) give each record a routed topic; the sink writes it
there (the routed topic's folder and file names, or the table ``table_name_format`` gives it), while
offsets are still planned, stored and committed per source topic-partition.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from integrations.arrow_types import schema_from_mapping
from integrations.config import ParquetSinkConfig
from integrations.converters.factory import build_converter
from integrations.errors import ConfigError
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.errors import ErrorHandler, is_transient
from integrations.runtime.faults import fault_point
from integrations.runtime.gc_tuning import relaxed_gc
from integrations.runtime.sink_decode import (  # noqa: F401 (re-exported: tests and callers use these names)
    RecordBatch,
    _chain_key_converter,
    _keys,
    _skipping,
    _transformed,
    routed_topics,
)
from integrations.runtime.sink_drain import _drain
from integrations.runtime.sink_plan import lag, plan_ranges
from integrations.runtime.sink_result import SinkResult
from integrations.runtime.tasks import check_task, sink_partitions
from integrations.sinks.base import Sink, TopicPartitionRange
from integrations.sinks.fencing import Committer, FencedCommitter, GroupCommitter, fence_tag
from integrations.transforms.chain import build_chain

log = logging.getLogger("headrace.sink")

__all__ = ["SinkResult", "build_sink", "lag", "merge_results", "plan_ranges", "routed_topics", "run_sink"]


def build_sink(config: ParquetSinkConfig, task: int | None = None) -> Sink:
    """The Sink implementation for a connector config (and task: its temporary files carry the task's
    fence tag, so one task never removes another's files in flight)."""
    from integrations.registry import sink_class

    sink = sink_class(config)(config, after_write=lambda _f: fault_point("sink_after_write"))
    if task is not None and hasattr(sink, "tag"):
        sink.tag = fence_tag(config.name, task)
    return sink


def fence_task(config: ParquetSinkConfig, task: int | None) -> int | None:
    """The task number in the connector's fence: None for a single-task connector (its fence is the
    connector's own, as before tasks existed)."""
    return None if config.tasks_max == 1 else task


def run_sink(
    config: ParquetSinkConfig, kafka: KafkaSettings | None = None,
    ranges: list[TopicPartitionRange] | None = None, consume_batch: int = 50_000, sink: Sink | None = None,
    task: int | None = None,
) -> SinkResult:
    """Drain the planned (or given) ranges into the sink and commit offsets after durable writes.

    ``task``: with ``tasks_max > 1``, only the topic partitions that task owns (None: every task in
    turn, in this process)."""
    kafka = kafka or KafkaSettings.from_env()
    check_task(task, config.tasks_max, config.name)
    if task is None and config.tasks_max > 1:
        return merge_results(config.name, [run_sink(config, kafka, ranges, consume_batch, sink, task=i)
                                           for i in range(config.tasks_max)])
    task = fence_task(config, task)
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
            state["sink"] = build_sink(config, task)
        current: Sink = state["sink"]
        state["only"] = owned(config, kafka, task)
        consumer = kafka.consumer(group_id=group)
        committer: Committer = GroupCommitter(consumer)
        try:
            if current.fence == "group":  # fence first: a paused older run's open transaction is aborted
                plan, committer = _take_fence(config, kafka, consumer, current, ranges, task, state["only"])
            else:
                stored = current.stored_offsets(config.topics)
                plan = plan_ranges(kafka, group, config.topics, config.max_records_per_run, ranges, stored,
                                   state["only"])
                # where the sink stores offsets, a successful attempt leaves them at each range's end
                state["positions"] = None if stored is None else {**stored, **{(r.topic, r.partition): r.end
                                                                               for r in plan}}
            result = SinkResult(config.name, ranges=plan)
            if plan:
                with relaxed_gc():  # one GC-tracked Message per record: collect far less often
                    _drain(consumer, current, converter, transform, schema, plan, result, consume_batch, errors,
                           committer)
        except Exception as e:
            if own_sink and is_transient(e):
                current.close()
                state["sink"] = None
            raise
        finally:
            committer.close()
            consumer.close()
        result.stats = current.stats
        return result

    try:
        result = errors.retry(attempt, f"draining {config.topics}") if own_sink else attempt()
    finally:
        if state["sink"] is not None:
            state["sink"].close()
    result.dead_lettered, result.failed = errors.dead_lettered, errors.failed
    result.lag_after = lag(kafka, group, config.topics, state.get("positions"), state.get("only"))
    result.seconds = time.monotonic() - started
    return result


def owned(config: ParquetSinkConfig, kafka: KafkaSettings, task: int | None) -> set[tuple[str, int]] | None:
    """The topic partitions ``task`` owns now (None: a single-task connector owns them all)."""
    if task is None:
        return None
    parts = [(t, p) for t in config.topics for p in kafka.watermarks(t)]
    return sink_partitions(config.topics, parts, config.tasks_max, task)


def merge_results(connector: str, results: list[SinkResult]) -> SinkResult:
    """One result for several tasks' results (ranges, rows, files and lag added up)."""
    out = SinkResult(connector)
    for r in results:
        out.ranges += r.ranges
        for name in ("rows_per_topic", "rows_per_target", "lag_after"):
            mine = getattr(out, name)
            for k, v in getattr(r, name).items():
                mine[k] = mine.get(k, 0) + v
        for t, routes in r.rows_per_route.items():
            mine = out.rows_per_route.setdefault(t, {})
            for k, v in routes.items():
                mine[k] = mine.get(k, 0) + v
        out.tombstones += r.tombstones
        out.dead_lettered += r.dead_lettered
        out.failed += r.failed
        out.seconds += r.seconds
        out.stats.files += r.stats.files
        out.stats.bytes += r.stats.bytes
        out.stats.rows += r.stats.rows
        if hasattr(r.stats, "sources"):
            if not hasattr(out.stats, "sources"):
                out.stats.sources = {}
            out.stats.sources.update(r.stats.sources)
    return out


def _take_fence(config, kafka: KafkaSettings, consumer, sink: Sink, ranges: list[TopicPartitionRange] | None,
                task: int | None = None, only: set[tuple[str, int]] | None = None,
                ) -> tuple[list[TopicPartitionRange], FencedCommitter]:
    """Fence older runs of the connector (task), then plan again from the group's offsets read after the
    fence (no older run can move them any more), and remove temporary files of killed runs."""
    committer = FencedCommitter(kafka, consumer, config.name, task,
                                retry_timeout=config.errors_retry_timeout,
                                retry_delay_max=min(config.errors_retry_delay_max, 5.0))
    try:
        committed = {(t, p): o for t in config.topics for p, o in kafka.committed(config.consumer_group, t).items()}
        committer.start(committed)
        held = {k: o for k, o in committed.items() if o is not None}
        plan = plan_ranges(kafka, config.consumer_group, config.topics, config.max_records_per_run, ranges, held,
                           only)
        removed = sink.remove_leftovers(committer.acquired)
    except BaseException:
        committer.close()
        raise
    if removed:
        log.info("connector %s: removed %d temporary file(s) of killed runs", config.name, len(removed))
    return plan, committer
