"""``postgres_cdc``: every insert, update, delete and truncate of PostgreSQL tables, as Debezium events.

How a run moves changes (see docs/cdc.md):

* The slot (wal2json) is read with ``pg_logical_slot_peek_changes`` up to the WAL position of the
  run's start and about ``batch_max_events`` rows per call: whole transactions, in commit order. The
  slot does not move while reading. When much WAL is pending, the batches are read one call ahead
  from a temporary copy of the slot instead (``postgres_cdc_prefetch``): the same stream, decoded by
  the server while the previous batch is converted and produced.
* Each produced batch's offset says how far the stream is delivered: ``lsn_commit`` / ``lsn`` (the
  commit and change LSN of the last event delivered, so a large transaction can be split) and
  ``lsn_flush`` (every transaction committed before it is delivered).
* The slot is advanced (``pg_replication_slot_advance``) to ``lsn_flush`` only once the runner has
  stored that offset: the generator resumes after a ``yield`` only then. A run that crashed after
  storing but before advancing advances at its next start (the offsets topic is the truth). Events
  at or below the stored position are skipped, so that replay gives no duplicate; a crash before
  the offset is stored replays the batch (at-least-once; every event carries its LSN).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.config import resolve_env
from integrations.runtime.source_delivery import Outgoing
from integrations.sources import postgres_cdc_incremental as incremental
from integrations.sources import postgres_cdc_pg as pg
from integrations.sources.base import Source, SourceBatch
from integrations.sources.postgres_cdc_config import PostgresCdcConfig
from integrations.sources.postgres_cdc_decode import OPS, envelopes, pivot, snapshot_envelopes
from integrations.sources.postgres_cdc_pg import CdcError, TableInfo
from integrations.sources.postgres_cdc_prefetch import ChangeReader
from integrations.sources.sql_streams import prefetch

log = logging.getLogger("headrace.source.cdc")
_TOMBSTONE = pa.schema([pa.field("__value__", pa.null())])


class PostgresCdcSource(Source):
    """Change data capture over a wal2json logical replication slot, read in bounded micro-batches."""

    def __init__(self, config: PostgresCdcConfig) -> None:
        self.config = config
        self.slot = config.slot
        self._url = resolve_env(config.connection_url)
        self.conn = pg.connect(self._url)
        self.db = self.conn.execute("SELECT current_database()").fetchone()[0]
        self._reader: Any = None  # the snapshot's ADBC session (pg.connect_reader), opened on first use
        self.last_run: dict[str, Any] = {}  # what the last poll did (events per op, LSN range): metadata

    # ---------------------------------------------------------------- contract
    def partitions(self) -> list[dict[str, Any]]:
        """One source partition per slot (Debezium's offsets are per server too)."""
        return [{"server": self.config.topic_prefix, "slot": self.slot}]

    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        """Snapshot (when due), then the changes pending up to the WAL position of the call's start."""
        if self.conn.closed or self.conn.broken:
            self.conn = pg.connect(self._url)  # e.g. after pg_terminate_backend: the stored offset is the truth
        self._close_reader()  # a poll retried after a failure starts with a fresh snapshot session
        state = dict(offset or {})
        state = self._check_slot(state, offset is not None)
        self.last_run = {"events": {}, "lsn_from": state.get("lsn_flush"), "lsn_to": state.get("lsn_flush")}
        if offset is None and state.get("snapshot") is None and self.config.snapshot_mode != "initial_only":
            # the slot's starting point is stored at once: the next run knows the slot is this connector's
            yield SourceBatch(partition, self.config.topic_for("heartbeat"), pa.table({}), dict(state))
        if state.get("snapshot") is not None:
            yield from self._snapshot(partition, state)
            if self.config.snapshot_mode == "initial_only":
                return
        if self.config.snapshot_mode == "initial_only":
            return
        yield from self._stream(partition, state)

    def close(self) -> None:
        """Close the session; drop the slot only under ``slot_drop_on_stop: true``."""
        try:
            if self.config.slot_drop_on_stop and not self.conn.closed and not self.conn.broken:
                pg.drop_slot(self.conn, self.slot)
        finally:
            self._close_reader()
            self.conn.close()

    def reader(self) -> Any:
        """The ADBC session the snapshot reads its chunks through (opened on first use)."""
        if self._reader is None:
            self._reader = pg.connect_reader(self._url)
        return self._reader

    def _close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - a broken session: nothing left to release
                log.debug("connector %s: closing the snapshot session failed", self.config.name, exc_info=True)

    # ---------------------------------------------------------------- slot state
    def _check_slot(self, state: dict[str, Any], stored: bool) -> dict[str, Any]:
        """Create or reuse the slot; fail loudly when the slot or its position is gone."""
        cfg = self.config
        if cfg.snapshot_mode == "initial_only":
            if not stored:
                state = {"snapshot": {"table": 0, "after": None}, "lsn_flush": 0}
            return state
        info = pg.slot_info(self.conn, self.slot)
        if info is not None and (info.plugin != "wal2json" or info.database != self.db):
            raise CdcError(f"connector {cfg.name}: replication slot {self.slot!r} uses plugin {info.plugin!r} on "
                           f"database {info.database!r}; this connector needs a wal2json slot on {self.db!r}: "
                           "set slot_name to another slot")
        lost = None
        if info is None and stored and state.get("lsn_flush"):
            lost = (f"replication slot {self.slot!r} does not exist, but the connector's stored position is LSN "
                    f"{pg.lsn_text(int(state['lsn_flush']))}: the changes since then are lost")
        elif info is not None and info.wal_status == "lost":
            lost = f"replication slot {self.slot!r} lost the WAL it needed (wal_status 'lost')"
        elif info is not None and stored and info.confirmed > int(state.get("lsn_flush") or 0):
            lost = (f"replication slot {self.slot!r} is at LSN {pg.lsn_text(info.confirmed)}, past the connector's "
                    f"stored position {pg.lsn_text(int(state.get('lsn_flush') or 0))}: another reader consumed it, "
                    "the changes in between are lost")
        if lost is not None:
            if cfg.snapshot_mode != "when_needed":
                raise CdcError(f"connector {cfg.name}: {lost}. To start over, set snapshot_mode: when_needed (a new "
                               f"snapshot) or reset the connector's offsets (headrace offsets reset {cfg.name})")
            log.warning("connector %s: %s; snapshotting again (snapshot_mode: when_needed)", cfg.name, lost)
            if info is not None:
                pg.drop_slot(self.conn, self.slot)
            info, stored = None, False
        if info is None:
            start = pg.create_slot(self.conn, self.slot)
            log.info("connector %s created replication slot %s at %s", cfg.name, self.slot, pg.lsn_text(start))
            snap = self._due_snapshot(cfg.snapshot_mode != "never")
            return {"lsn_flush": start, "snapshot": snap, "events": state.get("events") or {}}
        if not stored:  # an existing slot adopted: stream from its confirmed position
            snap = self._due_snapshot(cfg.snapshot_mode in ("initial", "when_needed"))
            return {"lsn_flush": info.confirmed, "snapshot": snap}
        if int(state.get("lsn_flush") or 0) > info.confirmed:  # stored, not advanced yet (a crash in between)
            pg.advance_slot(self.conn, self.slot, int(state["lsn_flush"]))
        return state

    def _due_snapshot(self, due: bool) -> dict[str, Any] | None:
        """The state of a snapshot that is due (None: none, or an incremental one). An incremental snapshot
        (``snapshot_strategy: incremental``) is requested as a signal row written after the slot's start:
        the stream reads it in order and snapshots every captured table in watermarked chunks (DBLog)
        while changes keep flowing. A crash before the first offset is stored adopts the slot, which
        requests it again; two requests in one batch are one snapshot, in two they read twice (never
        skip)."""
        if not due:
            return None
        if self.config.snapshot_strategy != "incremental":
            return {"table": 0, "after": None}
        from integrations.sources.postgres_cdc_signals import request_snapshot

        names = [t.qualified for t in self._tables() if t.qualified != self.config.signal_data_collection]
        if names:
            sid = request_snapshot(self.config, names)
            log.info("connector %s: incremental snapshot of %s requested (signal %s)", self.config.name,
                     ", ".join(names), sid)
        return None

    def _advance_slot(self, lsn: int) -> None:
        info = pg.slot_info(self.conn, self.slot)
        if info is not None and lsn > info.confirmed:
            pg.advance_slot(self.conn, self.slot, lsn)

    def _tables(self) -> list[TableInfo]:
        cfg = self.config
        pub = cfg.publication if cfg.publication_autocreate == "disabled" and self.conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (cfg.publication,)).fetchone() else None
        tables = pg.list_tables(self.conn, cfg.table_include, cfg.table_exclude, pub)
        if cfg.publication_autocreate != "disabled":
            pg.sync_publication(self.conn, cfg.publication, cfg.publication_autocreate, tables)
        return tables

    # ---------------------------------------------------------------- snapshot
    def _snapshot(self, partition: dict[str, Any], state: dict[str, Any]) -> Iterator[SourceBatch]:
        """Key-ordered chunks of every captured table (op ``r``); the offset after each chunk resumes it.

        Without row filters the chunks are read a chunk ahead in a thread (``prefetch``) while the one
        before is enveloped, converted and produced: reading is independent of what is stored, and the
        offset still names the last key produced."""
        cfg = self.config
        tables = self._tables()
        snap = dict(state["snapshot"])
        if "tables" not in snap:
            snap["tables"] = [t.qualified for t in tables]
        by_name = {t.qualified: t for t in tables}  # a requested table that is not captured is skipped
        names = snap["tables"]
        chunks = self._chunks(names, by_name, snap)
        for index, table, rows, last in chunks if snap.get("filters") else prefetch(chunks):
            final = len(rows) < cfg.snapshot_fetch_size and index == len(names) - 1
            value, key = snapshot_envelopes(rows, table.pk, prefix=cfg.topic_prefix, db=self.db,
                                            schema=table.schema, table=table.name,
                                            lsn=int(state.get("lsn_flush") or 0), last=final)
            snap = {**snap, "table": index, "after": last}
            state["snapshot"] = snap
            self._count("r", len(rows), state, table.qualified)
            yield Outgoing(partition, cfg.topic_for(table.qualified), value, dict(state), key)
        state["snapshot"] = None
        # the snapshot is complete: stored before any streamed event
        yield SourceBatch(partition, cfg.topic_for("snapshot"), pa.table({}), dict(state))

    def _chunks(self, names: list[str], by_name: dict[str, TableInfo], snap: dict[str, Any]
                ) -> Iterator[tuple[int, TableInfo, pa.StructArray, list[str]]]:
        """The snapshot's chunks from ``snap``'s table and key on: (table index, table, rows, last key)."""
        cfg = self.config
        index, after = snap["table"], snap["after"]
        while index < len(names):
            table = by_name.get(names[index])
            where = (snap.get("filters") or {}).get(names[index])
            try:
                rows, last = (pg.read_chunk(self.conn, table, after, cfg.snapshot_fetch_size, where,
                                            reader=self.reader())
                              if table is not None else (None, None))
            except CdcError as e:
                if not where:
                    raise
                # a signal's bad filter: that table's re-snapshot is dropped, streaming goes on
                log.error("connector %s: %s; that re-snapshot is skipped (send a corrected signal)", cfg.name, e)
                rows, last = None, None
            if last is None:  # table done (or dropped since)
                index, after = index + 1, None
                continue
            yield index, table, rows, last
            after = last

    # ---------------------------------------------------------------- stream
    def _stream(self, partition: dict[str, Any], state: dict[str, Any]) -> Iterator[SourceBatch]:
        cfg = self.config
        tables = self._tables()
        by_name = {t.qualified: t for t in tables}
        signal = cfg.signal_data_collection
        if signal and signal not in by_name:
            tables = tables + pg.list_tables(self.conn, [_re_escape(signal)], [])
        upto = pg.current_lsn(self.conn)  # the run's bound: changes committed later wait for the next run
        window = incremental.open_window(self.conn, cfg, state, by_name, self.reader) if signal else None
        if window is not None:  # its watermarks are past the bound: read up to them in this run
            upto = max(upto, pg.current_lsn(self.conn))
        pending = upto - int(state.get("lsn_flush") or 0)
        ahead = cfg.read_ahead_wal_bytes is not None and pending > 0 and pending >= cfg.read_ahead_wal_bytes
        reader = ChangeReader(self.conn, self._url, self.slot, tables, cfg.batch_max_events, read_ahead=ahead)
        try:
            yield from self._stream_batches(partition, state, reader, by_name, upto, window)
        finally:
            reader.close()

    def _stream_batches(self, partition: dict[str, Any], state: dict[str, Any], reader: ChangeReader,
                        by_name: dict[str, TableInfo], upto: int,
                        window: incremental.Window | None) -> Iterator[SourceBatch]:
        """The stream's batches up to ``upto`` (raised when an incremental snapshot's window needs it)."""
        cfg = self.config
        signal = cfg.signal_data_collection
        budget = cfg.max_events_per_run
        last_beat = float(state.get("ts_sec") or 0)
        while True:
            rows, peeked_upto = reader.next(upto)
            events, end_all = _new_events(rows, state)
            # a peek stops early only past nchanges rows, or it reached its bound: no second decode then
            complete = rows.num_rows < cfg.batch_max_events or (end_all is not None and end_all >= peeked_upto)
            stored = int(state.get("lsn_flush") or 0)
            flush_all = max(peeked_upto if complete else 0, end_all or 0, stored)
            if events.num_rows == 0:
                beat = cfg.heartbeat_interval > 0 and time.time() - last_beat >= cfg.heartbeat_interval
                if flush_all > stored and (beat or not complete):
                    # nothing of ours in the WAL read: store the position, then free that WAL (always when
                    # more is pending, else the next peek would decode the same transactions again)
                    state.update(lsn_flush=flush_all, ts_sec=time.time())
                    last_beat = time.time()
                    yield SourceBatch(partition, cfg.topic_for("heartbeat"), pa.table({}), dict(state))
                    self._advance_slot(flush_all)
                    self.last_run["lsn_to"] = flush_all
                if (complete and upto == peeked_upto) or end_all is None:
                    return
                continue
            total = events.num_rows
            take = total if budget is None else min(total, budget)
            commit = events.column("_commit").to_numpy()
            for start in range(0, take, cfg.batch_max_events):
                stop = min(start + cfg.batch_max_events, take)
                chunk = events.slice(start, stop - start)
                end = int(commit[stop - 1])
                if stop == total:  # the peek's last event ends its transaction
                    flush = flush_all
                elif int(commit[stop]) != end:  # the chunk ends at a transaction boundary
                    flush = end
                else:  # mid-transaction: the slot may only move past the transactions before it
                    earlier = commit[start:stop][commit[start:stop] < end]
                    flush = int(earlier.max(initial=0))
                state.update(lsn=int(chunk.column("_l")[-1].as_py()), lsn_commit=end,
                             lsn_flush=max(flush, int(state.get("lsn_flush") or 0)),
                             txId=chunk.column("xid")[-1].as_py(), ts_sec=time.time())
                snapshots = _snapshot_signals(chunk, signal) if signal else {}
                requested, filters = snapshots.get("blocking", ([], {}))
                if requested:
                    state["snapshot"] = {"tables": requested, "table": 0, "after": None}
                    if filters:
                        state["snapshot"]["filters"] = filters
                extra: list[Outgoing] = []
                if "stop" in snapshots:  # stop-snapshot: before the window's chunk could go out
                    names = snapshots["stop"][0]
                    if incremental.stop(state, [] if "*" in names else names):
                        window = None  # its watermarks still in the stream are ignored
                    log.info("connector %s: incremental snapshot stopped for %s", cfg.name,
                             "every table" if "*" in names else ", ".join(names))
                if window is not None:  # DBLog: the chunk goes out after the batch holding its high watermark
                    incremental.observe(window, chunk, signal)
                    if window.closed:
                        emitted = window.table.qualified
                        extra, window = incremental.emit(window, cfg, self.db, partition, state), None
                if "incremental" in snapshots:
                    incremental.queue(state, *snapshots["incremental"])
                offset = dict(state)
                items = list(self._produce(partition, chunk, by_name, offset))
                if extra:
                    self._count("r", sum(x.num_rows for x in extra), offset, emitted)
                    items[-1].offset, extra[-1].offset = None, offset
                yield from items + extra
                state["events"], state["events_by_table"] = offset.get("events"), offset.get("events_by_table")
                self._advance_slot(int(state["lsn_flush"]))  # resumed only after the runner stored the offset
                self.last_run["lsn_to"] = state["lsn_flush"]
                if requested:  # stored with the chunk: a crash resumes the snapshot before streaming on
                    yield from self._snapshot(partition, state)
                if window is None and state.get("incremental"):  # the next chunk's window, in this run
                    window = incremental.open_window(self.conn, cfg, state, by_name, self.reader)
                    if window is not None:
                        upto = max(upto, pg.current_lsn(self.conn))
            if budget is not None:
                budget -= take
                if budget <= 0:
                    return
            if complete and upto == peeked_upto:
                return

    def _produce(self, partition: dict[str, Any], chunk: pa.Table, by_name: dict[str, TableInfo],
                 offset: dict[str, Any]) -> Iterator[SourceBatch]:
        """One chunk's events as batches per table topic; deletes followed by tombstones, truncates alone.
        Only the chunk's last batch carries the offset."""
        cfg = self.config
        qual = pc.binary_join_element_wise(chunk.column("schema"), chunk.column("table"), ".")
        out: list[SourceBatch] = []
        for name in pc.unique(qual).to_pylist():
            if name == cfg.signal_data_collection:  # signals steer the connector; they are not produced
                continue
            rows = chunk.filter(pc.equal(qual, name))
            table = by_name.get(name)
            schema, tname = name.split(".", 1)
            if table is None or any(c not in table.columns for c in _names(rows)):
                fresh = pg.list_tables(self.conn, [_re_escape(name)], [])
                table = fresh[0] if fresh else None
                if table is not None:
                    by_name[name] = table
            layout = (list(table.columns), table.arrow_types(), table.pk) if table is not None else None
            value, key, ops = envelopes(rows, prefix=cfg.topic_prefix, db=self.db, schema=schema, table=tname,
                                        layout=layout)
            topic = cfg.topic_for(name)
            for code, n in zip(*np.unique(ops, return_counts=True), strict=True):
                self._count(OPS[int(code)].as_py(), int(n), offset, name)
            for op, lo, hi in _runs(ops):
                part_key = None if key is None or op == "t" else key.slice(lo, hi - lo)
                out.append(Outgoing(partition, topic, value.slice(lo, hi - lo), None, part_key))
                if op == "d" and cfg.tombstones_on_delete and part_key is not None:
                    out.append(Outgoing(partition, topic, pa.table({"__value__": pa.nulls(hi - lo)}), None, part_key))
        if out:
            out[-1].offset = offset
        else:
            out.append(SourceBatch(partition, cfg.topic_for("heartbeat"), pa.table({}), offset))
        yield from out

    def _count(self, op: str, n: int, state: dict[str, Any], table: str) -> None:
        """Count events per op: in this poll (``last_run``) and, cumulated, in the offset to store, in all
        and per table (``schema.table``), so a run's counts are the difference of its offsets before and
        after (replays not counted twice) and each table's topic can show its own."""
        ev = self.last_run.setdefault("events", {})
        ev[op] = ev.get(op, 0) + n
        total = dict(state.get("events") or {})
        total[op] = total.get(op, 0) + n
        state["events"] = total
        by_table = {t: dict(v) for t, v in (state.get("events_by_table") or {}).items()}
        mine = by_table.setdefault(table, {})
        mine[op] = mine.get(op, 0) + n
        state["events_by_table"] = by_table


