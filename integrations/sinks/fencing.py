"""One writer per sink connector (or task): fenced offset commits, never backwards.

A sink run publishes output and then its offsets. Two runs of one connector (the CLI beside Dagster,
a retried step that wakes up, two deployments) must never both publish, so every publish is fenced:

- Parquet (offsets in the consumer group): :class:`FencedCommitter`. A transactional producer with a
  ``transactional.id`` derived from the connector (and task) is initialised when the run starts;
  ``init_transactions`` fences every older instance (Kafka bumps the producer epoch). Offsets are
  committed with ``send_offsets_to_transaction`` in a transaction, which a fenced producer cannot
  commit. Before a file is published, :meth:`FencedCommitter.check` verifies the group's committed
  offset is still the one this run started from (or last committed itself).
- Tables (offsets in the target database): the offset update in the target's transaction is
  conditional on the offset the run started from (see the table backends); :class:`GroupCommitter`
  only mirrors progress into the consumer group for monitoring.

Offsets never move backwards: a commit below the offset the run holds is refused with
:class:`OffsetsBackwards`. A fenced run fails with :class:`SinkFenced`, one line naming the connector,
the topic-partition and both offsets. See docs/fencing.md.

Every Kafka call of the fence (offset lookups, ``init_transactions``, begin/commit/abort, offsets sent
to a transaction) rides out a broker restart or a coordinator move: transient errors are retried with
backoff for at least ``timeout`` seconds (longer when ``errors_retry_timeout`` says so); a transaction
that must be aborted is aborted and redone after the offset check. Fenced and fatal errors are never
retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

import pyarrow.fs as pafs
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from integrations.errors import HeadraceError
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime import stopping
from integrations.runtime.errors import TransientError

log = logging.getLogger("headrace.sink")

#: temporary names of the Parquet sink: ``.<file name>.<fence tag>-<uuid>.tmp`` (untagged before fencing)
TMP_RE = re.compile(r"\.(?P<name>[A-Za-z0-9._-]+\+\d+\+\d{20}\.parquet)\.(?:(?P<tag>[0-9a-f]{8})-)?[0-9a-f]{32}\.tmp")
#: librdkafka's and the broker's codes for "a newer producer with this transactional.id exists"
_FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
#: a coordinator moving or loading, a broker unreachable, timeouts: retried (librdkafka does not mark
#: all of them retriable, e.g. NOT_COORDINATOR from a committed-offset lookup)
_TRANSIENT_CODES = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION, KafkaError.CONCURRENT_TRANSACTIONS, KafkaError._WAIT_COORD})


def _fenced(err: KafkaError) -> bool:
    return err.code() in _FENCED_CODES


def _retriable(err: KafkaError) -> bool:
    """Worth calling again as is (not fenced, not fatal, no abort needed)."""
    if _fenced(err) or err.fatal() or err.txn_requires_abort():
        return False
    return err.code() in _TRANSIENT_CODES or err.retriable()


class SinkFenced(HeadraceError):
    """Another run of the same connector (or task) took over; this run published nothing more."""


class _Stuck(TransientError):
    """A producer call that did not return; its producer was given up."""


class OffsetsBackwards(HeadraceError):
    """A commit would move a connector's offsets below what is already committed; refused."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines of driver messages included) made one space."""
    return re.sub(r"\s+", " ", str(text)).strip()


def fence_id(connector: str, task: int | str | None = None) -> str:
    """The fence key of a sink connector (and task): also its transactional.id."""
    return f"headrace-sink-{connector}" + (f"-task-{task}" if task is not None else "")


def fence_tag(connector: str, task: int | str | None = None) -> str:
    """8 hex characters naming a connector's (task's) fence in its temporary file names."""
    return hashlib.sha1(fence_id(connector, task).encode()).hexdigest()[:8]


