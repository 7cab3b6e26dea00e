"""Producing a source's converted batches: a tight ``produce``/``poll(0)`` loop that never drops a record,
and a check of every acknowledgement before the batch's offset is stored."""

from __future__ import annotations

from collections import deque
from itertools import repeat
from operator import length_hint
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from integrations.errors import DeliveryError
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.errors import is_transient
from integrations.runtime.progress import Progress

#: Delivery errors that condemn one record rather than the batch (retrying would not help).
_RECORD_ERRORS = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG_SIZE,
                  KafkaError.INVALID_MSG, KafkaError.RECORD_LIST_TOO_LARGE}


class RecordTooLarge(Exception):
    """A record is larger than the producer's ``message.max.bytes``."""


class Producing:
    """Produces converted batches with one idempotent producer (transactional under ``exactly_once``)
    and checks every acknowledgement."""

    def __init__(self, kafka: KafkaSettings, transactional_id: str | None = None, label: str | None = None,
                 expected_rows: int | None = None) -> None:
        self.errors: list[str] = []
        #: rows queued, reported every few seconds (``label`` names the run, e.g. ``source shop``; the first
        #: topic produced to when not given); ``expected_rows`` gives a percentage and the time left
        self.label, self.expected_rows = label, expected_rows
        self.progress: Progress | None = None
        self.rejected: list[tuple[Any, Any]] = []  # (KafkaError, Message) rejected for the record itself
        txn = {} if transactional_id is None else {"transactional.id": transactional_id,
                                                   "transaction.timeout.ms": kafka.message_timeout_ms}
        self.producer = kafka.producer(on_delivery=self._on_delivery, **txn)
        self.max_bytes = int(kafka.client_config.get("message.max.bytes", 1_000_000))
        self.topics_ready: set[str] = set()  # topics checked/created in this run (one admin call each)

    def _on_delivery(self, err: Any, msg: Any) -> None:  # only called for failures
        if err is None:
            return
        if err.code() in _RECORD_ERRORS:
            self.rejected.append((err, msg))
        elif len(self.errors) < 20:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, values: list[Any], keys: list[Any] | None) -> list[tuple[int, Exception]]:
        """Queue every record (blocking on a full queue, never dropping); return records refused at once.

        The loop is ``map`` over the C ``produce`` (no Python bytecode per record); when a record
        raises, its index is what the value iterator has consumed, and the loop resumes after it."""
        self._count(topic, len(values))
        produce = self.producer.produce
        refused: list[tuple[int, Exception]] = []
        n = len(values)
        vals = iter(values)
        calls = map(produce, repeat(topic), vals) if keys is None else map(produce, repeat(topic), vals, keys)
        while True:
            try:
                deque(calls, maxlen=0)
                return refused
            except (BufferError, KafkaException) as e:
                i = n - length_hint(vals) - 1
                try:
                    if not isinstance(e, BufferError):
                        raise e
                    self._produce_blocking(topic, values[i], None if keys is None else keys[i])  # queue full
                except KafkaException as refusal:  # refused at once (e.g. too large): note it, go on
                    if is_transient(refusal) or _fatal(refusal):
                        raise
                    refused.append((i, refusal))

    def send_extra(self, topic: str, values: list[Any], keys: list[Any] | None, headers: list | None,
                   timestamps: list[int | None] | None) -> list[tuple[int, Exception]]:
        """``send`` for records with headers (a list of (name, bytes) pairs or None per record) and/or
        timestamps (epoch ms or None per record), as a transform chain set them."""
        self._count(topic, len(values))
        refused: list[tuple[int, Exception]] = []
        produce, poll = self.producer.produce, self.producer.poll
        for i, value in enumerate(values):
            extra: dict[str, Any] = {}
            if headers is not None and headers[i]:
                extra["headers"] = headers[i]
            if timestamps is not None and timestamps[i] is not None:
                extra["timestamp"] = timestamps[i]
            key = None if keys is None else keys[i]
            try:
                try:
                    produce(topic, value, key, **extra)
                except BufferError:
                    self._produce_blocking(topic, value, key, **extra)
            except KafkaException as e:  # refused at once (e.g. too large): note it, go on with the rest
                if is_transient(e) or _fatal(e):
                    raise
                refused.append((i, e))
            if i & 0x3FFF == 0:
                poll(0)
        return refused

    def _count(self, topic: str, n: int) -> None:
        if self.progress is None:
            self.progress = Progress(self.label or f"source → {topic}", total=self.expected_rows)
        self.progress.add(n)

    def _produce_blocking(self, topic: str, value: Any, key: Any, **extra: Any) -> None:
        """Produce, waiting for room in a full queue instead of dropping."""
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)

    def wait_acked(self, timeout: float) -> None:
        """Wait until every queued record is acknowledged; raise DeliveryError otherwise."""
        left = self.producer.flush(timeout)
        if left or self.errors:
            errors, self.errors = self.errors, []
            raise DeliveryError(f"{left} record(s) not acknowledged within {timeout:.0f}s; errors: {errors[:5]}")


def _fatal(e: KafkaException) -> bool:
    """A fatal producer error (e.g. fenced by a newer instance): no record of it is the record's fault."""
    err = e.args[0] if e.args else None
    return bool(err is not None and hasattr(err, "fatal") and err.fatal())
