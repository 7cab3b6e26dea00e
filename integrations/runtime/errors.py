"""Error handling for both runners, modelled on Kafka Connect's ``errors.*`` settings.

- ``errors_tolerance: none``: the first bad record stops the connector with a ``RecordError`` that
  names it; the runner has stored no offset past it.
- ``errors_tolerance: all``: bad records are skipped, logged when ``errors_log_enable`` is set, and
  written to ``dlq_topic`` (when set) with Kafka Connect's ``__connect.errors.*`` context headers.
- Transient failures (broker or database unreachable) are retried with exponential backoff, capped
  by ``errors_retry_delay_max``, for at most ``errors_retry_timeout`` seconds. A lost database
  connection (``OperationalError``/``InterfaceError``: a reset connection, ``pg_terminate_backend``,
  a server restart) is retried for at least ``connection_retry_timeout`` seconds (default 300), as
  Kafka Connect's JDBC connectors retry their connection; data errors are never retried.
- A stop request (``runtime.stopping``) ends the backoff at once with ``StopRequested``.

Batches are converted whole; only when a batch fails does ``locate_bad`` bisect it to find the
records that fail on their own, so the good path stays vectorised.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from integrations.errors import DeliveryError, HeadraceError, KafkaUnavailable
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime import stopping
from integrations.runtime.error_config import ErrorSettings

log = logging.getLogger("headrace.errors")
T = TypeVar("T")

HEADER = "__connect.errors."
#: Kafka Connect's stage names.
KEY_CONVERTER, VALUE_CONVERTER = "KEY_CONVERTER", "VALUE_CONVERTER"
TRANSFORMATION, TASK_PUT, TASK_POLL, KAFKA_PRODUCE = "TRANSFORMATION", "TASK_PUT", "TASK_POLL", "KAFKA_PRODUCE"
_MAX_DLQ_VALUE = 512 * 1024  # an oversized record's value is truncated to this in the DLQ


class RecordError(HeadraceError):
    """A record could not be processed and ``errors_tolerance`` is ``none``."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class TransientError(HeadraceError):
    """A failure worth retrying (the retry budget ran out when this is raised to the user)."""


@dataclass
class Failure:
    """One bad record and where it came from."""

    stage: str
    exception: BaseException
    class_name: str = ""
    topic: str | None = None
    partition: int | str | None = None
    offset: int | str | None = None
    key: bytes | str | None = None
    value: bytes | str | None = None
    headers: list[tuple[str, bytes]] | None = None

    def describe(self) -> str:
        where = f"topic {self.topic}"
        if self.partition is not None:
            where += f" partition {self.partition}"
        if self.offset is not None:
            where += f" offset {self.offset}"
        return f"{self.stage} failed for the record at {where}: {type(self.exception).__name__}: {self.exception}"


@dataclass
class Rejected:
    """Input a source could not turn into a row (e.g. a malformed CSV line).

    A source attaches these to a batch as ``SourceBatch.rejects`` (an optional attribute); the source
    runner hands them to the error handler (stage ``TASK_POLL``) before producing the batch, so under
    ``errors_tolerance: none`` the batch's offset is not stored.
    """

    value: bytes | str
    error: BaseException
    position: str | None = None  # where in the source, e.g. "line 17"


#: ``OperationalError`` texts that retrying cannot fix (credentials, names, SQL): never reconnected for
_PERMANENT = re.compile(r"authentication|password|permission denied|does not exist|no such (table|column)|"
                        r"syntax error|could not translate host name|unable to open database|readonly database|"
                        r"invalid|unknown database", re.IGNORECASE)