def remove_stale_tmp(fs: pafs.FileSystem, bases: list[str], tag: str, routing: bool, before: float) -> list[str]:
    """Delete the temporary files of fence ``tag`` (``.<name>.<tag>-<uuid>.tmp``, and untagged ones of
    older versions unless ``routing``, where a folder may be shared) under ``bases`` last modified
    before ``before``: files of killed runs. Returns the paths deleted.

    Called right after the run took the fence, so every other run of the connector is already fenced
    and can never publish; the age rule only spares a fenced run that is still writing a confusing
    "file not found". Hidden folders (a window rebuild's staging) are not entered."""
    removed = []
    for base in bases:
        for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
            m = TMP_RE.fullmatch(info.base_name)
            if m is None or info.type != pafs.FileType.File:
                continue
            folders = info.path[len(base):].split("/")[1:-1]
            if any(f.startswith(".") for f in folders) or m["tag"] not in (tag, None):
                continue
            if (m["tag"] is None and routing) or info.mtime is None or info.mtime.timestamp() >= before:
                continue
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(info.path)
                removed.append(info.path)
    return removed


def fenced_message(connector: str, topic: str, partition: int, expected: int | None, current: int | None,
                   tail: str = "nothing written") -> str:
    """The one line a stale run fails with."""
    def show(o: int | None) -> str:
        return "none" if o is None else str(o)
    if expected is not None and current is not None and current < expected:
        return (f"offsets of {connector} for {topic}[{partition}] moved back from {expected} to {current} "
                f"(reset by hand?); refusing to write over them; {tail}")
    if current == expected:  # fenced at commit by a newer run that has not committed yet
        return (f"another run of {connector} took over {topic}[{partition}] at offset {show(expected)} (it fenced "
                f"this run's producer); {tail}")
    return (f"another run of {connector} moved its offsets for {topic}[{partition}] from {show(expected)} to "
            f"{show(current)}; {tail}")


def backwards_message(connector: str, topic: str, partition: int, current: int, offset: int) -> str:
    """The one line a refused backwards commit fails with."""
    return (f"refusing to move the offsets of {connector} for {topic}[{partition}] backwards from {current} to "
            f"{offset}; committed offsets never move back")


class Committer(Protocol):
    """What the sink runtime commits offsets through."""

    def check(self, topic: str, partition: int) -> None:
        """Raise :class:`SinkFenced` unless this run still holds ``topic[partition]`` (before a publish)."""

    def probe(self, topic: str, partition: int) -> None:
        """Raise :class:`SinkFenced` when a newer run took over, even one that moved no offset yet."""

    def commit(self, topic: str, partition: int, offset: int) -> None:
        """Store ``offset`` as the next offset of ``topic[partition]``."""

    def close(self) -> None:
        """Release clients."""


