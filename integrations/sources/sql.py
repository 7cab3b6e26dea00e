"""SQL table source with Kafka Connect JDBC's modes, over SQLAlchemy Core (identifiers always quoted).

Queries per mode (``inc`` = incrementing column, ``ts`` = timestamp columns coalesced in order):

- bulk: the whole table, in chunks ordered by the primary key when there is one; no offset stored.
- incrementing: ``WHERE inc > :last ORDER BY inc LIMIT :n``.
- timestamp: ``WHERE ts > :last AND ts < :upper ORDER BY ts LIMIT :n``; a full chunk drops its last
  timestamp group so rows sharing that timestamp are never split across the stored offset.
- timestamp+incrementing: ``WHERE ts < :upper AND ((ts = :ts AND inc > :inc) OR ts > :ts)
  ORDER BY ts, inc LIMIT :n``.

``:upper`` is the database's clock minus ``timestamp_delay``. Reads are bounded by
``batch_max_rows`` per chunk, so memory stays flat whatever the table size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from integrations.config import SqlSourceConfig, resolve_env
from integrations.errors import ConfigError
from integrations.sources.base import Source, SourceBatch
from integrations.sources.sql_reader import SqlReader


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime | dt.date) else v


class SqlSource(Source):
    """Reads tables (or a custom query) in the configured mode."""

    def __init__(self, config: SqlSourceConfig, use_adbc: bool = True) -> None:
        self.config = config
        self.reader = SqlReader(resolve_env(config.connection_url), use_adbc=use_adbc)
        self._meta = sa.MetaData()
        self._tables: dict[str, sa.FromClause] = {}

    # -- structure ------------------------------------------------------------------------------
    def partitions(self) -> list[dict[str, Any]]:
        return [{"query": "query"}] if self.config.query else [{"table": t} for t in self.config.tables]

    def _from(self, partition: dict[str, Any]) -> sa.FromClause:
        key = partition.get("table") or "query"
        if key in self._tables:
            return self._tables[key]
        if self.config.query:
            # The user's own SELECT; its column names come from running it on no rows. Column
            # types are then untyped on the SQLAlchemy path (text), exact on the ADBC path.
            with self.reader.engine.connect() as conn:
                probe = sa.text(f"SELECT * FROM ({self.config.query}) AS headrace_q WHERE 1 = 0")
                cols = list(conn.execute(probe).keys())
            src = sa.text(self.config.query).columns(*[sa.column(c) for c in cols]).subquery("headrace_q")
        else:
            schema, _, name = key.rpartition(".")
            try:
                src = sa.Table(name, self._meta, autoload_with=self.reader.engine, schema=schema or None)
            except sa.exc.NoSuchTableError as e:
                raise ConfigError(f"connector {self.config.name}: table {key!r} does not exist") from e
        self._check_columns(src, key)
        self._tables[key] = src
        return src

    def _check_columns(self, src: sa.FromClause, key: str) -> None:
        wanted = [self.config.incrementing_column, *(self.config.timestamp_column or []), *self.config.key_columns]
        missing = [c for c in wanted if c and c not in src.c]
        if missing:
            raise ConfigError(
                f"connector {self.config.name}: column(s) {missing} not in {key!r} (columns: {list(src.c.keys())})"
            )

    def _ts_expr(self, src: sa.FromClause) -> sa.ColumnElement[Any]:
        cols = [src.c[c] for c in self.config.timestamp_column or []]
        return cols[0] if len(cols) == 1 else sa.func.coalesce(*cols)

    def upper_bound(self) -> dt.datetime:
        """The database's current time minus ``timestamp_delay``."""
        now = self.reader.scalar(sa.select(sa.func.current_timestamp()))
        if isinstance(now, str):
            now = dt.datetime.fromisoformat(now)
        return now - dt.timedelta(seconds=self.config.timestamp_delay)

    # -- reading --------------------------------------------------------------------------------
    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        src = self._from(partition)
        name = partition.get("table", "query")
        topic = self.config.topic_for(name)
        mode, n = self.config.mode, self.config.batch_max_rows
        offset = dict(offset or {})
        if mode == "bulk":
            yield from self._bulk(src, partition, topic)
            return
        upper = self.upper_bound() if "timestamp" in mode else None
        while True:
            stmt = self._incremental_select(src, offset, upper).limit(n)
            table = self.reader.fetch(stmt)
            full = table.num_rows == n
            if mode == "timestamp" and full:
                table = _drop_last_ts_group(table, self.config.timestamp_column or [])
                if table.num_rows == 0:  # one timestamp fills a whole chunk: read that group entirely
                    table = self.reader.fetch(self._ts_group_select(src, offset, upper))
            if table.num_rows == 0:
                return
            offset = self._advance(offset, table)
            yield SourceBatch(partition=partition, topic=topic, records=table, offset=dict(offset))
            if not full:
                return

    def _incremental_select(self, src: sa.FromClause, offset: dict[str, Any], upper: Any) -> sa.Select:
        mode, c = self.config.mode, self.config
        stmt = sa.select(src)
        if mode == "incrementing":
            inc = src.c[c.incrementing_column]
            if "incrementing" in offset:
                stmt = stmt.where(inc > offset["incrementing"])
            return stmt.order_by(inc)
        ts = self._ts_expr(src)
        last_ts = self._last_ts(offset, src)
        stmt = stmt.where(ts < upper) if upper is not None else stmt
        if mode == "timestamp":
            if last_ts is not None:
                stmt = stmt.where(ts > last_ts)
            return stmt.order_by(ts)
        inc = src.c[c.incrementing_column]
        if last_ts is not None:
            last_inc = offset.get("incrementing", -(2**63))
            stmt = stmt.where(sa.or_(sa.and_(ts == last_ts, inc > last_inc), ts > last_ts))
        return stmt.order_by(ts, inc)

    def _ts_group_select(self, src: sa.FromClause, offset: dict[str, Any], upper: Any) -> sa.Select:
        """Every row sharing the next timestamp (used when one timestamp fills a whole chunk)."""
        ts = self._ts_expr(src)
        last = self._last_ts(offset, src)
        nxt = sa.select(sa.func.min(ts)).where(ts < upper)
        if last is not None:
            nxt = nxt.where(ts > last)
        return sa.select(src).where(ts == nxt.scalar_subquery())

    def _last_ts(self, offset: dict[str, Any], src: sa.FromClause) -> dt.datetime | None:
        if "timestamp" in offset:
            v = dt.datetime.fromisoformat(offset["timestamp"])
        elif self.config.timestamp_initial:
            v = dt.datetime.fromisoformat(self.config.timestamp_initial)
        else:
            return None
        col_type = src.c[self.config.timestamp_column[0]].type
        if isinstance(col_type, sa.DateTime) and not col_type.timezone and v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v

    def _advance(self, offset: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        c = self.config
        out = dict(offset)
        if c.incrementing_column:
            out["incrementing"] = table.column(c.incrementing_column)[-1].as_py()
        if c.timestamp_column:
            last = None
            for col in c.timestamp_column:
                last = table.column(col)[-1].as_py()
                if last is not None:
                    break
            if isinstance(last, str):
                last = dt.datetime.fromisoformat(last)
            out["timestamp"] = _iso(last)
        return out

    def _bulk(self, src: sa.FromClause, partition: dict[str, Any], topic: str) -> Iterator[SourceBatch]:
        n = self.config.batch_max_rows
        pk = list(getattr(src, "primary_key", None) or [])
        order = pk or list(src.c)
        last: tuple[Any, ...] | None = None
        while True:
            stmt = sa.select(src).order_by(*order).limit(n)
            if last is not None:
                stmt = stmt.where(sa.tuple_(*order) > sa.tuple_(*[sa.literal(v) for v in last]))
            table = self.reader.fetch(stmt)
            if table.num_rows == 0:
                return
            yield SourceBatch(partition=partition, topic=topic, records=table, offset=None)
            if table.num_rows < n:
                return
            last = tuple(table.column(c.name)[-1].as_py() for c in order)

    def close(self) -> None:
        self.reader.close()


def _drop_last_ts_group(table: pa.Table, ts_cols: list[str]) -> pa.Table:
    """Drop trailing rows sharing the last row's (coalesced) timestamp."""
    ts = table.column(ts_cols[0])
    for col in ts_cols[1:]:
        ts = pc.coalesce(ts, table.column(col))
    last = ts[-1]
    if not last.is_valid:
        return table
    first_of_group = pc.index(pc.fill_null(pc.equal(ts, last), False), True).as_py()
    return table.slice(0, first_of_group)
