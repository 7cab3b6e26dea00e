"""SQL table source with Kafka Connect JDBC's modes, over SQLAlchemy Core (identifiers always quoted).

Queries per mode (``inc`` = incrementing column, ``ts`` = timestamp columns coalesced in order):

- bulk: the whole table, streamed in chunks; no offset stored.
- incrementing: ``WHERE inc > :last AND inc <= :safe ORDER BY inc``.
- timestamp: ``WHERE ts > :last AND ts < :upper ORDER BY ts``; a chunk never ends inside a group of
  rows sharing one timestamp, so the stored offset never splits a group.
- timestamp+incrementing: ``WHERE ts < :upper AND ((ts = :ts AND inc > :inc) OR ts > :ts)
  ORDER BY ts, inc``.

Each poll runs one bounded query and streams it in chunks of ``batch_max_rows`` (the next chunk is
read while the runner produces this one), so memory stays flat whatever the table size.

Parallel bulk reads (``split``, ``read_ranges``): in bulk mode a table with an integer key (the
incrementing column, else the first key column, else a one-column primary key) is read as
``tasks × read_ranges`` contiguous key ranges between its ``min`` and ``max``; this task reads its
``read_ranges`` of them at once, one session each, and rows with a NULL key go with range 0. The
ranges never overlap and leave no gap, so the rows are exactly the table's rows (each range is read in
its own snapshot: as for any bulk read, rows written during the read may or may not be included). A
table without an integer key is read whole by task 0. In ``incrementing`` mode the first load of a
table (no stored offset) is read in ``read_ranges`` key ranges of the incrementing column at once,
within one task, with per-range progress in the offset (``_ranged_first_load``); the no-skip bound
is the guard's safe id. Timestamp modes are not split.

No skipped rows (``transaction_guard``, PostgreSQL): ``:upper`` is the smallest of the database clock
minus ``timestamp_delay`` and the start of the oldest transaction still open in the database
(``pg_stat_activity.xact_start``); a row written by an open transaction has a timestamp at or after
its start, so it is never passed. For ``incrementing`` mode, ``:safe`` is the highest id that was
committed before the oldest open transaction began: each poll records ``(clock, max(inc))`` samples
in the offset, and only samples older than every open transaction are trusted. See docs/sql-source.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from integrations.config import SqlSourceConfig, resolve_url
from integrations.errors import ConfigError
from integrations.sources.base import Source, SourceBatch
from integrations.sources.sql_ranges import KeyRanges
from integrations.sources.sql_reader import READER_APP, SqlReader, SqlTypeError

log = logging.getLogger("headrace.source.sql")

MAX_SAMPLES = 8
# Headrace's own reader sessions (read-only: ``default_transaction_read_only``) never write a row, so
# their open transactions (a task's long COPY while another task polls) do not hold the bound back
_OLDEST_OPEN_XACT = """(SELECT min(xact_start) FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> {pid}
    AND xact_start IS NOT NULL AND backend_type = 'client backend'
    AND application_name IS DISTINCT FROM '""" + READER_APP + """')"""
_OLDEST_PREPARED = "(SELECT min(prepared) FROM pg_prepared_xacts WHERE database = current_database())"
# Types read as they are; anything else (enums, inet, money, ...) is selected as ``::text`` on PostgreSQL.
_NATIVE = (sa.Integer, sa.Numeric, sa.Float, sa.Boolean, sa.String, sa.LargeBinary, sa.Date, sa.Time, sa.DateTime,
           sa.Interval, pg.INTERVAL, sa.Uuid)
# json/jsonb are selected ::text too: psycopg would parse them (JSON null became SQL NULL, 2.50 became 2.5)
# Array items read as text[] although native on their own: their fix-ups (numeric text and NaN,
# uuid strings) apply to top-level columns only
_TEXT_ITEMS = (sa.Uuid,)


def _native(t: sa.types.TypeEngine, item: bool = False) -> bool:
    """True when PostgreSQL's column type is read as it is (else it is selected as text)."""
    if not isinstance(t, _NATIVE) or isinstance(t, sa.Enum):
        return False
    if isinstance(t, sa.Time) and t.timezone:  # timetz: ADBC hands over its wire bytes
        return False
    exact_text = isinstance(t, _TEXT_ITEMS) or (isinstance(t, sa.Numeric) and not isinstance(t, sa.Float))
    return not (item and exact_text)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime | dt.date) else v


