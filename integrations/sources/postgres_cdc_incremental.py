"""Incremental snapshots for ``postgres_cdc`` (the DBLog algorithm, as Debezium's incremental snapshots):
a table is re-read in key-ordered chunks *while the stream goes on*, with no lock and no long transaction.

For each chunk ("window"), the connector

1. inserts a low watermark row (``<id>-open``) into the signal table,
2. reads the chunk (``WHERE key > last ORDER BY key LIMIT snapshot_fetch_size``, and the signal's filter),
3. inserts a high watermark row (``<id>-close``),

then streams on. Events of the table between the low watermark and the end of the stream batch that
holds the high watermark are newer than (or as new as) the chunk's copy of their row, so those keys are
dropped from the chunk; the rest of the chunk is emitted as ``op: r`` events (``source.snapshot:
incremental``) right after that batch, and the chunk's last key is stored in the same offset. A crash
before that offset is stored re-reads the chunk in the next run (its watermarks, whose id the new
run does not know, are ignored): nothing is skipped, and a row is emitted twice at most.

A truncate of the table inside a window drops the whole chunk. A ``stop-snapshot`` signal drops the
named tables (all when it names none) from the queue, with the chunk of the current table read but
not yet sent. Needs ``signal_data_collection`` and INSERT on that table for the connector's user
(Debezium needs the same).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from integrations.runtime.source_delivery import Outgoing
from integrations.sources import postgres_cdc_pg as pg
from integrations.sources.postgres_cdc_decode import pivot, snapshot_envelopes
from integrations.sources.postgres_cdc_pg import CdcError, TableInfo

log = logging.getLogger("headrace.source.cdc")


@dataclass
class Window:
    """One chunk read between its watermarks, waiting for the stream to pass the high watermark."""

    id: str
    table: TableInfo
    rows: pa.StructArray
    last: list[str] | None
    full: bool  # the chunk has snapshot_fetch_size rows: the table may have more
    opened: bool = False  # the low watermark was seen in the stream
    closed: bool = False  # the high watermark was seen in the stream
    changed: set[tuple] = field(default_factory=set)  # keys changed in the stream since the low watermark
    truncated: bool = False


def queue(state: dict[str, Any], tables: list[str], filters: dict[str, str]) -> None:
    """Add an incremental snapshot of ``tables`` to the offset state (after any already queued)."""
    inc = dict(state.get("incremental") or {"tables": [], "filters": {}, "table": 0, "after": None})
    inc["tables"] = list(inc["tables"]) + [t for t in tables if t not in inc["tables"][inc["table"]:]]
    inc["filters"] = {**(inc.get("filters") or {}), **filters}
    state["incremental"] = inc


def stop(state: dict[str, Any], tables: list[str]) -> bool:
    """Drop ``tables`` (all when empty) from the queued incremental snapshot (a ``stop-snapshot``
    signal). Return whether the table being read now was dropped (its open window must not be sent)."""
    inc = state.get("incremental")
    if not inc or inc["table"] >= len(inc["tables"]):
        return False
    rest = inc["tables"][inc["table"]:]
    keep = [t for t in rest if tables and t not in tables]
    current = rest[0] not in keep
    if keep:
        state["incremental"] = {"tables": keep, "table": 0, "after": None if current else inc["after"],
                                "filters": {k: v for k, v in (inc.get("filters") or {}).items() if k in keep}}
    else:
        state["incremental"] = None
    return current


def open_window(conn: Any, config: Any, state: dict[str, Any], by_name: dict[str, TableInfo],
                reader: Callable[[], Any] | None = None) -> Window | None:
    """Write the low watermark, read the next chunk of the queued snapshot (through ``reader()``'s ADBC
    session when given), write the high watermark; None when nothing is queued (the state's
    ``incremental`` is then cleared)."""
    inc = state.get("incremental")
    while inc and inc["table"] < len(inc["tables"]):
        name = inc["tables"][inc["table"]]
        table = by_name.get(name)
        condition = (inc.get("filters") or {}).get(name)
        if table is None:  # not captured (any more): skipped
            log.warning("connector %s: incremental snapshot of %s skipped: the table is not captured", config.name, name)
            inc.update(table=inc["table"] + 1, after=None)
            continue
        wid = f"headrace-window-{uuid.uuid4().hex[:12]}"
        _signal(conn, config.signal_data_collection, f"{wid}-open", "snapshot-window-open", name)
        try:
            rows, last = pg.read_chunk(conn, table, inc["after"], config.snapshot_fetch_size, condition,
                                       reader=reader() if reader is not None else None)
        except CdcError as e:
            if not condition:
                raise
            log.error("connector %s: %s; that re-snapshot is skipped (send a corrected signal)", config.name, e)
            rows, last = None, None
        _signal(conn, config.signal_data_collection, f"{wid}-close", "snapshot-window-close", name)
        if last is None:  # the table is done
            inc.update(table=inc["table"] + 1, after=None)
            continue
        return Window(wid, table, rows, last, full=len(rows) >= config.snapshot_fetch_size)
    state["incremental"] = None
    return None


def _signal(conn: Any, signal: str, sid: str, kind: str, table: str) -> None:
    """A watermark row, committed with a WAL flush (``synchronous_commit`` on for it), so the run's read
    bound (the flush position) reaches it."""
    schema, _, name = signal.partition(".")
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute(sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(
            sql.Identifier(schema or "public", name)), (sid, kind, orjson.dumps({"data-collection": table}).decode()))


def observe(window: Window, chunk: pa.Table, signal: str) -> None:
    """Take one stream batch into account: the watermarks it holds and, from the low watermark on, the
    keys of the window's table that the stream changed (they are dropped from the chunk)."""
    qual = pc.binary_join_element_wise(chunk.column("schema"), chunk.column("table"), ".")
    start = 0 if window.opened else None
    sig = np.flatnonzero(pc.and_(pc.equal(qual, signal), pc.equal(chunk.column("action"), "I"))
                         .to_numpy(zero_copy_only=False))
    if len(sig):
        ids, _ = pivot(chunk.column("columns").combine_chunks().take(pa.array(sig)), ["id"], {"id": pa.string()})
        for pos, sid in zip(sig, ids.field(0).to_pylist(), strict=True):
            if sid == f"{window.id}-open" and start is None:
                start, window.opened = int(pos), True
            elif sid == f"{window.id}-close" and window.opened:
                window.closed = True
    if start is None:
        return
    part = chunk.slice(start)
    mine = part.filter(pc.equal(pc.binary_join_element_wise(part.column("schema"), part.column("table"), "."),
                                window.table.qualified))
    if mine.num_rows == 0:
        return
    if pc.any(pc.equal(mine.column("action"), "T")).as_py():
        window.truncated = True
    pk = window.table.pk
    if not pk:  # no key (ctid order): any change of the table in the window drops the chunk
        window.truncated = True
        return
    types = window.table.arrow_types()
    for col in ("columns", "identity"):
        struct, present = pivot(mine.column(col).combine_chunks(), pk, types)
        has = np.all([present[k] for k in pk], axis=0)
        cols = [struct.field(k).filter(pa.array(has)).to_pylist() for k in pk]
        window.changed.update(zip(*cols, strict=True))


def emit(window: Window, config: Any, db: str, partition: dict[str, Any], state: dict[str, Any]
         ) -> list[Outgoing]:
    """The window's rows the stream did not change, as ``op: r`` events; the queued snapshot moves past
    the chunk in ``state`` (stored with the last of them)."""
    rows = window.rows
    if window.truncated:
        rows = rows.slice(0, 0)
    elif window.changed:
        pk = window.table.pk
        keys = zip(*[rows.field(k).to_pylist() for k in pk], strict=True)
        keep = np.fromiter((k not in window.changed for k in keys), dtype=bool, count=len(rows))
        rows = rows.filter(pa.array(keep))
    inc = state["incremental"]
    if window.full:
        inc["after"] = window.last
    else:
        inc.update(table=inc["table"] + 1, after=None)
    if inc["table"] >= len(inc["tables"]):
        state["incremental"] = None
    if len(rows) == 0:
        return []
    t = window.table
    value, key = snapshot_envelopes(rows, t.pk, prefix=config.topic_prefix, db=db, schema=t.schema, table=t.name,
                                    lsn=int(state.get("lsn") or 0), last=False, marker="incremental")
    return [Outgoing(partition, config.topic_for(t.qualified), value, None, key)]
