"""Source offsets in a compacted Kafka topic, keyed like Kafka Connect's: ``["<connector>", {partition}]``.

An offset is written only after every record of its batch is acknowledged, so a crash between the
two re-reads the batch (at-least-once). A null value (tombstone) resets the partition.

Runs write offsets through their connector's transactional producer (see
``integrations.runtime.source_fence``): :meth:`OffsetStore.produce_into` adds the offset records to
the run's open transaction, and reads are ``read_committed``, so an aborted or fenced run's offsets
are never read. Offsets never move backwards: :func:`offset_regressed` tells a backwards move.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from integrations.errors import DeliveryError, HeadraceError
from integrations.kafka.cluster import KafkaSettings

DEFAULT_TOPIC = os.environ.get("HEADRACE_OFFSETS_TOPIC", "headrace-offsets")
#: how long a read waits for a transaction marker when a partition ends below its high watermark
SETTLE_S = 2.0


def offset_key(connector: str, partition: dict[str, Any]) -> bytes:
    """The record key for a source partition, byte-compatible with Kafka Connect's offset keys."""
    return orjson.dumps([connector, partition], option=orjson.OPT_SORT_KEYS)


class OffsetRegression(HeadraceError):
    """A source offset would move backwards (below what the run read at its start or stored last)."""


def _position(offset: dict[str, Any]) -> tuple[Any, Any]:
    ts = offset.get("timestamp")
    return (None if ts is None else dt.datetime.fromisoformat(ts)), offset.get("incrementing")


def offset_regressed(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """True when ``after`` is behind ``before`` for the same source partition.

    File offsets compare their ``record`` while the file's identity (size, mtime or hash) is the same
    (a changed file starts again at record 0); SQL offsets compare ``(timestamp, incrementing)`` in
    order. Offsets that cannot be compared (missing fields, other types) do not count as behind."""
    if not before or not after:
        return False
    if any(before.get(k) != after.get(k) for k in ("size", "mtime_ns", "blake2b")):
        return False
    try:
        if "record" in before and "record" in after:
            return int(after["record"]) < int(before["record"])
        (bts, binc), (ats, ainc) = _position(before), _position(after)
        if bts is not None and ats is not None and ats != bts:
            return ats < bts
        return binc is not None and ainc is not None and ainc < binc
    except (TypeError, ValueError):
        return False


class OffsetStore:
    """Reads and writes source offsets in a compacted topic."""

    def __init__(self, kafka: KafkaSettings, topic: str = DEFAULT_TOPIC) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer: Any = None  # kept: a fresh idempotent producer needs ~0.5 s before its first send

    def ensure(self) -> None:
        """Create the compacted offsets topic if missing."""
        self.kafka.ensure_topic(
            self.topic, partitions=1, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        )

    def produce_into(self, producer: Any, connector: str, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Queue offset records on ``producer`` (a run's transactional producer, inside its open
        transaction): they become visible with the transaction's commit, never without it."""
        for part_json, value in offsets.items():
            producer.produce(self.topic, key=offset_key(connector, orjson.loads(part_json)),
                             value=None if value is None else orjson.dumps(value))

    def _get_producer(self) -> Any:
        if self._producer is None:
            self._producer = self.kafka.producer(**{"delivery.report.only.error": False, "linger.ms": 0})
        return self._producer

    def read(self, connector: str, timeout: float = 15.0) -> dict[str, dict[str, Any]]:
        """Latest offset per source partition of one connector: ``{json(partition): offset}``."""
        return {part: value for (name, part), value in self.read_all(timeout).items() if name == connector}

    def read_all(self, timeout: float = 15.0) -> dict[tuple[str, str], dict[str, Any]]:
        """Every live offset in the topic, ``{(connector, partition as sorted JSON): offset}``."""
        parts = self.kafka.partitions(self.topic)
        if not parts:
            return {}
        # fetch.wait.max.ms: at the end of the log the broker answers at once (it waits 500 ms by default)
        c = self.kafka.consumer(group_id="headrace-offsets-reader",
                                **{"enable.partition.eof": True, "fetch.wait.max.ms": 10})
        out: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            marks = self.kafka.watermarks(self.topic)
            highs = {p: high for p, (_low, high) in marks.items() if high > 0}
            if not highs:
                return {}
            # from the log start offset itself: OFFSET_BEGINNING cost ~0.5 s more (measured, 1 partition)
            c.assign([TopicPartition(self.topic, p, marks[p][0]) for p in highs])
            done: set[int] = set()
            short: dict[int, float] = {}  # partition -> when it first ended below its high watermark
            deadline = time.monotonic() + timeout
            while len(done) < len(highs):
                now = time.monotonic()
                if now > deadline:
                    raise DeliveryError(f"timed out after {timeout:.0f}s reading offsets topic {self.topic!r}")
                done.update(p for p, since in short.items() if now - since > SETTLE_S)
                # short waits: consume() waits its full timeout whenever fewer messages are ready
                msgs = c.consume(num_messages=10_000, timeout=0.01)
                for m in msgs:
                    if m.error():
                        if m.error().code() == -191:  # _PARTITION_EOF
                            # read_committed ends at the last stable offset: right after a commit (or an
                            # abort by a new fence) its marker may not be written yet, so an end below the
                            # high watermark is waited on briefly; a transaction still open after that is
                            # another run's, not committed, and not ours to wait for
                            if m.offset() >= highs[m.partition()]:
                                done.add(m.partition())
                            else:
                                short.setdefault(m.partition(), now)
                            continue
                        raise DeliveryError(f"reading offsets: {m.error()}")
                    name, part = orjson.loads(m.key())
                    key = (name, orjson.dumps(part, option=orjson.OPT_SORT_KEYS).decode())
                    if m.value() is None:
                        out.pop(key, None)
                    else:
                        out[key] = orjson.loads(m.value())
                    if m.offset() + 1 >= highs[m.partition()]:
                        done.add(m.partition())
        finally:
            c.close()
        return out

    def write(self, connector: str, offsets: dict[str, dict[str, Any] | None], timeout: float = 60.0) -> None:
        """Store offsets (``{json(partition): offset or None}``) and wait until Kafka acknowledges them."""
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        p = self._get_producer()
        for part_json, value in offsets.items():
            p.produce(
                self.topic,
                key=offset_key(connector, orjson.loads(part_json)),
                value=None if value is None else orjson.dumps(value),
                on_delivery=on_delivery,
            )
        left = p.flush(timeout)
        if left or errors:
            raise DeliveryError(f"offsets for {connector} not acknowledged: {errors or f'{left} pending'}")

    def reset(self, connector: str) -> list[str]:
        """Forget every stored offset of a connector (tombstones); return the partitions reset."""
        current = self.read(connector)
        if current:
            self.write(connector, dict.fromkeys(current))
        return list(current)
