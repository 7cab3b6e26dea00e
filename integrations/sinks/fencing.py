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
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from typing import Protocol

import pyarrow.fs as pafs
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from integrations.errors import HeadraceError
from integrations.kafka.cluster import KafkaSettings

#: temporary names of the Parquet sink: ``.<file name>.<fence tag>-<uuid>.tmp`` (untagged before fencing)
TMP_RE = re.compile(r"\.(?P<name>[A-Za-z0-9._-]+\+\d+\+\d{20}\.parquet)\.(?:(?P<tag>[0-9a-f]{8})-)?[0-9a-f]{32}\.tmp")
#: librdkafka's and the broker's codes for "a newer producer with this transactional.id exists"
_FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


class SinkFenced(HeadraceError):
    """Another run of the same connector (or task) took over; this run published nothing more."""


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
                 timeout: float = 30.0) -> None:
        self.connector = connector
        self.consumer = consumer
        self.timeout = timeout
        self.fence_id = fence_id(connector, task)
        self.expected: dict[tuple[str, int], int | None] = {}
        tx_timeout = 60_000
        self.producer = kafka.producer(**{
            "transactional.id": self.fence_id, "transaction.timeout.ms": tx_timeout,
            "message.timeout.ms": min(kafka.message_timeout_ms, tx_timeout), "linger.ms": 0,
            # right after a commit the coordinator answers CONCURRENT_TRANSACTIONS while it writes the
            # markers; librdkafka retries after retry.backoff.ms (100 ms by default: 100 ms per commit)
            "retry.backoff.ms": 5})
        self.producer.init_transactions(timeout)  # fences every older instance of this connector (task)
        self.acquired = time.time()  # wall clock: compared with temporary files' mtimes

    def start(self, committed: dict[tuple[str, int], int | None]) -> None:
        """Record the offsets the run starts from (read after the fence was taken)."""
        self.expected = dict(committed)

    def _current(self, topic: str, partition: int) -> int | None:
        got = self.consumer.committed([TopicPartition(topic, partition)], timeout=self.timeout)[0]
        return got.offset if got.offset >= 0 else None

    def check(self, topic: str, partition: int) -> None:
        """Raise :class:`SinkFenced` unless the group's offset is still the one this run holds."""
        key = (topic, partition)
        want = self.expected.get(key)
        now = self._current(topic, partition)
        if now != want:
            raise SinkFenced(fenced_message(self.connector, topic, partition, want, now))

    def commit(self, topic: str, partition: int, offset: int) -> None:
        """Commit ``offset`` in a transaction, after checking nobody moved the group's offset; refuse
        to move it backwards."""
        key = (topic, partition)
        want = self.expected.get(key)
        if want is not None and offset <= want:
            if offset < want:
                raise OffsetsBackwards(backwards_message(self.connector, topic, partition, want, offset))
            return
        self.check(topic, partition)
        p = self.producer
        try:
            p.begin_transaction()
            p.send_offsets_to_transaction([TopicPartition(topic, partition, offset)],
                                          self.consumer.consumer_group_metadata(), self.timeout)
            p.commit_transaction(self.timeout)
        except KafkaException as e:
            err = e.args[0]
            if err.code() in _FENCED_CODES:
                raise SinkFenced(fenced_message(
                    self.connector, topic, partition, want, self._current(topic, partition),
                    f"a newer run fenced this one before it committed {offset}")) from None
            if err.txn_requires_abort():
                p.abort_transaction(self.timeout)
            raise
        self.expected[key] = offset

    def close(self) -> None:
        """Drop the producer (it holds no records)."""
        self.producer = None
