"""The sink contract, as small as Kafka Connect's ``SinkTask.put()`` / ``flush()``.

The runtime hands a sink contiguous records of one topic-partition, in offset order. ``put`` may
write them out whenever it likes; it returns the next offset that is durably written (everything
before it is safe to commit), or None when nothing new is durable. ``flush`` writes whatever is
buffered and returns the same.

A routing transform (RegexRouter, TimestampRouter) changes a record's topic, as ``record.topic()``
changes in Kafka Connect: the runtime passes the routed topic of each record along, the sink writes
the record where that topic goes, and offsets stay those of the source topic-partition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import methodcaller
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

from integrations.errors import HeadraceError

if TYPE_CHECKING:
    from integrations.sinks.fencing import Committer

_offset = methodcaller("offset")


class SinkWriteError(HeadraceError):
    """Writing a batch failed; the message names the connector, topic, partition, offsets, target and cause."""


def message_offsets(messages: list) -> np.ndarray:
    """The offsets of one partition's messages, as int64; a consecutive run (the usual case) is read
    from its ends alone, without a call per message."""
    n = len(messages)
    if not n:
        return np.empty(0, np.int64)
    first = messages[0].offset()
    if messages[-1].offset() - first == n - 1:  # offsets strictly increase within a partition
        return np.arange(first, first + n, dtype=np.int64)
    return np.fromiter(map(_offset, messages), dtype=np.int64, count=n)


@dataclass(frozen=True)
class TopicPartitionRange:
    """Offsets ``[start, end)`` of one topic-partition that a run reads."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


@dataclass
class SinkStats:
    """What a sink wrote: files (or tables), rows and bytes."""

    rows: int = 0
    bytes: int = 0
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decoded:
    """What a ``put_messages`` decode callback returns for a list of messages (transforms applied).

    ``kept`` are the positions (ascending) of the messages that survived the transforms (Filter drops
    the others); ``tombstone[i]`` says whether ``kept[i]`` is still a tombstone; ``rows`` holds the
    values of the kept non-tombstone messages, in order (None when there are none). ``topics`` is the
    routed topic of each kept message (a string array), or None when every one keeps its source topic.
    ``keys`` (only for a sink with ``wants_keys``) is the key of each kept message as the key
    converter decoded it and the transforms left it: a struct key's fields are columns, a primitive
    key is one ``__value__`` column.
    """

    rows: pa.Table | None
    kept: np.ndarray
    tombstone: np.ndarray
    topics: pa.Array | None = None
    keys: pa.Table | None = None
    nulls: int | None = None  # messages of the decoded list with a null value (None: not counted)

    @property
    def live(self) -> np.ndarray:
        """Positions of the kept messages that have a value (one per row of ``rows``)."""
        return self.kept[~self.tombstone] if self.tombstone.any() else self.kept

    @property
    def live_topics(self) -> pa.Array | None:
        """The routed topic of each row of ``rows`` (None when nothing was routed)."""
        if self.topics is None or not self.tombstone.any():
            return self.topics
        return self.topics.filter(pa.array(~self.tombstone))


class Sink(ABC):
    """A sink connector's task."""

    stats: SinkStats

    @abstractmethod
    def put(self, topic: str, partition: int, records: pa.Table, offsets: pa.Array,
            routed: pa.Array | None = None) -> int | None:
        """Accept decoded records with their Kafka offsets; return the next durable offset, if any.

        ``routed`` is each record's routed topic (None: all keep ``topic``)."""

    @abstractmethod
    def flush(self, topic: str, partition: int) -> int | None:
        """Write everything buffered for a topic-partition; return the next durable offset, if any."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources."""

    #: When True the runtime calls ``put_messages`` with the raw messages (keys, timestamps and
    #: tombstones included) instead of ``put`` with decoded values.
    wants_messages: bool = False
    #: With ``wants_messages``: when True, ``decode`` also returns each kept message's key (``Decoded.keys``).
    wants_keys: bool = False

    def put_messages(
        self, topic: str, partition: int, messages: list, decode: Callable[[list], Decoded]
    ) -> tuple[int, int, int | None]:
        """Accept raw confluent-kafka messages in offset order; ``decode`` converts and transforms them.

        ``decode(messages)`` may drop records (Filter); the next durable offset still moves past the
        dropped ones. Returns ``(rows, tombstones, next durable offset or None)``.
        """
        raise NotImplementedError

    #: How publishes are fenced against other runs of the connector: "group" (the runtime commits the
    #: consumer group's offsets through a fenced transactional producer), "target" (the sink fences its
    #: own offsets in the target's transactions), or None (a private run, e.g. a window rebuild's staging).
    fence: Literal["group", "target"] | None = None

    def bind(self, committer: Committer) -> None:  # noqa: B027 (optional hook)
        """Receive the run's committer, for sinks that commit while they publish (per file)."""

    def read_until(self, topic: str, partition: int) -> int | None:
        """An offset the run must read up to before ``flush`` (a segment another run already published
        and this run must complete), or None."""
        return None

    def remove_leftovers(self, before: float) -> list[str]:
        """Remove temporary output of killed runs older than ``before`` (epoch seconds); return what went."""
        return []

    def stored_offsets(self, topics: list[str]) -> dict[tuple[str, int], int] | None:
        """Offsets the sink keeps with its data (exactly-once targets): ``{(topic, partition): next}``.

        When not None, the runtime starts from these instead of the consumer group's offsets.
        """
        return None


def routes(transforms: Iterable[object]) -> bool:
    """Whether transform configs can change the topic (a RegexRouter or TimestampRouter among them)."""
    from integrations.transforms.config import RegexRouterConfig, TimestampRouterConfig

    return any(isinstance(t, (RegexRouterConfig, TimestampRouterConfig)) for t in transforms)
