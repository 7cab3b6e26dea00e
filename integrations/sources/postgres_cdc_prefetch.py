"""Read the slot's pending changes one call ahead of the connector, so decoding overlaps the rest.

A peek (``pg_logical_slot_peek_changes``) always starts at the slot's confirmed position, and the slot
moves only once a batch is produced and its offset stored: so the next batch cannot be decoded while
the current one is being converted and produced. When much WAL is pending (``read_ahead_wal_bytes``,
16 MiB by default; a small micro-batch keeps its single in-line peek), :class:`ChangeReader` instead
reads a temporary copy of the slot (``pg_copy_logical_replication_slot``, dropped with its session)
with ``pg_logical_slot_get_changes`` in a thread of its own: each call returns the next batch of the
same stream (the same whole transactions a peek would give) while the server decodes the one after
it, and parses it (Arrow's JSON reader and regex replace run in C++, off the GIL). The connector's own
slot still moves only after each offset is stored, so a crash at any point replays from there as
before; the copy dies with the session.

Without a free replication slot (``max_replication_slots``), or without the privilege to copy one, the
reader falls back to peeking the connector's slot in line, and says so once in the log.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pyarrow as pa

from integrations.sources import postgres_cdc_pg as pg
from integrations.sources.postgres_cdc_decode import parse_changes
from integrations.sources.postgres_cdc_pg import TableInfo

log = logging.getLogger("headrace.source.cdc")


class ChangeReader:
    """Batches of changes for one run of a stream, parsed (:func:`parse_changes`): :meth:`next` returns
    the next batch and the bound it was read with; with read-ahead on, the batch after it is already
    being decoded and parsed."""

    def __init__(self, conn: psycopg.Connection, url: str, slot: str, tables: list[TableInfo], nchanges: int,
                 read_ahead: bool) -> None:
        self._conn, self._slot, self._tables, self._n = conn, slot, tables, nchanges
        self._ahead: Future | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._copy_conn: psycopg.Connection | None = None
        self._copy = ""
        if read_ahead:
            self._start(url)

    def _start(self, url: str) -> None:
        """Open the reading session and copy the slot; on failure stay in line."""
        copy = f"{self._slot[:40]}_ra_{uuid.uuid4().hex[:8]}"
        try:
            conn = pg.connect(url)
        except psycopg.Error as e:  # the main session works: reading in line still can
            log.info("slot %s: no read-ahead session (%s); reading in line", self._slot, str(e).splitlines()[0])
            return
        try:
            pg.copy_slot_temporary(conn, self._slot, copy)
        except psycopg.Error as e:
            conn.close()
            log.info("slot %s: no temporary copy for read-ahead (%s); reading in line", self._slot,
                     str(e).splitlines()[0])
            return
        self._copy_conn, self._copy = conn, copy
        log.debug("slot %s: reading ahead from its temporary copy %s", self._slot, copy)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="headrace-cdc-read")

    def _fetch(self, upto: int) -> tuple[pa.Table, int]:
        assert self._copy_conn is not None
        return parse_changes(pg.peek(self._copy_conn, self._copy, upto, self._n, self._tables, consume=True)), upto

    def next(self, upto: int) -> tuple[pa.Table, int]:
        """The next batch up to ``upto`` (about ``nchanges`` rows, whole transactions) and the bound it was
        read with (a batch read ahead keeps the bound of its time, never above ``upto``)."""
        if self._pool is None:
            return parse_changes(pg.peek(self._conn, self._slot, upto, self._n, self._tables)), upto
        fut, self._ahead = self._ahead, None
        if fut is None:
            fut = self._pool.submit(self._fetch, upto)
        rows, used = fut.result()  # read ahead under an earlier bound: still the stream's next batch
        if rows.num_rows >= self._n:  # stopped at nchanges, more is pending: read on while this one is produced
            self._ahead = self._pool.submit(self._fetch, upto)
        return rows, used

    def close(self) -> None:
        """Stop reading ahead: cancel a call in flight, end the session (its temporary slot goes with it)."""
        pool, conn, self._pool, self._copy_conn = self._pool, self._copy_conn, None, None
        if pool is None or conn is None:
            return
        if self._ahead is not None and not self._ahead.done():
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)
        pool.shutdown(wait=True, cancel_futures=True)
        self._ahead = None
        try:
            conn.close()
        except psycopg.Error:
            log.debug("slot %s: closing the read-ahead session failed", self._slot, exc_info=True)