def _matches(patterns: list[str], *names: str) -> bool:
    return any(re.fullmatch(p, n) for p in patterns for n in names)


def list_tables(config: SqlSourceConfig, engine: sa.Engine | None = None) -> list[str]:
    """The source partitions' names now: listed tables plus those matching ``table_include``.

    Cheap (catalog only), so the Dagster layer may call it at definition time or in a sensor.
    Names are bare in the default schema, ``schema.table`` otherwise; ``["query"]`` for a query."""
    if config.query:
        return ["query"]
    found = list(config.tables)
    if not config.table_include:
        return found
    own = engine is None
    engine = engine or sa.create_engine(resolve_url(config.connection_url))
    try:
        insp = sa.inspect(engine)
        if config.schema_pattern:
            schemas: list[str | None] = [
                s for s in insp.get_schema_names() if re.fullmatch(config.schema_pattern, s)
            ]
        else:
            schemas = [None]
        for schema in schemas:
            for name in sorted(insp.get_table_names(schema=schema)):
                qual = f"{schema}.{name}" if schema else name
                if not _matches(config.table_include, name, qual) or _matches(config.table_exclude, name, qual):
                    continue
                problem = config.topic_problem(qual)  # checked after the transforms' routers
                if problem:
                    log.warning("connector %s: table %r skipped: %s", config.name, qual, problem)
                    continue
                if qual not in found:
                    found.append(qual)
    finally:
        if own:
            engine.dispose()
    return found