class GroupCommitter:
    """Plain consumer-group commits: informational progress of sinks that keep offsets in their target
    (fenced there), and private groups (window rebuild staging). Never moves an offset it set back."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self._done: dict[tuple[str, int], int] = {}

    def check(self, topic: str, partition: int) -> None:
        """Nothing to check: the target fences these sinks."""

    def probe(self, topic: str, partition: int) -> None:
        """Nothing to probe: the target fences these sinks."""

    def commit(self, topic: str, partition: int, offset: int) -> None:
        """Commit synchronously, skipping repeats and anything below what this run committed."""
        key = (topic, partition)
        if self._done.get(key, -1) >= offset:
            return
        self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        self._done[key] = offset

    def close(self) -> None:
        """Nothing to release (the runtime closes the consumer)."""


class FencedCommitter:
    """Fenced commits of consumer-group offsets through a transactional producer (one per connector/task).

    ``expected`` holds the committed offset per topic-partition when the run planned (read after the
    fence was taken); each successful commit moves it on. A commit or check that finds the group's
    offset elsewhere, or a producer fenced by a newer run, raises :class:`SinkFenced`."""

    def __init__(self, kafka: KafkaSettings, consumer, connector: str, task: int | str | None = None,
                 timeout: float = 30.0, retry_timeout: float = 0.0, retry_delay_max: float = 5.0) -> None:
        self.connector = connector
        self.consumer = consumer
        self.timeout = timeout
        #: how long transient errors of one fence call are retried (-1: until they pass or a stop)
        self.retry_timeout = -1.0 if retry_timeout < 0 else max(timeout, retry_timeout)
        self.retry_delay_max = retry_delay_max
        self.fence_id = fence_id(connector, task)
        self.expected: dict[tuple[str, int], int | None] = {}
        self._kafka = kafka
        self.producer = None
        self._take()  # fences every older instance of this connector (task)
        self.acquired = time.time()  # wall clock: compared with temporary files' mtimes

    def _take(self) -> None:
        """A new transactional producer and its ``init_transactions`` (retriable errors: call it again)."""
        tx_timeout = 60_000
        kafka = self._kafka
        p = kafka.producer(**{
            "transactional.id": self.fence_id, "transaction.timeout.ms": tx_timeout,
            "message.timeout.ms": min(kafka.message_timeout_ms, tx_timeout), "linger.ms": 0,
            # right after a commit the coordinator answers CONCURRENT_TRANSACTIONS while it writes the
            # markers; librdkafka retries after retry.backoff.ms (100 ms by default: 100 ms per commit)
            "retry.backoff.ms": 5})
        what = "taking the fence (init_transactions)"
        self._retry(lambda: self._call(lambda: p.init_transactions(self.timeout), what), what)
        self.producer = p

    def start(self, committed: dict[tuple[str, int], int | None]) -> None:
        """Record the offsets the run starts from (read after the fence was taken)."""
        self.expected = dict(committed)

    # -- retries -----------------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        """Sleep between attempts; a stop request ends the wait (and the run) at once."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not stopping.requested():
            time.sleep(min(left, 0.1))
        stopping.check(f"connector {self.connector}")

    def _backoff(self, started: float, attempt: int, delay: float, what: str, e: KafkaException) -> float:
        """Wait before the next attempt, or raise :class:`TransientError` once the retry time is spent."""
        err = e.args[0]
        if self.retry_timeout >= 0 and time.monotonic() - started + delay > self.retry_timeout:
            raise TransientError(
                f"connector {self.connector}: {what} still failing after {attempt} attempts over "
                f"{self.retry_timeout:g}s: {err.name()}: {one_line(err.str())}") from e
        log.warning("connector %s: %s failed (%s: %s); retry %d in %.1fs", self.connector, what, err.name(),
                    one_line(err.str()), attempt, delay)
        self._wait(delay)
        return min(delay * 2, self.retry_delay_max)

    def _retry(self, fn: Callable[[], object], what: str):
        """Call ``fn``, calling it again after transient Kafka errors (with backoff, within the retry
        time); fenced, fatal and abort-requiring errors are raised at once, for the caller to handle."""
        started, delay, attempt = time.monotonic(), 0.1, 0
        while True:
            attempt += 1
            try:
                return fn()
            except KafkaException as e:
                if not e.args or not isinstance(e.args[0], KafkaError) or not _retriable(e.args[0]):
                    raise
                delay = self._backoff(started, attempt, delay, what, e)

    def _call(self, fn: Callable[[], object], what: str):
        """Run a transactional producer call in a helper thread and wait ``timeout`` + 30 s for it.

        librdkafka's transactional calls can block past their timeout (seen: ``send_offsets_to_transaction``
        after the transaction coordinator restarted in the middle of a commit). A call that does not
        return is given up with its producer, which is never used again, and the run fails with a
        transient error: the run's retry takes the fence again with a new producer, which fences the
        stuck one, and continues from the committed offsets (adopting what was published)."""
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["result"] = fn()
            except BaseException as e:  # noqa: BLE001 — re-raised in the caller's thread
                box["error"] = e

        t = threading.Thread(target=run, name=f"headrace-fence-{self.connector}", daemon=True)
        t.start()
        t.join(self.timeout + 30)
        if t.is_alive():
            self.producer = None
            raise _Stuck(f"connector {self.connector}: {what} did not return within "
                                 f"{self.timeout + 30:g}s; its producer is given up (the next one fences it)")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("result")

    # -- the fence ---------------------------------------------------------------------------------
    def _current(self, topic: str, partition: int) -> int | None:
        def lookup() -> int | None:
            got = self.consumer.committed([TopicPartition(topic, partition)], timeout=self.timeout)[0]
            if got.error is not None:  # a per-partition error (the coordinator moving) is not an offset
                raise KafkaException(got.error)
            return got.offset if got.offset >= 0 else None
        return self._retry(lookup, f"reading the committed offset of {topic}[{partition}]")

    def check(self, topic: str, partition: int) -> None:
        """Raise :class:`SinkFenced` unless the group's offset is still the one this run holds."""
        key = (topic, partition)
        want = self.expected.get(key)
        now = self._current(topic, partition)
        if now != want:
            raise SinkFenced(fenced_message(self.connector, topic, partition, want, now))

    def probe(self, topic: str, partition: int) -> None:
        """Raise :class:`SinkFenced` when a newer run has fenced this run's producer, even before it
        moved the offsets: a transaction is begun, offsets sent to it (which reaches the coordinator)
        and aborted. Used on error paths only (it costs a transaction's round trips)."""
        p = self.producer
        if p is None:
            return
        want = self.expected.get((topic, partition))
        tps = [TopicPartition(topic, partition, 0 if want is None else want)]
        meta = self.consumer.consumer_group_metadata()
        what = f"checking the fence of {topic}[{partition}]"
        try:
            self._call(p.begin_transaction, what)
            self._call(lambda: p.send_offsets_to_transaction(tps, meta, self.timeout), what)
        except KafkaException as e:
            if e.args and isinstance(e.args[0], KafkaError) and _fenced(e.args[0]):
                raise SinkFenced(fenced_message(self.connector, topic, partition, want,
                                                self._current(topic, partition))) from None
            raise
        finally:
            with contextlib.suppress(KafkaException, TransientError):
                self._call(lambda: p.abort_transaction(self.timeout), what)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        """Commit ``offset`` in a transaction, after checking nobody moved the group's offset; refuse
        to move it backwards. Transient errors are retried; a transaction that must be aborted is
        aborted, the offset checked again and the transaction redone."""
        key = (topic, partition)
        want = self.expected.get(key)
        if want is not None and offset <= want:
            if offset < want:
                raise OffsetsBackwards(backwards_message(self.connector, topic, partition, want, offset))
            return
        self.check(topic, partition)
        tps = [TopicPartition(topic, partition, offset)]
        what = f"committing {topic}[{partition}] offset {offset}"
        meta = self.consumer.consumer_group_metadata()
        started, delay, attempt, renewed = time.monotonic(), 0.1, 0, 0
        while True:
            attempt += 1
            p = self.producer
            try:
                self._retry(lambda: self._call(p.begin_transaction, what), f"{what} (begin_transaction)")  # noqa: B023
                self._retry(lambda: self._call(lambda: p.send_offsets_to_transaction(  # noqa: B023
                    tps, meta, self.timeout), what), f"{what} (send_offsets_to_transaction)")
                # a retriable commit_transaction error (a timeout) leaves the commit going on: call it again
                self._retry(lambda: self._call(lambda: p.commit_transaction(self.timeout), what),  # noqa: B023
                            f"{what} (commit_transaction)")
                break
            except _Stuck:
                # librdkafka lost track of the transaction (seen after a coordinator restart): take the
                # fence again with a new producer, which fences the stuck one and completes or aborts its
                # transaction; then the group's offset is this run's (redo), or the end this commit
                # wanted (the stuck commit landed), or another run's (fenced)
                renewed += 1
                if renewed > 2:
                    raise
                log.warning("connector %s: %s: a producer call hung; taking the fence again", self.connector, what)
                self._take()
                now = self._current(topic, partition)
                if now == offset:
                    break
                if now != want:
                    raise SinkFenced(fenced_message(self.connector, topic, partition, want, now)) from None
            except KafkaException as e:
                err = e.args[0]
                if _fenced(err):
                    raise SinkFenced(fenced_message(
                        self.connector, topic, partition, want, self._current(topic, partition),
                        f"a newer run fenced this one before it committed {offset}")) from None
                if err.fatal() or not err.txn_requires_abort():
                    raise
                # nothing of this transaction was committed: abort it, check the fence again, redo it
                try:
                    self._retry(lambda: self._call(lambda: p.abort_transaction(self.timeout), what),  # noqa: B023
                                f"{what} (abort_transaction)")
                except KafkaException as a:
                    if _fenced(a.args[0]):
                        raise SinkFenced(fenced_message(
                            self.connector, topic, partition, want, self._current(topic, partition),
                            f"a newer run fenced this one before it committed {offset}")) from None
                    raise
                delay = self._backoff(started, attempt, delay, what, e)
                self.check(topic, partition)
        self.expected[key] = offset

    def close(self) -> None:
        """Drop the producer (it holds no records)."""
        self.producer = None
