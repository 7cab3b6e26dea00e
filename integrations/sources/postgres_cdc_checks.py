"""Cheap checks of a CDC connector for sensors and asset checks: the slot's pending WAL, never a decode.

``pg_replication_slots`` and ``pg_current_wal_insert_lsn()`` are catalog reads: a sensor may call them every
few seconds. Pending WAL is not pending changes of the captured tables (other tables and databases
write WAL too), so a sensor that fires on it may start a run that finds nothing: that run still
stores the position (with ``heartbeat_interval``) and frees that WAL.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.config import resolve_env
from integrations.sources import postgres_cdc_pg as pg
from integrations.sources.postgres_cdc_config import PostgresCdcConfig


def slot_status(config: PostgresCdcConfig) -> dict[str, Any]:
    """``{exists, confirmed_lsn, current_lsn, lag_bytes, retained_bytes, wal_status, active}`` of the slot."""
    conn = pg.connect(resolve_env(config.connection_url))
    try:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text, pg_current_wal_insert_lsn()::text, "
            "(pg_current_wal_insert_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_insert_lsn() - restart_lsn)::bigint, "
            "wal_status, active FROM pg_replication_slots WHERE slot_name = %s", (config.slot,)).fetchone()
        if row is None:
            current = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
            return {"exists": False, "slot": config.slot, "current_lsn": current}
        return {"exists": True, "slot": config.slot, "confirmed_lsn": row[0], "current_lsn": row[1],
                "lag_bytes": int(row[2] or 0), "retained_bytes": int(row[3] or 0), "wal_status": row[4],
                "active": bool(row[5])}
    finally:
        conn.close()


def cdc_fingerprint(config: PostgresCdcConfig, min_bytes: int = 1) -> str | None:
    """The slot's confirmed and current positions when WAL is pending (a run is worth it), else None.

    A missing slot also asks for a run: the run creates it, or fails loudly when it was lost."""
    s = slot_status(config)
    if not s["exists"]:
        return f"no-slot:{s['current_lsn']}"
    if s["lag_bytes"] < min_bytes:
        return None
    return f"{s['confirmed_lsn']}..{s['current_lsn']}"


def captured_tables(config: PostgresCdcConfig) -> list[str]:
    """``schema.table`` of every table the connector captures now (catalog only).

    When the database cannot be reached: the ``table_include`` entries that are plain names."""
    try:
        conn = pg.connect(resolve_env(config.connection_url))
        try:
            return [t.qualified for t in pg.list_tables(conn, config.table_include, config.table_exclude)]
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - definitions may load while the database is down
        plain = [re.sub(r"\\(.)", r"\1", r) for r in config.table_include]
        return [p for p in plain if re.fullmatch(r"[\w$]+(\.[\w$]+)?", p)]


def run_metadata(config: PostgresCdcConfig, before: dict[str, Any] | None, after: dict[str, Any] | None,
                 topic: str | None = None) -> dict[str, Any]:
    """What a run did, from its offsets before and after: the LSN range, events per op (those of the
    tables whose topic is ``topic`` when given), and the slot's lag now (``lag_bytes``: WAL past the
    confirmed position; ``retained_bytes``: WAL the slot keeps). Offsets stored before per-table counts
    existed give the connector's counts."""
    before, after = before or {}, after or {}
    b_ev, a_ev = before.get("events") or {}, after.get("events") or {}
    if topic is not None and "events_by_table" in after:
        mine = [t for t in after["events_by_table"] if config.topic_for(t) == topic]
        b_ev, a_ev = (_summed((before.get("events_by_table") or {}).get(t) or {} for t in mine),
                      _summed(after["events_by_table"][t] for t in mine))
    out: dict[str, Any] = {
        "lsn_range": [pg.lsn_text(int(before.get("lsn_flush") or 0)), pg.lsn_text(int(after.get("lsn_flush") or 0))],
        "events_per_op": {op: n - b_ev.get(op, 0) for op, n in sorted(a_ev.items()) if n - b_ev.get(op, 0)},
    }
    try:
        s = slot_status(config)
        if s["exists"]:
            out["slot_lag_bytes"] = s["lag_bytes"]
            out["slot_retained_bytes"] = s["retained_bytes"]
    except Exception as e:  # noqa: BLE001 - metadata must not fail a run that moved its data
        out["slot_status_error"] = type(e).__name__
    return out


def _summed(counts: Any) -> dict[str, int]:
    """Per-op counts added up over several tables."""
    out: dict[str, int] = {}
    for c in counts:
        for op, n in c.items():
            out[op] = out.get(op, 0) + n
    return out


def slot_lag_verdict(config: PostgresCdcConfig) -> tuple[bool, str, dict[str, Any]]:
    """(passed, one-line description, figures) of the slot's lag against ``slot_lag_max_bytes``.

    A missing slot passes before the first run (nothing to hold back) and is described; a slot whose
    WAL is lost fails."""
    s = slot_status(config)
    limit = config.slot_lag_max_bytes
    if not s["exists"]:
        return True, f"slot {config.slot} does not exist yet (the first run creates it)", {"slot": config.slot}
    figures = {"slot": config.slot, "confirmed_lsn": s["confirmed_lsn"], "current_lsn": s["current_lsn"],
               "lag_bytes": s["lag_bytes"], "retained_bytes": s["retained_bytes"],
               "threshold_bytes": limit, "wal_status": s["wal_status"] or ""}
    if s["wal_status"] == "lost":
        return False, f"slot {config.slot} lost the WAL it needed (wal_status 'lost'): the next run fails", figures
    passed = s["lag_bytes"] <= limit
    what = "within" if passed else "past"
    return passed, (f"slot {config.slot} is {s['lag_bytes']:,} bytes behind the WAL, {what} the threshold of "
                    f"{limit:,} (slot_lag_max_bytes)"), figures