class SqlSource(KeyRanges, Source):
    """Reads tables (or a custom query) in the configured mode."""

    def __init__(self, config: SqlSourceConfig, use_adbc: bool = True) -> None:
        self.config = config
        self.reader = SqlReader(resolve_url(config.connection_url), use_adbc=use_adbc,
                                numeric_mapping=config.numeric_mapping, read_only=True)
        self._meta = sa.MetaData()
        self._tables: dict[str, sa.FromClause] = {}
        #: (this task's index, tasks) splitting a bulk table into key ranges; (0, 1): not split
        self.split: tuple[int, int] = (0, 1)
        #: key ranges of a bulk table this task reads at once (one session each)
        self.read_ranges = 1
        self._extra: list[SqlReader] = []
        self._use_adbc = use_adbc
        try:
            self.zone = self._resolve_zone()
        except BaseException:
            self.reader.close()  # refused at start: leave no session open
            raise

    def _resolve_zone(self) -> zoneinfo.ZoneInfo:
        """The zone of wall-clock timestamp columns: the server's own on PostgreSQL (its session
        ``TimeZone``), refusing a configured ``db_timezone`` that disagrees; UTC or the configured
        zone elsewhere (SQLite's ``CURRENT_TIMESTAMP`` is UTC; other servers are not asked)."""
        c = self.config
        configured = c.db_timezone if "db_timezone" in c.model_fields_set else None
        if self.reader.dialect != "postgresql":
            return zoneinfo.ZoneInfo(configured or "UTC")
        server = str(self.reader.scalar(sa.text("SELECT current_setting('TimeZone')")))
        try:
            if server.lower() == "localtime":  # the server machine's zone, which this machine cannot know
                raise ValueError(server)
            server_zone = zoneinfo.ZoneInfo(server)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"connector {c.name}: the database's TimeZone {server!r} is not an IANA zone name; set the "
                "database's (or the connector's session) TimeZone to one, e.g. America/New_York") from None
        if configured is None:
            return server_zone
        zone = zoneinfo.ZoneInfo(configured)
        if not same_zone(zone, server_zone):
            raise ConfigError(
                f"connector {c.name}: db_timezone {configured!r} disagrees with the database's TimeZone "
                f"{server!r}; the source would misplace open transactions and could skip rows. Remove "
                "db_timezone (the server's zone is used), or set the connector's session zone in the "
                "connection URL (?options=-c%20TimeZone%3D<zone>) if the columns hold another zone's wall time")
        return zone

    # -- structure ------------------------------------------------------------------------------
    def partitions(self) -> list[dict[str, Any]]:
        """One partition per table (discovered again on every call), or the custom query."""
        if self.config.query:
            return [{"query": "query"}]
        return [{"table": t} for t in list_tables(self.config, self.reader.engine)]

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
        c = self.config
        wanted = [c.incrementing_column, *(c.timestamp_column or []), *c.key_columns]
        missing = [col for col in wanted if col and col not in src.c]
        if missing:
            raise ConfigError(
                f"connector {c.name}: column(s) {missing} not in {key!r} (columns: {list(src.c.keys())})"
            )
        if c.validate_non_null and isinstance(src, sa.Table) and c.mode != "bulk":
            checked = [col for col in (c.incrementing_column, *(c.timestamp_column or [])) if col]
            nullable = [col for col in checked if src.c[col].nullable]
            if nullable:
                raise ConfigError(f"connector {c.name}: column(s) {nullable} of {key!r} are nullable "
                                  "(validate_non_null is on; add NOT NULL or set validate_non_null: false)")
        if c.timestamp_column and c.mode != "bulk" and isinstance(src, sa.Table) and self._naive_ts(src) \
                and _has_dst(self.zone):
            log.warning("connector %s: table %r: timestamp column %r has no time zone and %s has daylight "
                        "saving time: rows written in the repeated hour at fall-back can be skipped; use "
                        "timestamptz or a UTC zone (docs/sql-source.md, Time zones)",
                        c.name, key, c.timestamp_column[0], self.zone.key)

    def _columns(self, src: sa.FromClause) -> list[Any]:
        """The select list: every column, with types Arrow cannot carry selected as text on PostgreSQL."""
        if self.reader.dialect != "postgresql" or not isinstance(src, sa.Table):
            return list(src.c)
        out: list[Any] = []
        for col in src.c:
            t = col.type
            if isinstance(t, sa.ARRAY):
                native = _native(t.item_type, item=True)
                out.append(col if native else sa.cast(col, pg.ARRAY(sa.Text)).label(col.name))
            elif _native(t):
                out.append(col)
            else:
                out.append(sa.cast(col, sa.Text).label(col.name))
        return out

    def _ts_expr(self, src: sa.FromClause) -> sa.ColumnElement[Any]:
        cols = [src.c[c] for c in self.config.timestamp_column or []]
        return cols[0] if len(cols) == 1 else sa.func.coalesce(*cols)

    def _naive_ts(self, src: sa.FromClause) -> bool:
        t = src.c[self.config.timestamp_column[0]].type
        return isinstance(t, sa.DateTime) and not t.timezone or not isinstance(t, sa.DateTime)

    def _to_column_zone(self, v: dt.datetime, src: sa.FromClause) -> dt.datetime:
        """An instant as the timestamp column compares it (wall time in ``db_timezone`` if naive)."""
        if self._naive_ts(src) and v.tzinfo is not None:
            return v.astimezone(self.zone).replace(tzinfo=None)
        if not self._naive_ts(src) and v.tzinfo is None:
            return v.replace(tzinfo=self.zone)
        return v

    def _guarded(self) -> bool:
        return self.config.transaction_guard and self.reader.dialect == "postgresql"

    def _horizon(self, src: sa.FromClause | None = None) -> tuple[dt.datetime, dt.datetime | None, Any]:
        """(database clock, start of the oldest open transaction or None, max(incrementing) or None)."""
        if self.reader.dialect == "postgresql":
            cols: list[Any] = [sa.func.clock_timestamp()]
            if self._guarded():
                pid = int(self.reader.adbc_pid or 0)
                cols += [sa.literal_column(_OLDEST_OPEN_XACT.format(pid=pid)), sa.literal_column(_OLDEST_PREPARED)]
            else:
                cols += [sa.null(), sa.null()]
        else:
            cols = [sa.func.current_timestamp(), sa.null(), sa.null()]
        if src is not None and self.config.incrementing_column:
            cols.append(sa.select(sa.func.max(src.c[self.config.incrementing_column])).scalar_subquery())
        else:
            cols.append(sa.null())
        now, oldest, prepared, top = self.reader.row(sa.select(*cols))
        if isinstance(now, str):
            now = dt.datetime.fromisoformat(now)
        if now.tzinfo is None:  # SQLite's CURRENT_TIMESTAMP is UTC
            now = now.replace(tzinfo=dt.UTC)
        opens = [t for t in (oldest, prepared) if t is not None]
        return now, (min(opens) if opens else None), top

    def upper_bound(self, src: sa.FromClause | None = None) -> dt.datetime:
        """The timestamp bound: database clock minus ``timestamp_delay``, capped by the oldest open
        transaction's start on PostgreSQL."""
        now, oldest, _ = self._horizon()
        upper = now - dt.timedelta(seconds=self.config.timestamp_delay)
        if oldest is not None and oldest < upper:
            upper = oldest
        return self._to_column_zone(upper, src) if src is not None else upper

    def _safe_increment(self, src: sa.FromClause, offset: dict[str, Any]) -> tuple[Any, list[list[Any]]]:
        """The highest id safe to read in incrementing mode, and the samples to store with the offset."""
        now, oldest, top = self._horizon(src)
        samples = [s for s in offset.get("safe_samples", []) if isinstance(s, list) and len(s) == 2]
        if top is not None:
            samples = [*samples, [now.isoformat(), top]][-MAX_SAMPLES:]
        if oldest is None:
            return top, samples
        trusted = [h for t, h in samples if dt.datetime.fromisoformat(t) < oldest]
        safe = max(trusted) if trusted else None
        # keep the newest trusted sample plus everything newer; older ones can never matter again
        keep = [s for s in samples if dt.datetime.fromisoformat(s[0]) >= oldest]
        newest_trusted = [s for s in samples if dt.datetime.fromisoformat(s[0]) < oldest][-1:]
        return safe, (newest_trusted + keep)[-MAX_SAMPLES:]

    # -- reading --------------------------------------------------------------------------------
    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        """The partition's rows after ``offset``, in chunks each carrying the offset of its last row."""
        try:
            yield from self._poll(partition, offset)
        except SqlTypeError as e:
            where = partition.get("table", "query")
            raise SqlTypeError(f"connector {self.config.name}, table {where!r}: {e}") from None

    def _poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        src = self._from(partition)
        name = partition.get("table", "query")
        topic = self.config.topic_for(name)
        mode = self.config.mode
        offset = dict(offset or {})
        limit = self.config.max_rows_per_run
        if mode == "bulk":
            stmt = sa.select(*self._columns(src))
            stmt = stmt.limit(limit) if limit else stmt
            for table in self._bulk_tables(src, stmt, name, limit):
                yield SourceBatch(partition=partition, topic=topic, records=table, offset=None)
            return
        safe_inc, samples = None, None
        upper = None
        if mode == "incrementing":
            if self._guarded():
                safe_inc, samples = self._safe_increment(src, offset)
                if "snapshot" not in offset and (safe_inc is None or (
                        "incrementing" in offset and safe_inc <= offset["incrementing"])):
                    if samples != offset.get("safe_samples"):  # persist the new sample, no rows
                        offset["safe_samples"] = samples
                        yield SourceBatch(partition, topic, self._empty(src), dict(offset))
                    return
            if self._first_load_in_ranges(src, offset, limit):
                yield from self._ranged_first_load(src, partition, topic, offset, safe_inc, samples)
                return
        else:
            upper = self.upper_bound(src)
        stmt = self._incremental_select(src, offset, upper, safe_inc)
        stmt = stmt.limit(limit) if limit else stmt
        yield from self._chunks(stmt, src, partition, topic, offset, samples, limit)

    def _empty(self, src: sa.FromClause) -> pa.Table:
        return self.reader.fetch(sa.select(*self._columns(src)).limit(0))

    def _chunks(self, stmt: sa.Select, src: sa.FromClause, partition: dict[str, Any], topic: str,
                offset: dict[str, Any], samples: list[list[Any]] | None, limit: int | None
                ) -> Iterator[SourceBatch]:
        """Stream one bounded query; each chunk carries the offset of its last row."""
        ts_mode = self.config.mode == "timestamp"
        held: pa.Table | None = None  # timestamp mode: the trailing group of the last chunk
        total = 0
        for table in self.reader.stream(stmt, self.config.batch_max_rows):
            total += table.num_rows
            if ts_mode:
                table = pa.concat_tables([held, table]) if held is not None and held.num_rows else table
                cut = _last_ts_group_start(table, self.config.timestamp_column or [])
                table, held = table.slice(0, cut), table.slice(cut)
                if table.num_rows == 0:
                    continue
            offset = self._advance(offset, table)
            if samples is not None:
                offset["safe_samples"] = samples
            yield SourceBatch(partition=partition, topic=topic, records=table, offset=dict(offset))
        # the query was complete below the bound, so the last group is whole unless LIMIT cut it
        if held is not None and held.num_rows and not (limit and total >= limit):
            offset = self._advance(offset, held)
            yield SourceBatch(partition=partition, topic=topic, records=held, offset=dict(offset))

    def _incremental_select(self, src: sa.FromClause, offset: dict[str, Any], upper: Any,
                            safe_inc: Any = None) -> sa.Select:
        mode, c = self.config.mode, self.config
        stmt = sa.select(*self._columns(src))
        if mode == "incrementing":
            inc = src.c[c.incrementing_column]
            if "incrementing" in offset:
                stmt = stmt.where(inc > offset["incrementing"])
            if safe_inc is not None:
                stmt = stmt.where(inc <= safe_inc)
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
            if "incrementing" in offset:
                stmt = stmt.where(sa.or_(sa.and_(ts == last_ts, inc > offset["incrementing"]), ts > last_ts))
            else:
                stmt = stmt.where(ts >= last_ts)  # timestamp_initial: rows at that instant included
        return stmt.order_by(ts, inc)

    def _last_ts(self, offset: dict[str, Any], src: sa.FromClause) -> dt.datetime | None:
        if "timestamp" in offset:
            v = dt.datetime.fromisoformat(offset["timestamp"])
        elif self.config.timestamp_initial:
            v = dt.datetime.fromisoformat(self.config.timestamp_initial)
        else:
            return None
        return self._to_column_zone(v, src)

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

    def close(self) -> None:
        """Close every session."""
        for r in self._extra:
            r.close()
        self._extra = []
        self.reader.close()


