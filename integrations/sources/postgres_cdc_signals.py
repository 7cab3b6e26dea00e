"""Ask a running ``postgres_cdc`` connector for a re-snapshot (an ``execute-snapshot`` signal row), or
to stop its incremental snapshot (a ``stop-snapshot`` row), as Debezium's signals do.

The connector reads its signal table (``signal_data_collection``) from the WAL like any captured
table, so the request takes effect in stream order: once the batch holding the signal is stored, the
connector snapshots the named tables (only the rows matching ``filter``, when given: a key range, for
instance) as ``op: r`` events, then streams on. ``headrace snapshot`` and the Dagster job
``headrace_cdc_snapshot`` both call :func:`request_snapshot`; ``headrace snapshot --stop`` calls
:func:`request_stop`.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg
from psycopg import sql

from integrations.config import resolve_env
from integrations.errors import ConfigError
from integrations.sources import postgres_cdc_pg as pg


def request_snapshot(config: Any, tables: list[str], condition: str | None = None, incremental: bool = True) -> str:
    """Insert an ``execute-snapshot`` signal for ``tables`` (``schema.table``; ``public`` when bare),
    narrowed by ``condition`` (SQL over the table's columns, e.g. ``id BETWEEN 1 AND 1000``) when given;
    ``incremental`` (Debezium's default) snapshots in watermarked chunks while the stream goes on,
    else the stream waits for the snapshot (``blocking``). Return the signal's id. Raises ``ConfigError`` (one line) for a connector without a signal table or
    a table it does not capture."""
    if not tables:
        raise ConfigError("name at least one table to snapshot")
    names = [t if "." in t else f"public.{t}" for t in tables]
    data: dict[str, Any] = {"data-collections": names, "type": "incremental" if incremental else "blocking"}
    if condition:
        data["additional-conditions"] = [{"data-collection": n, "filter": condition} for n in names]
    return _write(config, "execute-snapshot", data, names)


def request_stop(config: Any, tables: list[str] | None = None) -> str:
    """Insert a ``stop-snapshot`` signal: the connector drops ``tables`` (every table when none) from its
    incremental snapshot, including a chunk read but not yet sent; a blocking snapshot is not stopped.
    Return the signal's id."""
    names = [t if "." in t else f"public.{t}" for t in tables or []]
    data: dict[str, Any] = {"type": "incremental"}
    if names:
        data["data-collections"] = names
    return _write(config, "stop-snapshot", data, names)


def _write(config: Any, kind: str, data: dict[str, Any], names: list[str]) -> str:
    """Insert one signal row (flushed at commit); ``names`` must be captured tables. One-line errors."""
    if getattr(config, "type", None) != "postgres_cdc":
        raise ConfigError(f"connector {config.name} is not a postgres_cdc connector; only CDC connectors re-snapshot")
    signal = config.signal_data_collection
    if not signal:
        raise ConfigError(f"connector {config.name}: set signal_data_collection (e.g. public.signals, a table with "
                          "columns id text, type text, data text) to request snapshots")
    schema, _, table = signal.partition(".")
    conn = pg.connect(resolve_env(config.connection_url))
    try:
        captured = {t.qualified for t in pg.list_tables(conn, config.table_include, config.table_exclude)}
        missing = [n for n in names if n not in captured]
        if missing:
            raise ConfigError(f"connector {config.name} does not capture {', '.join(missing)} "
                              f"(captured: {', '.join(sorted(captured)) or 'none'})")
        sid = f"headrace-{uuid.uuid4().hex[:12]}"
        conn.execute("SET synchronous_commit = on")  # flushed at commit: the connector's next run reads it
        conn.execute(sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(
            sql.Identifier(schema or "public", table)), (sid, kind, orjson.dumps(data).decode()))
        return sid
    except psycopg.Error as e:
        raise ConfigError(f"connector {config.name}: the signal could not be written to {signal}: "
                          f"{str(e).splitlines()[0]}") from None
    finally:
        conn.close()