def _new_events(rows: pa.Table, state: dict[str, Any]) -> tuple[pa.Table, int | None]:
    """The change rows not delivered yet, each with ``_commit`` (its transaction's commit end LSN),
    and the last commit end in ``rows`` (None: no transaction)."""
    if rows.num_rows == 0:
        return rows.append_column("_commit", pa.array([], pa.int64())), None
    action = rows.column("action").combine_chunks()
    lsn = rows.column("_l").to_numpy()
    cpos = np.flatnonzero(pc.equal(action, "C").to_numpy(zero_copy_only=False))
    if len(cpos) == 0:
        return rows.slice(0, 0).append_column("_commit", pa.array([], pa.int64())), None
    commit = lsn[cpos[np.minimum(np.searchsorted(cpos, np.arange(rows.num_rows)), len(cpos) - 1)]]
    change = pc.is_in(action, pa.array(["I", "U", "D", "T"])).to_numpy(zero_copy_only=False)
    flush = int(state.get("lsn_flush") or 0)
    c_done, l_done = int(state.get("lsn_commit") or 0), int(state.get("lsn") or 0)
    keep = change & (commit > flush) & ~((commit == c_done) & (lsn <= l_done))
    out = rows.append_column("_commit", pa.array(commit)).filter(pa.array(keep))
    return out, int(lsn[cpos[-1]])


