"""Run a SQLAlchemy Core SELECT and get Arrow back, whole or streamed in bounded chunks.

PostgreSQL goes through ADBC (``adbc_driver_postgresql``, binary COPY into Arrow) when installed;
SQLite through ADBC (``adbc_driver_sqlite``) cast to the types the SQLAlchemy path derives, so both
paths return identical tables; every other database (and any SQLite statement the fast path cannot
convert exactly) goes through SQLAlchemy, with column types taken from the statement's result types. Either way the caller gets Arrow whose types follow the SQL types exactly:

==========================  =====================================================================
PostgreSQL                  Arrow
==========================  =====================================================================
smallint / int / bigint     int16 / int32 / int64
numeric(p,s), p <= 38       decimal128(p,s) (``numeric_mapping`` may map it to ints or float64)
numeric (unconstrained)     string (PostgreSQL's text: ``NaN``, ``Infinity``, ``1.50``)
numeric(p,s) holding NaN    an error naming the column (``best_fit`` reads it as float64 NaN)
real / double precision     float32 / float64 (NaN and ±Infinity kept)
bytea                       binary
date / time                 date32 / time64[us]
timestamp / timestamptz     timestamp[us] / timestamp[us, tz=UTC]
interval                    month_day_nano_interval
uuid                        string (canonical, lower case)
arrays                      list<item> (arrays of numeric, uuid, json: list<string>, selected ``::text[]``)
json / jsonb, timetz        string (selected ``::text`` on both paths)
enums and other types       string (the source selects them as ``::text``)
==========================  =====================================================================
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from integrations.sources.sql_pg import (  # noqa: F401 (numeric_type, uuid_strings: re-exported)
    NumericMapping,
    SqlTypeError,
    _numeric_nan_error,
    _pg_exact_intervals,
    fix_pg_types,
    numeric_type,
    uuid_strings,
)
from integrations.sources.sql_streams import merge_streams, prefetch  # noqa: F401 (re-exported)

try:  # optional fast path
    import adbc_driver_postgresql.dbapi as adbc_pg
except ImportError:  # pragma: no cover - exercised only without the driver
    adbc_pg = None
try:  # optional fast path
    import adbc_driver_sqlite.dbapi as adbc_sqlite
except ImportError:  # pragma: no cover - exercised only without the driver
    adbc_sqlite = None

_PG_DOLLAR = postgresql.dialect(paramstyle="numeric_dollar")


def sa_to_arrow(t: sa.types.TypeEngine, mapping: NumericMapping = "none", dialect: str = "") -> pa.DataType | None:
    """The Arrow type for a SQLAlchemy column type (None: untyped, inferred from the values).

    On PostgreSQL (``dialect``) ``integer`` is int32 and ``real`` float32, as the ADBC path reads them;
    elsewhere INTEGER and REAL are 64-bit (SQLite's are)."""
    if isinstance(t, sa.types.NullType):
        return None
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.SmallInteger):
        return pa.int16()
    if dialect == "postgresql" and isinstance(t, sa.Integer) and not isinstance(t, sa.BigInteger):
        return pa.int32()
    if isinstance(t, sa.BigInteger | sa.Integer):
        return pa.int64()
    if dialect == "postgresql" and isinstance(t, sa.REAL):
        return pa.float32()
    if isinstance(t, sa.Float):
        return pa.float32() if getattr(t, "precision", None) and t.precision <= 24 else pa.float64()
    if isinstance(t, sa.Numeric):
        return numeric_type(t.precision, t.scale, mapping)
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if t.timezone else None)
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Time):
        return pa.time64("us")
    if isinstance(t, sa.Interval | postgresql.INTERVAL):
        return pa.month_day_nano_interval()
    if isinstance(t, sa.LargeBinary):
        return pa.binary()
    if isinstance(t, sa.ARRAY):
        return pa.list_(sa_to_arrow(t.item_type, mapping, dialect))
    return pa.string()


def _py_to_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, decimal.Decimal):  # PostgreSQL's text: positional, never 1E-20
        return format(v, "f")
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    return str(v)