_ZONE_PROBES = [dt.datetime(1970, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=d) for d in range(80 * 366)]


def same_zone(a: zoneinfo.ZoneInfo, b: zoneinfo.ZoneInfo) -> bool:
    """True when two zones give the same UTC offset at daily instants over 1970-2049 (aliases such
    as US/Eastern and America/New_York, or Etc/UTC and UTC, are the same zone)."""
    if a.key == b.key:
        return True
    return all(p.astimezone(a).utcoffset() == p.astimezone(b).utcoffset() for p in _ZONE_PROBES)


def _has_dst(zone: zoneinfo.ZoneInfo) -> bool:
    """True when ``zone``'s UTC offset changes within the current year (its wall times can repeat)."""
    year = dt.datetime.now(dt.UTC).year
    offsets = {dt.datetime(year, m, 1, 12, tzinfo=dt.UTC).astimezone(zone).utcoffset() for m in range(1, 13)}
    return len(offsets) > 1


def _last_ts_group_start(table: pa.Table, ts_cols: list[str]) -> int:
    """Index of the first row sharing the last row's (coalesced) timestamp (rows are sorted by it)."""
    if table.num_rows == 0:
        return 0
    ts = table.column(ts_cols[0])
    for col in ts_cols[1:]:
        ts = pc.coalesce(ts, table.column(col))
    last = ts[-1]
    if not last.is_valid:
        return table.num_rows
    return pc.index(pc.fill_null(pc.equal(ts, last), False), True).as_py()