def _runs(ops: np.ndarray) -> list[tuple[str, int, int]]:
    """Maximal runs of (deletes | truncates one by one | everything else) as (kind, start, stop); ``ops``
    holds op codes (indexes into ``OPS``: 2 delete, 3 truncate)."""
    n = len(ops)
    if n == 0:
        return []
    kind = np.where(ops == 2, 1, np.where(ops == 3, 2, 0))
    starts = np.flatnonzero(np.concatenate([[True], (kind[1:] != kind[:-1]) | (kind[1:] == 2)]))
    stops = np.append(starts[1:], n)
    return [("d" if kind[s] == 1 else "t" if kind[s] == 2 else "cu", int(s), int(e)) for s, e in zip(starts, stops,
                                                                                                     strict=True)]


def _snapshot_signals(chunk: pa.Table, signal: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Per snapshot type (``incremental``, Debezium's default, or ``blocking``): the tables named by
    ``execute-snapshot`` rows inserted into the signal table in this chunk, and the row filters asked
    for some of them; under ``stop``, the tables ``stop-snapshot`` rows name (``*``: all) (Debezium's signal format: columns ``id``, ``type``, ``data`` = ``{"data-collections":
    ["schema.table", …], "type": "incremental", "additional-conditions": [{"data-collection":
    "schema.table", "filter": "id BETWEEN 1 AND 1000"}]}``). Several signals for one table: the union."""
    import orjson

    qual = pc.binary_join_element_wise(chunk.column("schema"), chunk.column("table"), ".")
    rows = chunk.filter(pc.and_(pc.equal(qual, signal), pc.equal(chunk.column("action"), "I")))
    if rows.num_rows == 0:
        return {}
    struct, _ = pivot(rows.column("columns").combine_chunks(), ["type", "data"], {"type": pa.string(),
                                                                                   "data": pa.string()})
    found: dict[str, tuple[list[str], dict[str, str], set[str]]] = {}
    for kind, data in zip(struct.field(0).to_pylist(), struct.field(1).to_pylist(), strict=True):  # a few rows
        if kind not in ("execute-snapshot", "stop-snapshot"):
            continue
        try:
            doc = orjson.loads(data or "{}")
        except orjson.JSONDecodeError:
            log.warning("signal %s: data %r is not JSON; ignored", signal, data)
            continue
        if kind == "stop-snapshot":  # incremental only (a blocking snapshot ends by itself); no names: all
            if str(doc.get("type") or "incremental").lower() == "incremental":
                stopped = found.setdefault("stop", ([], {}, set()))
                names = [n if "." in n else f"public.{n}" for n in doc.get("data-collections") or []]
                stopped[0].extend(names or ["*"])
            continue
        if not data:
            continue
        mode = "blocking" if str(doc.get("type") or "incremental").lower() == "blocking" else "incremental"
        out, filters, whole = found.setdefault(mode, ([], {}, set()))  # whole: asked for without a filter
        names = [n if "." in n else f"public.{n}" for n in doc.get("data-collections") or []]
        conds: dict[str, str] = {}
        for cond in doc.get("additional-conditions") or []:
            name = str(cond.get("data-collection") or "")
            name = name if "." in name else f"public.{name}"
            if name in names and cond.get("filter"):
                conds[name] = str(cond["filter"])
        for n in names:
            if n not in out:
                out.append(n)
            if n not in conds:
                whole.add(n)
            elif n in filters:
                filters[n] = f"({filters[n]}) OR ({conds[n]})"
            else:
                filters[n] = conds[n]
    return {mode: (out, {n: f for n, f in filters.items() if n not in whole}) for mode, (out, filters, whole)
            in found.items()}


def _names(rows: pa.Table) -> list[str]:
    flat = pc.list_flatten(rows.column("columns").combine_chunks())
    return pc.unique(flat.field("name")).to_pylist() if len(flat) else []


def _re_escape(name: str) -> str:
    import re

    return re.escape(name)