def _py_column(col: tuple[Any, ...], typ: pa.DataType | None) -> pa.Array:
    if typ is None:  # a custom query's column on the SQLAlchemy path: infer from the values
        try:
            arr = pa.array(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([_py_to_str(v) for v in col], pa.string())
        return arr if not pa.types.is_null(arr.type) else arr.cast(pa.string())
    if pa.types.is_string(typ):
        col = [_py_to_str(v) for v in col]
    elif pa.types.is_timestamp(typ) and typ.tz:
        col = [v.astimezone(dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo else v for v in col]
    elif pa.types.is_timestamp(typ):
        col = [dt.datetime.fromisoformat(v) if isinstance(v, str) else v for v in col]
    elif pa.types.is_decimal(typ):
        col = [decimal.Decimal(v) if isinstance(v, str | int | float) else v for v in col]
        if any(isinstance(v, decimal.Decimal) and not v.is_finite() for v in col):
            raise _numeric_nan_error("?", typ)
    elif pa.types.is_interval(typ):  # MonthDayNano from psycopg (see _pg_exact_intervals); timedelta elsewhere
        col = [v if v is None or isinstance(v, pa.MonthDayNano) else pa.MonthDayNano(
            [0, v.days, (v.seconds * 1_000_000 + v.microseconds) * 1000]) for v in col]
    elif pa.types.is_floating(typ):
        col = [float(v) if isinstance(v, decimal.Decimal) else v for v in col]
    elif pa.types.is_list(typ) and pa.types.is_interval(typ.value_type):
        # SQLAlchemy's ARRAY result processor takes each MonthDayNano (a tuple) for a nested array
        col = [v if v is None else [pa.MonthDayNano(x) if isinstance(x, list) else x for x in v] for v in col]
    return pa.array(col, type=typ)


def _rows_to_arrow(rows: list[Any], names: list[str], types: list[pa.DataType | None]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for name, col, typ in zip(names, cols, types, strict=True):
        try:
            arrays.append(_py_column(col, typ))
        except SqlTypeError:
            raise _numeric_nan_error(name, typ) from None
    return pa.Table.from_arrays(arrays, names=names)


# -- SQLite through ADBC ---------------------------------------------------------------------------
# ADBC infers a column's Arrow type from the values of the first batch (promoting within it, e.g.
# int -> double -> binary) and fails when a later batch disagrees. So every column is selected
# through a guard that keeps only the storage classes the SQLAlchemy path accepts for its declared
# type (anything else is NULLed and flagged in ``headrace_bad``), and one anchor row with a value
# of each column's storage class goes first, which fixes the batch schema; it is dropped on read.
_SQLITE_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?$"
_SQLITE_DATE = r"^\d{4}-\d{2}-\d{2}$"
_BAD = "headrace_bad"


def _sqlite_plan(t: sa.types.TypeEngine, target: pa.DataType | None) -> tuple[tuple[str, ...], str] | None:
    """(storage classes kept, anchor literal) for a column on SQLite's fast path; None: unsupported."""
    if target is None or isinstance(t, sa.Enum | sa.JSON | sa.PickleType) or type(t).__module__.startswith(
            ("sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.mysql")):
        return None
    if isinstance(t, sa.Boolean) and target == pa.bool_():
        return ("integer",), "0"
    if isinstance(t, sa.Integer) and target in (pa.int16(), pa.int64()):
        return ("integer",), "0"
    if isinstance(t, sa.Float) and not t.asdecimal and target == pa.float64():
        return ("real", "integer"), "0.0"
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float) and pa.types.is_decimal(target) \
            and t.asdecimal and target.precision <= 15:  # ints up to 15 digits survive a double
        return ("real", "integer"), "0.0"
    if isinstance(t, sa.DateTime) and target == pa.timestamp("us"):
        return ("text",), "''"
    if isinstance(t, sa.Date) and not isinstance(t, sa.DateTime) and target == pa.date32():
        return ("text",), "''"
    if isinstance(t, sa.String) and target == pa.string():
        return ("text",), "''"
    if isinstance(t, sa.LargeBinary) and target == pa.binary():
        return ("blob",), "x''"
    return None


def _sqlite_column(col: pa.Array, t: sa.types.TypeEngine, target: pa.DataType,
                   dialect: sa.Dialect) -> pa.Array:
    """One ADBC column as the SQLAlchemy path would build it from the same stored values."""
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), target)
    if pa.types.is_integer(target) or pa.types.is_floating(target) or pa.types.is_string(target) \
            or pa.types.is_binary(target):
        return col if col.type == target else pc.cast(col, target)  # safe casts: overflow raises
    if pa.types.is_boolean(target):
        return pc.not_equal(col, 0)
    if pa.types.is_decimal(target) and t.scale == target.scale:
        # SQLAlchemy formats the stored number with "%.{scale}f"; so do we (C-level map), then
        # Arrow parses the text exactly
        fmt = f"%.{target.scale}f"
        text = pa.array(map(fmt.__mod__, col.fill_null(0).to_pylist()), pa.string())
        return pc.if_else(col.is_valid(), pc.cast(text, target), pa.scalar(None, target))
    pattern = _SQLITE_DATETIME if pa.types.is_timestamp(target) else _SQLITE_DATE
    if not pa.types.is_decimal(target) and pc.all(pc.match_substring_regex(col, pattern)).as_py() is not False:
        return pc.cast(col, target)  # the format SQLAlchemy writes: Arrow parses it exactly
    # other layouts: value by value, with the dialect's own result processor, as SQLAlchemy does
    proc = t.dialect_impl(dialect).result_processor(dialect, None)
    values = col.to_pylist()
    return _py_column(tuple(proc(v) for v in values) if proc else tuple(values), target)


