"""One writer per source connector: its transactional producer fences older runs (KIP-618's design).

Every run of a source connector opens a transactional producer whose ``transactional.id`` is derived
from the connector (and task): ``headrace-source-<connector>[-<task>]``. ``init_transactions`` at the
start of a run bumps the producer epoch on the broker: a transaction an older run (killed, stalled,
or still running elsewhere) left open is aborted, and every later transactional call of that older
run fails with ``PRODUCER_FENCED``. The run reads its stored offsets only after that, so it starts
from the last committed offset and no other run can commit after it without fencing it first: the
offsets it read stay the current ones until it writes (compare-and-set by fencing).

- ``exactly_once: true``: the same producer sends a batch's records, its dead-lettered records and
  its offset record in one transaction; the commit makes them visible to ``read_committed``
  consumers together, an abort (or a kill, resolved by the next run's ``init_transactions``)
  hides them all.
- at-least-once (default): records go through a plain idempotent producer (no transaction per
  record batch); only the offset record goes through the transactional producer, in a small
  transaction of its own. A stale run is fenced at its next offset write and stops, so the records
  it produced beyond the stored offset are at most one batch (duplicates of what the newer run
  produces again).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from integrations.errors import HeadraceError, KafkaUnavailable
from integrations.offsets import OffsetStore
from integrations.runtime.errors import TransientError

log = logging.getLogger("headrace.source")

#: errors that mean a newer instance with the same transactional.id took over
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def transactional_id(connector: str, task: int | None = None) -> str:
    """The ``transactional.id`` of a source connector's runs (one per task when the connector has tasks)."""
    return f"headrace-source-{connector}" + (f"-{task}" if task is not None else "")


class SourceFenced(HeadraceError):
    """Another run of the same source connector (or task) started and fenced this one."""


def is_fenced(e: BaseException) -> bool:
    """True for a ``KafkaException`` saying a newer producer with our ``transactional.id`` exists."""
    err = e.args[0] if isinstance(e, KafkaException) and e.args else None
    if not isinstance(err, KafkaError):
        return False
    # a commit fenced mid-flight can surface as a fatal error of another code ("Failed to end
    # transaction: … fenced by a newer instance"): the producer is fenced all the same
    return err.code() in _FENCED or (err.fatal() and "fenced" in err.str().lower())


class Transactions:
    """A run's transactional producer: fencing at start, then one transaction per batch."""

    def __init__(self, store: OffsetStore, connector: str, producer: Any, exactly_once: bool,
                 task: int | None = None, timeout: float = 60.0) -> None:
        self.store = store
        self.connector = connector
        self.producer = producer
        self.exactly_once = exactly_once
        self.tid = transactional_id(connector, task)
        self.timeout = timeout
        self.open = False

    def fenced_error(self, e: BaseException) -> SourceFenced:
        """The one-line error of a run that ``e`` (a fenced Kafka error) says another run fenced."""
        return self._fenced(e)

    def _fenced(self, e: BaseException) -> SourceFenced:
        lost = ("its open transaction (records and offset) was aborted" if self.exactly_once else
                "its last batch's offset was not stored; records it produced after the stored offset "
                "(at most one batch) are produced again by the other run")
        return SourceFenced(f"another run of {self.connector} started (transactional.id {self.tid}) and "
                            f"fenced this one: {lost}; this run stopped")

    def init(self) -> None:
        """Fence every older run of the connector (aborting a transaction one left open)."""
        try:
            self.producer.init_transactions(self.timeout)
        except KafkaException as e:
            if is_fenced(e):
                raise self._fenced(e) from e
            raise KafkaUnavailable(f"connector {self.connector}: Kafka did not initialise the transactions of "
                                   f"{self.tid} ({e.args[0].str()}); check that the transaction state log "
                                   "is available (and, with ACLs, Write on transactional ids headrace-source-*)"
                                   ) from e

    def begin(self) -> None:
        """Open the batch's transaction (no-op when one is open)."""
        if not self.open:
            try:
                self.producer.begin_transaction()
            except KafkaException as e:
                if is_fenced(e):
                    raise self._fenced(e) from e
                raise
            self.open = True

    def commit(self, offsets: dict[str, dict[str, Any] | None]) -> None:
        """Add ``offsets`` to the open transaction (opening one if needed) and commit it."""
        self.begin()
        if offsets:
            self.store.produce_into(self.producer, self.connector, offsets)
        for attempt in range(1, 4):
            try:
                self.producer.commit_transaction(self.timeout)
                self.open = False
                return
            except KafkaException as e:
                err = e.args[0]
                if is_fenced(e):
                    self.open = False
                    raise self._fenced(e) from e
                if err.fatal():
                    self.open = False
                    raise HeadraceError(f"connector {self.connector}: the transactional producer failed for "
                                        f"good ({err.str()}); nothing of the batch is visible") from e
                if err.txn_requires_abort() or attempt == 3:
                    self.abort()
                    raise TransientError(f"connector {self.connector}: the batch's transaction was aborted "
                                         f"({err.str()}); nothing of it is visible") from e
                log.warning("connector %s: committing the batch's transaction failed (%s); retrying",
                            self.connector, err.str())

    def abort(self) -> None:
        """Abort the open transaction, if any (its records and offsets are never visible)."""
        if not self.open:
            return
        self.open = False
        try:
            self.producer.abort_transaction(self.timeout)
        except KafkaException as e:
            if is_fenced(e):
                raise self._fenced(e) from e
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Abort what is open and let the producer go (its buffered messages with it)."""
        try:
            self.abort()
        except (KafkaException, HeadraceError) as e:  # the run already failed; say why the abort did too
            log.warning("connector %s: aborting the open transaction failed: %s", self.connector, e)
        self.producer.flush(timeout)