def is_connection_error(e: BaseException) -> bool:
    """A connection-level failure (``ConnectionError``, or a DB-API/SQLAlchemy/ADBC ``OperationalError``
    or ``InterfaceError`` in the cause chain, e.g. a reset connection, ``pg_terminate_backend``, a
    server restarting): worth reconnecting. Data errors, bad credentials and unknown names are not."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen and not isinstance(e, RecordError):
        seen.add(id(e))
        if isinstance(e, ConnectionError):  # OS level, or SqlReader's "session was lost"
            return True
        if {c.__name__ for c in type(e).__mro__} & {"OperationalError", "InterfaceError"}:
            return not _PERMANENT.search(str(e))
        e = e.__cause__ or e.__context__
    return False


def is_transient(e: BaseException) -> bool:
    """Broker or database unreachable, timeouts: worth retrying. Bad data is never transient."""
    if isinstance(e, TransientError | KafkaUnavailable | DeliveryError | ConnectionError | TimeoutError):
        return True
    if isinstance(e, KafkaException):
        err = e.args[0] if e.args else None
        return bool(err is not None and hasattr(err, "retriable") and err.retriable())
    # SQLAlchemy / DB-API / ADBC: connection-level errors are OperationalError or InterfaceError
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"OperationalError", "InterfaceError"}:
        return True
    cause = e.__cause__ or e.__context__
    return cause is not None and cause is not e and is_transient(cause) and not isinstance(e, RecordError)


class ErrorHandler:
    """One connector run's error policy: tolerance, retries, logging and the dead-letter topic."""

    def __init__(self, settings: ErrorSettings, connector: str, kafka: KafkaSettings | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.connector = connector
        self.kafka = kafka
        self.dead_lettered = 0
        self.failed = 0
        self._sleep = sleep
        self._producer: Any = None
        self._dlq_errors: list[str] = []

    @property
    def tolerate(self) -> bool:
        return self.settings.errors_tolerance == "all"

    # -- retries -----------------------------------------------------------------------------------
    def _timeout(self, e: BaseException) -> float:
        """Seconds to keep retrying this failure (-1: forever)."""
        timeout = self.settings.errors_retry_timeout
        conn = getattr(self.settings, "connection_retry_timeout", 0.0)
        if timeout < 0 or not is_connection_error(e):
            return timeout
        return -1 if conn < 0 else max(timeout, conn)

    def _wait(self, seconds: float) -> None:
        """Sleep between attempts; a stop request ends the wait (and the run) at once."""
        if self._sleep is not time.sleep:
            self._sleep(seconds)
        else:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0 and not stopping.requested():
                time.sleep(min(left, 0.1))
        stopping.check(f"connector {self.connector}")

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn``; retry transient failures with exponential backoff within the retry timeout."""
        started = time.monotonic()
        delay, attempt = 0.3, 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as e:
                timeout = self._timeout(e)
                deadline = None if timeout < 0 else started + timeout
                if not is_transient(e) or (deadline is not None and time.monotonic() + delay > deadline):
                    if attempt > 1 and is_transient(e):
                        raise TransientError(
                            f"{what} still failing after {attempt} attempts over {timeout:g}s "
                            f"({'connection_retry_timeout' if is_connection_error(e) else 'errors_retry_timeout'}): "
                            f"{type(e).__name__}: {_first_line(e)}"
                        ) from e
                    raise
                log.warning("connector %s: %s failed (%s: %s); retry %d in %.1fs", self.connector, what,
                            type(e).__name__, _first_line(e), attempt, delay)
                self._wait(delay)
                delay = min(delay * 2, self.settings.errors_retry_delay_max)

    def share_producer(self, producer: Any) -> None:
        """Dead-letter through ``producer`` (a run's transactional producer: dead letters then go in the
        batch's transaction)."""
        if self.settings.dlq_topic and self.tolerate:
            kafka = self.kafka or KafkaSettings.from_env()
            kafka.ensure_topic(self.settings.dlq_topic, 1, self.settings.dlq_topic_replication_factor)
            self._producer = producer

    # -- bad records -------------------------------------------------------------------------------
    def report(self, failures: Sequence[Failure]) -> None:
        """Handle bad records: raise under ``none``; log and dead-letter them under ``all``."""
        if not failures:
            return
        self.failed += len(failures)
        if self.settings.errors_log_enable:
            for f in failures:
                self._log(f)
        if not self.tolerate:
            first = failures[0]
            raise RecordError(
                f"connector {self.connector}: {first.describe()}"
                + (f" (and {len(failures) - 1} more in the batch)" if len(failures) > 1 else "")
                + "; errors_tolerance is 'none', so the connector stopped before this record "
                "(set errors_tolerance: all and dlq_topic to skip and dead-letter bad records)",
                first,
            ) from first.exception
        if self.settings.dlq_topic:
            for f in failures:
                self._dead_letter(f)
        elif not self.settings.errors_log_enable:  # skipped without a trace otherwise: say so, once a batch
            log.warning("connector %s: skipped %d bad record(s) (errors_tolerance: all, no dlq_topic); first: %s",
                        self.connector, len(failures), failures[0].describe())

    def _log(self, f: Failure) -> None:
        msg = f"connector {self.connector}: {f.describe()}"
        if self.settings.errors_log_include_messages:
            msg += f"; key={_short(f.key)!r} value={_short(f.value)!r}"
        log.error(msg)

    def headers(self, f: Failure) -> list[tuple[str, bytes]]:
        """Kafka Connect's context headers for a failed record."""
        tb = "".join(traceback.format_exception(type(f.exception), f.exception, f.exception.__traceback__))
        hs = {
            "topic": f.topic, "partition": f.partition, "offset": f.offset,
            "connector.name": self.connector, "task.id": "0", "stage": f.stage, "class.name": f.class_name,
            "exception.class.name": _qualname(f.exception), "exception.message": str(f.exception),
            "exception.stacktrace": tb,
        }
        return [(HEADER + k, str(v).encode()) for k, v in hs.items() if v is not None]

    def _dead_letter(self, f: Failure) -> None:
        if self._producer is None:
            kafka = self.kafka or KafkaSettings.from_env()
            kafka.ensure_topic(self.settings.dlq_topic, 1, self.settings.dlq_topic_replication_factor)
            self._producer = kafka.producer(on_delivery=self._on_delivery)
        headers = list(f.headers or [])
        if self.settings.dlq_context_headers_enable:
            headers += self.headers(f)
        value = f.value
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        if value is not None and len(value) > _MAX_DLQ_VALUE:
            headers.append(("__headrace.errors.value.original.size", str(len(value)).encode()))
            headers.append(("__headrace.errors.value.truncated", b"true"))
            value = value[:_MAX_DLQ_VALUE]
        key = f.key.encode() if isinstance(f.key, str) else f.key
        if key is not None and len(key) > _MAX_DLQ_VALUE:
            key = key[:_MAX_DLQ_VALUE]
        self.retry(lambda: self._producer.produce(self.settings.dlq_topic, value, key, headers=headers),
                   "producing to the dead-letter topic")
        self._producer.poll(0)
        self.dead_lettered += 1

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None and len(self._dlq_errors) < 20:
            self._dlq_errors.append(str(err))

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every dead-lettered record is acknowledged (call before storing offsets)."""
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        if left or self._dlq_errors:
            raise DeliveryError(f"{left} dead-letter record(s) not acknowledged; errors: {self._dlq_errors[:5]}")


def locate_bad(n: int, attempt: Callable[[list[int]], Any]) -> tuple[dict[int, BaseException], Any]:
    """Bisect ``range(n)``: return ``({index: exception} of records that fail alone, result for the rest)``.

    ``attempt(indices)`` converts those records (raising on failure). When every record passes alone
    but the rest still fails together (types that conflict across records), the longest prefix that
    converts together is kept and the remaining records are added to it by bisection; those that
    cannot be added are bad (the earliest records define the types, as a first schema version would).
    """
    bad: dict[int, BaseException] = {}

    def rec(idx: list[int]) -> None:
        try:
            attempt(idx)
            return
        except Exception as e:  # noqa: BLE001
            if is_transient(e):  # an outage is not a bad record
                raise
            if len(idx) == 1:
                bad[idx[0]] = e
                return
        mid = len(idx) // 2
        rec(idx[:mid])
        rec(idx[mid:])

    rec(list(range(n)))
    good = [i for i in range(n) if i not in bad]
    try:
        return bad, attempt(good)
    except Exception:  # noqa: BLE001 — a conflict only visible in combination
        pass
    # the longest good prefix that converts together, found by binary search
    lo, hi = 0, len(good)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            attempt(good[:mid])
            lo = mid
        except Exception:  # noqa: BLE001
            hi = mid - 1
    kept = good[:lo]

    def grow(chunk: list[int]) -> None:
        nonlocal kept
        if not chunk:  # an empty batch that fails (e.g. a transform on no columns) has no bad record
            return
        try:
            attempt(kept + chunk)
            kept = kept + chunk
            return
        except Exception as e:  # noqa: BLE001
            if is_transient(e):
                raise
            if len(chunk) == 1:
                bad[chunk[0]] = e
                return
        mid = len(chunk) // 2
        grow(chunk[:mid])
        grow(chunk[mid:])

    grow(good[lo:])
    return bad, attempt(kept)


def _first_line(e: BaseException) -> str:
    """The first line of an exception's text (database drivers append SQL and background links)."""
    text = str(e).strip()
    return text.split("\n", 1)[0] if text else ""


def _qualname(e: BaseException) -> str:
    t = type(e)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _short(v: Any, limit: int = 200) -> Any:
    if isinstance(v, bytes | str) and len(v) > limit:
        return v[:limit] + (b"..." if isinstance(v, bytes) else "...")
    return v
