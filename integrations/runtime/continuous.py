"""Continuous mode: one long-lived run that polls in a loop, one micro-batch after another.

A connector with ``continuous: {max_run_seconds, idle_sleep_seconds}`` is run by these loops instead
of one micro-batch per run. Each turn of the loop is a micro-batch with exactly the guarantees of one:

- **Sources** open the source, the producers and the connector's fence once
  (``init_transactions`` of the connector's transactional id fences every older run, as a
  micro-batch run does), then read and produce every source partition from the offsets stored last,
  store each batch's offset (in the batch's transaction under ``exactly_once``), and go on. A newer
  run of the connector fences this one: its next store fails with ``SourceFenced``.
- **Sinks** check cheaply what is pending (committed offsets against the high watermarks), and run a
  whole fenced sink micro-batch (``run_sink``) only when something is.

After a turn that moved records, ``on_batch`` receives its result (the Dagster layer records one
materialization per batch). A turn that found nothing sleeps ``idle_sleep_seconds``. The loop ends
cleanly at its time budget (after the turn in flight), and at a stop request (SIGTERM, SIGINT,
Dagster's termination: ``runtime.stopping``) with ``StopRequested`` at a batch boundary; the next run
picks up from the stored offsets. Dagster's ``<connector>_continuous_job`` and ``headrace run NAME
--continuous`` both run these loops.

Every source kind works the same way, because each turn is one ``_run`` over the same open source:

- **SQL sources** read from the offsets stored last.
- **postgres_cdc** peeks the slot up to the WAL position of the turn's start; the slot is advanced
  after each stored chunk, and a stop between storing and advancing is repaired by the next run's
  start (the stored offset is the truth).
- **File sources** list the spooling folder again at every turn (files that arrived meanwhile are
  read), and files finished in a turn are cleaned up (``cleanup_policy``) right after it, through the
  source's ``end_turn`` hook: a long run does not keep listing, hashing or re-finishing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from integrations.config import ContinuousConfig
from integrations.errors import ConfigError
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime import stopping
from integrations.runtime.errors import ErrorHandler

#: an unlimited budget: the run ends only at a stop request (``headrace run NAME --continuous``)
FOREVER = float("inf")

log = logging.getLogger("headrace.continuous")


@dataclass
class LoopResult:
    """What a continuous run did before it ended."""

    connector: str
    batches: int = 0
    rows: int = 0
    seconds: float = 0.0
    turns: int = 0
    #: rows per topic written (sources) or read (sinks), over the whole run
    by_target: dict[str, int] = field(default_factory=dict)


def _settings(config: Any, max_seconds: float | None, idle_sleep: float | None) -> tuple[float, float]:
    cont = getattr(config, "continuous", None) or ContinuousConfig()
    return (cont.max_run_seconds if max_seconds is None else max_seconds,
            cont.idle_sleep_seconds if idle_sleep is None else idle_sleep)


def _end_turn(source: Any) -> None:
    """Let the source finish what a stored turn completed (the file source's cleanup), if it has a hook."""
    hook = getattr(source, "end_turn", None)
    if hook is not None:
        hook()


def idle(seconds: float, where: str) -> None:
    """Sleep up to ``seconds``; a stop request ends the sleep with ``StopRequested``."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        stopping.check(where)
        time.sleep(min(left, 0.05))
    stopping.check(where)


def run_source_continuous(config: Any, kafka: KafkaSettings | None = None,
                          on_batch: Callable[[Any], None] | None = None, max_seconds: float | None = None,
                          idle_sleep: float | None = None, offsets_topic: str | None = None) -> LoopResult:
    """Poll the source in a loop for ``max_seconds`` (``FOREVER``: until a stop request; None: the config's
    ``continuous.max_run_seconds``); ``on_batch(SourceResult)`` after every turn that moved or
    dead-lettered records (that turn's figures only). Raises ``StopRequested`` at a batch boundary
    when a stop is requested, ``SourceFenced`` when a newer run of the connector took over."""
    from confluent_kafka import KafkaException

    from integrations.runtime.source_runner import _open_transactions, _run, build_source, is_fenced

    if config.tasks_max > 1 and config.type == "postgres_cdc":
        raise ConfigError(f"connector {config.name}: postgres_cdc reads one replication slot in order; "
                          "tasks_max must be 1")
    budget, sleep = _settings(config, max_seconds, idle_sleep)
    kafka = kafka or KafkaSettings.from_env()
    started = time.monotonic()
    out = LoopResult(config.name)
    where = f"source connector {config.name} (continuous)"
    kafka.wait_available()
    store = OffsetStore(kafka, offsets_topic) if offsets_topic else OffsetStore(kafka)
    store.ensure()
    producing, txn = _open_transactions(config, kafka, store)
    errors = ErrorHandler(config, config.name, kafka)
    with ThreadPoolExecutor(1, thread_name_prefix="source-fence") as pool:  # fence while the source connects
        fencing = pool.submit(txn.init)
        try:
            source = errors.retry(lambda: build_source(config), "connecting to the source")
        finally:
            fencing.result()
    try:
        if getattr(config, "exactly_once", False):
            errors.share_producer(producing.producer)
        stored = store.read(config.name)
        while True:
            turn = time.monotonic()
            dead, failed = errors.dead_lettered, errors.failed
            try:
                result = _run(config, kafka, source, stored, producing, txn, errors, turn)
            except KafkaException as e:
                if is_fenced(e):  # fenced while producing or ending a transaction: the one fencing line
                    raise txn.fenced_error(e) from e
                raise
            result.dead_lettered -= dead  # this turn's, not the run's
            result.failed -= failed
            stored.update({k: s.offset_after for k, s in result.per_partition.items() if s.offset_after is not None})
            _end_turn(source)
            out.turns += 1
            if result.rows or result.dead_lettered:
                out.batches += 1
                out.rows += result.rows
                for t, s in result.by_topic().items():
                    if s.rows:
                        out.by_target[t] = out.by_target.get(t, 0) + s.rows
                if on_batch is not None:
                    on_batch(result)
            if time.monotonic() - started >= budget:
                break
            if not result.rows:
                idle(min(sleep, max(0.0, budget - (time.monotonic() - started))), where)
    finally:
        out.seconds = time.monotonic() - started
        try:
            source.close()
        finally:
            txn.close()
    log.info("source %s: continuous run ended at its time budget after %d batch(es), %d rows", config.name,
             out.batches, out.rows)
    return out


def run_sink_continuous(config: Any, kafka: KafkaSettings | None = None,
                        on_batch: Callable[[Any], None] | None = None, max_seconds: float | None = None,
                        idle_sleep: float | None = None) -> LoopResult:
    """Run a sink micro-batch whenever records are pending, for ``max_seconds`` (``FOREVER``: until a stop
    request; None: the config's ``continuous.max_run_seconds``); ``on_batch(SinkResult)`` after each
    one that read records. Raises ``StopRequested`` at a batch boundary when a stop is requested."""
    from integrations.runtime.sink_plan import plan_ranges
    from integrations.runtime.sink_runner import run_sink

    budget, sleep = _settings(config, max_seconds, idle_sleep)
    kafka = kafka or KafkaSettings.from_env()
    started = time.monotonic()
    out = LoopResult(config.name)
    where = f"sink connector {config.name} (continuous)"
    errors = ErrorHandler(config, config.name, kafka)
    try:
        while True:
            out.turns += 1
            pending = errors.retry(lambda: plan_ranges(kafka, config.consumer_group, config.topics,
                                                       config.max_records_per_run), "checking for records")
            if pending:
                result = run_sink(config, kafka)
                if result.ranges:
                    out.batches += 1
                    out.rows += result.rows
                    for t, n in result.rows_per_topic.items():
                        out.by_target[t] = out.by_target.get(t, 0) + n
                    if on_batch is not None:
                        on_batch(result)
                stopping.check(where)
            if time.monotonic() - started >= budget:
                break
            if not pending:
                idle(min(sleep, max(0.0, budget - (time.monotonic() - started))), where)
    finally:
        out.seconds = time.monotonic() - started
    log.info("sink %s: continuous run ended at its time budget after %d batch(es), %d rows", config.name,
             out.batches, out.rows)
    return out