class _Fallback(Exception):
    """A SQLite statement the fast path cannot convert exactly; SQLAlchemy reads it instead."""


#: ``application_name`` of read-only reader sessions (``read_only``): they never write a row
READER_APP = "headrace-sql-reader"


class SqlReader:
    """Executes SELECT statements against one database and returns Arrow tables."""

    def __init__(self, url: str, use_adbc: bool = True, numeric_mapping: NumericMapping = "none",
                 read_only: bool = False) -> None:
        self.url = sa.make_url(url)
        self.read_only = read_only
        self.engine = sa.create_engine(self.url, pool_pre_ping=True, connect_args=self._session_args())
        self.dialect = self.engine.dialect.name
        if self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg":
            sa.event.listen(self.engine, "connect", _pg_exact_intervals)
        self.numeric_mapping = numeric_mapping
        self._adbc = None
        self.adbc_pid: int | None = None
        self._lost = False  # the ADBC session died (e.g. pg_terminate_backend): reconnect before the next read
        if use_adbc and self.dialect == "postgresql" and adbc_pg is not None:
            self._connect_pg()
        elif use_adbc and self.dialect == "sqlite" and adbc_sqlite is not None \
                and self.url.database not in (None, "", ":memory:"):
            self._adbc = adbc_sqlite.connect(self.url.database, autocommit=True)
        self.fallbacks = 0  # SQLite statements read through SQLAlchemy although ADBC is on

    def _session_args(self) -> dict[str, str]:
        """libpq settings of a read-only PostgreSQL session named ``READER_APP`` (else none)."""
        if not self.read_only or not self.url.drivername.startswith(("postgresql", "postgres")):
            return {}
        opts = self.url.query.get("options", "")
        opts = " ".join(opts) if isinstance(opts, tuple) else opts
        return {"options": f"{opts} -c default_transaction_read_only=on".strip(), "application_name": READER_APP}

    def _connect_pg(self) -> None:
        """Open the ADBC PostgreSQL session (and note its backend pid for the transaction guard)."""
        self._adbc = adbc_pg.connect(self._libpq_uri(), autocommit=True)
        with self._adbc.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.adbc_pid = int(cur.fetchone()[0])
        self._lost = False

    def _pg_session(self) -> Any:
        """The live ADBC PostgreSQL session, reopened first when the last one was lost."""
        if self._lost:
            self._connect_pg()
        return self._adbc

    def _raise_if_lost(self, error: BaseException) -> None:
        """After a failed PostgreSQL read: if the session itself is gone (terminated backend, server
        restart, network), raise ``ConnectionError`` so the run retries on a new session. A session
        that still answers means the error was the statement's own, which the caller re-raises."""
        try:
            with self._adbc.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
            return
        except Exception:  # noqa: BLE001 - any failure of the probe means the session is unusable
            pass
        with contextlib.suppress(Exception):  # closing a dead session may fail too; it is dropped either way
            self._adbc.close()
        self._lost = True
        raise ConnectionError(f"the database session was lost while reading: {error}") from error

    def _libpq_uri(self) -> str:
        # query parameters percent-encoded (SQLAlchemy renders a space as "+", which libpq keeps as a
        # plus: ``options=-c TimeZone=UTC`` would reach the server as ``-c+TimeZone=UTC``)
        # the session is read-only and named READER_APP: the source's transaction guard may then ignore
        # its open transactions and those of the connector's other tasks (they can never write a row)
        base = self.url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        items = {**dict(self.url.query), **self._session_args()}
        query = urllib.parse.urlencode(list(items.items()), doseq=True, quote_via=urllib.parse.quote)
        return f"{base}?{query}" if query else base

    @property
    def uses_adbc(self) -> bool:
        """True when reads go through the Arrow-native driver."""
        return self._adbc is not None

    def scalar(self, stmt: sa.ClauseElement) -> Any:
        """One value from a small query (bounds, maxima)."""
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()

    def row(self, stmt: sa.ClauseElement) -> Any:
        """One row from a small query."""
        with self.engine.connect() as conn:
            return conn.execute(stmt).one()

    def fetch(self, stmt: sa.Select) -> pa.Table:
        """Run a SELECT and return all its rows as Arrow (callers bound it with LIMIT)."""
        chunks = list(self.stream(stmt, 1 << 62, background=False))
        if not chunks:
            return self._empty(stmt)
        return pa.concat_tables(chunks) if len(chunks) > 1 else chunks[0]

    def _empty(self, stmt: sa.Select) -> pa.Table:
        if self._adbc is not None and self.dialect == "postgresql":
            with self._pg_session().cursor() as cur:
                compiled = stmt.limit(0).compile(dialect=_PG_DOLLAR)
                cur.execute(compiled.string, [compiled.params[n] for n in compiled.positiontup or []] or None)
                return fix_pg_types(cur.fetch_arrow_table(), self.numeric_mapping)
        names = [c.name for c in stmt.selected_columns]
        types = [sa_to_arrow(c.type, self.numeric_mapping, self.dialect) for c in stmt.selected_columns]
        return _rows_to_arrow([], names, types)

    def stream(self, stmt: sa.Select, chunk_rows: int, background: bool = True) -> Iterator[pa.Table]:
        """Yield the result in tables of about ``chunk_rows`` rows; memory holds one or two chunks.

        With ``background`` the next chunk is read in a thread while the caller handles this one."""
        if self._adbc is None:
            it = self._stream_sa(stmt, chunk_rows)
        elif self.dialect == "sqlite":
            it = self._stream_sqlite(stmt, chunk_rows)
        else:
            it = self._stream_adbc(stmt, chunk_rows)
        return prefetch(it) if background else it

    def _stream_adbc(self, stmt: sa.Select, chunk_rows: int) -> Iterator[pa.Table]:
        # Bounds are rendered as SQL literals (escaped by SQLAlchemy): with bind parameters the
        # driver cannot use COPY and buffers the whole result in libpq, so memory would grow.
        try:
            compiled = stmt.compile(dialect=_PG_DOLLAR, compile_kwargs={"literal_binds": True})
            params: list[Any] = []
        except (sa.exc.CompileError, NotImplementedError):
            compiled = stmt.compile(dialect=_PG_DOLLAR)
            params = [compiled.params[name] for name in compiled.positiontup or []]
        cur = self._pg_session().cursor()
        try:
            try:
                cur.execute(compiled.string, params or None)
                reader = cur.fetch_record_batch()
            except Exception as e:
                self._raise_if_lost(e)
                raise
            pending: list[pa.RecordBatch] = []
            rows = 0
            while True:
                try:
                    rb = next(reader, None)
                except Exception as e:  # libpq errors surface here as a plain OSError
                    self._raise_if_lost(e)
                    raise
                if rb is None:
                    break
                pending.append(rb)
                rows += rb.num_rows
                while rows >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield fix_pg_types(table.slice(0, chunk_rows), self.numeric_mapping)
                    rest = table.slice(chunk_rows)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows:
                yield fix_pg_types(pa.Table.from_batches(pending), self.numeric_mapping)
        finally:
            try:
                cur.close()
            except Exception:  # noqa: BLE001 - the cursor of a lost session cannot be closed cleanly
                if not self._lost:
                    raise

    def _sqlite_select(self, stmt: sa.Select) -> str | None:
        """The guarded, anchored SQL for ``stmt`` with bounds inlined; None if not eligible."""
        types = [sa_to_arrow(c.type, self.numeric_mapping, self.dialect) for c in stmt.selected_columns]
        plans = [_sqlite_plan(c.type, t) for c, t in zip(stmt.selected_columns, types, strict=True)]
        names = [c.name for c in stmt.selected_columns]
        if any(p is None for p in plans) or len(set(names)) != len(names) or _BAD in names:
            return None
        inner = stmt.subquery("headrace_s")
        cols, bad, anchor = [], [], []
        for (kinds, literal), c in zip(plans, inner.c, strict=True):
            ok = sa.func.typeof(c).in_([*kinds, "null"])
            value = sa.cast(c, sa.Float) if "real" in kinds else c
            cols.append(sa.case((ok, value)).label(c.name))
            bad.append(~ok)
            anchor.append(sa.literal_column(literal).label(c.name))
        body = sa.select(*cols, sa.case((sa.or_(*bad), 1), else_=0).label(_BAD))
        head = sa.select(*anchor, sa.literal_column("0").label(_BAD))
        try:  # literals (escaped by SQLAlchemy), as SQLAlchemy's own bind processors render them
            return str(sa.union_all(head, body).compile(dialect=self.engine.dialect,
                                                        compile_kwargs={"literal_binds": True}))
        except (sa.exc.CompileError, NotImplementedError):
            return None

    def _stream_sqlite(self, stmt: sa.Select, chunk_rows: int) -> Iterator[pa.Table]:
        sql = self._sqlite_select(stmt)
        if sql is None:
            self.fallbacks += 1
            yield from self._stream_sa(stmt, chunk_rows)
            return
        sel = list(stmt.selected_columns)
        targets = [sa_to_arrow(c.type, self.numeric_mapping, self.dialect) for c in sel]
        names = [c.name for c in sel]
        dialect = self.engine.dialect

        def convert(batches: list[pa.RecordBatch]) -> pa.Table:
            table = pa.Table.from_batches(batches).combine_chunks()
            if pc.any(pc.not_equal(table.column(_BAD), 0)).as_py():
                raise _Fallback
            arrays = [_sqlite_column(table.column(i).chunk(0) if table.num_rows else
                                     pa.array([], table.schema.field(i).type), c.type, t, dialect)
                      for i, (c, t) in enumerate(zip(sel, targets, strict=True))]
            return pa.Table.from_arrays(arrays, names=names)

        yielded = False
        cur = self._adbc.cursor()
        try:
            cur.execute(sql)
            pending: list[pa.RecordBatch] = []
            rows, first = 0, True
            for rb in cur.fetch_record_batch():
                if first:
                    rb, first = rb.slice(1), False  # the anchor row
                pending.append(rb)
                rows += rb.num_rows
                while rows >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    out = convert(table.slice(0, chunk_rows).to_batches())
                    rest = table.slice(chunk_rows)
                    pending, rows = rest.to_batches(), rest.num_rows
                    yielded = True
                    yield out
            if rows:
                out = convert(pending)
                yielded = True
                yield out
        except (_Fallback, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError) as e:
            if yielded:  # part of the result is out already; a re-read could not line up with it
                raise RuntimeError("SQLite fast path: a value whose storage class does not match its "
                                   "declared column type appeared after part of the result was "
                                   "returned; read this source with use_adbc off") from e
            cur.close()
            self.fallbacks += 1
            yield from self._stream_sa(stmt, chunk_rows)
        finally:
            cur.close()

    def _stream_sa(self, stmt: sa.Select, chunk_rows: int) -> Iterator[pa.Table]:
        types = [sa_to_arrow(c.type, self.numeric_mapping, self.dialect) for c in stmt.selected_columns]
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(stmt)
            names = list(result.keys())
            while True:
                rows = result.fetchmany(min(chunk_rows, 100_000))
                if not rows:
                    return
                yield _rows_to_arrow(rows, names, types)

    def close(self) -> None:
        """Close connections."""
        if self._adbc is not None and not self._lost:
            self._adbc.close()
        self._adbc = None
        self.engine.dispose()

