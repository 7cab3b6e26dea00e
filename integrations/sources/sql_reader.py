"""Run a SQLAlchemy Core SELECT and get Arrow back, whole or streamed in bounded chunks.

PostgreSQL goes through ADBC (``adbc_driver_postgresql``, binary COPY into Arrow) when installed;
every other database goes through SQLAlchemy, with column types taken from the statement's result
types. Either way the caller gets Arrow whose types follow the SQL types exactly:

==========================  =====================================================================
PostgreSQL                  Arrow
==========================  =====================================================================
smallint / int / bigint     int16 / int32 / int64
numeric(p,s), p <= 38       decimal128(p,s) (``numeric_mapping`` may map it to ints or float64)
numeric (unconstrained)     string (exact text; ``NaN`` stays ``NaN``)
real / double precision     float32 / float64 (NaN and ±Infinity kept)
bytea                       binary
date / time                 date32 / time64[us]
timestamp / timestamptz     timestamp[us] / timestamp[us, tz=UTC]
interval                    month_day_nano_interval
uuid                        string (canonical, lower case)
json / jsonb                string (the JSON text as PostgreSQL returns it)
arrays                      list<item>
enums and other types       string (the source selects them as ``::text``)
==========================  =====================================================================
"""

from __future__ import annotations

import datetime as dt
import decimal
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

try:  # optional fast path
    import adbc_driver_postgresql.dbapi as adbc_pg
except ImportError:  # pragma: no cover - exercised only without the driver
    adbc_pg = None

_PG_DOLLAR = postgresql.dialect(paramstyle="numeric_dollar")
NumericMapping = str  # "none" | "precision_only" | "best_fit"


def _int_for_precision(precision: int) -> pa.DataType | None:
    if precision <= 4:
        return pa.int16()
    if precision <= 9:
        return pa.int32()
    if precision <= 18:
        return pa.int64()
    return None


def numeric_type(precision: int | None, scale: int | None, mapping: NumericMapping = "none") -> pa.DataType:
    """The Arrow type of ``numeric(precision, scale)`` under Kafka Connect's ``numeric.mapping``."""
    scale = scale or 0
    if mapping in ("precision_only", "best_fit") and precision and scale == 0:
        t = _int_for_precision(precision)
        if t is not None:
            return t
    if mapping == "best_fit" and (not precision or scale > 0 or precision > 18):
        return pa.float64()
    if precision and precision <= 38:
        return pa.decimal128(precision, scale)
    return pa.string()


def sa_to_arrow(t: sa.types.TypeEngine, mapping: NumericMapping = "none") -> pa.DataType | None:
    """The Arrow type for a SQLAlchemy column type (None: untyped, inferred from the values)."""
    if isinstance(t, sa.types.NullType):
        return None
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.SmallInteger):
        return pa.int16()
    if isinstance(t, sa.BigInteger | sa.Integer):
        return pa.int64()
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
        return pa.list_(sa_to_arrow(t.item_type, mapping))
    return pa.string()


def _py_to_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
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
    elif pa.types.is_interval(typ):
        col = [None if v is None else pa.MonthDayNano(
            [0, v.days, (v.seconds * 1_000_000 + v.microseconds) * 1000]) for v in col]
    elif pa.types.is_floating(typ):
        col = [float(v) if isinstance(v, decimal.Decimal) else v for v in col]
    return pa.array(col, type=typ)


def _rows_to_arrow(rows: list[Any], names: list[str], types: list[pa.DataType | None]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [_py_column(col, typ) for col, typ in zip(cols, types, strict=True)]
    return pa.Table.from_arrays(arrays, names=names)


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


def uuid_strings(storage: pa.Array) -> pa.Array:
    """16-byte UUIDs (fixed_size_binary) as canonical strings, vectorised with numpy."""
    storage = storage.cast(pa.binary(16)) if not pa.types.is_fixed_size_binary(storage.type) else storage
    n = len(storage)
    if n == 0:
        return pa.array([], pa.string())
    buf = storage.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.uint8, count=(storage.offset + n) * 16)[storage.offset * 16:]
    hexed = _HEX[raw].reshape(n, 16)
    parts = [hexed[:, a:b].copy().view(f"S{2 * (b - a)}").ravel() for a, b in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 16))]
    arrs = [pa.array(p, pa.binary()).cast(pa.string()) for p in parts]
    out = pc.binary_join_element_wise(*arrs, "-")
    return pc.if_else(storage.is_valid(), out, pa.scalar(None, pa.string()))


def _fix_column(col: pa.ChunkedArray, meta: dict[bytes, bytes], mapping: NumericMapping) -> pa.ChunkedArray:
    typ = col.type
    pg_type = meta.get(b"POSTGRESQL:type", b"")
    if isinstance(typ, pa.BaseExtensionType):
        col = pa.chunked_array([c.storage for c in col.chunks], type=typ.storage_type)
    if pg_type == b"numeric":
        typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
        precision, scale = (((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF) if typmod >= 4 else (None, 0)
        target = numeric_type(precision, scale, mapping)
        if target != pa.string():
            try:
                return pc.cast(col, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return col  # NaN / ±Infinity in a numeric column: keep the exact text
        return col
    if pg_type == b"uuid":
        return pa.chunked_array([uuid_strings(c) for c in col.chunks], type=pa.string())
    if isinstance(typ, pa.BaseExtensionType) and pa.types.is_binary(col.type):
        try:  # enums and other opaque types from a custom query: their text, when it is UTF-8
            return pc.cast(col, pa.string())
        except pa.ArrowInvalid:
            return col
    return col


def fix_pg_types(table: pa.Table, mapping: NumericMapping = "none") -> pa.Table:
    """Turn ADBC's PostgreSQL-specific columns into plain Arrow types and drop driver metadata."""
    cols, fields = [], []
    for f, col in zip(table.schema, table.columns, strict=True):
        col = _fix_column(col, f.metadata or {}, mapping)
        cols.append(col)
        fields.append(pa.field(f.name, col.type, nullable=True))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def prefetch(it: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Run ``it`` in a background thread, ``depth`` items ahead (reading overlaps producing)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            item = (done, None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            item = (done, e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    t = threading.Thread(target=work, name="headrace-sql-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        t.join()


class SqlReader:
    """Executes SELECT statements against one database and returns Arrow tables."""

    def __init__(self, url: str, use_adbc: bool = True, numeric_mapping: NumericMapping = "none") -> None:
        self.url = sa.make_url(url)
        self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        self.numeric_mapping = numeric_mapping
        self._adbc = None
        self.adbc_pid: int | None = None
        if use_adbc and self.dialect == "postgresql" and adbc_pg is not None:
            self._adbc = adbc_pg.connect(self._libpq_uri(), autocommit=True)
            with self._adbc.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                self.adbc_pid = int(cur.fetchone()[0])

    def _libpq_uri(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

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
        if self._adbc is not None:
            with self._adbc.cursor() as cur:
                compiled = stmt.limit(0).compile(dialect=_PG_DOLLAR)
                cur.execute(compiled.string, [compiled.params[n] for n in compiled.positiontup or []] or None)
                return fix_pg_types(cur.fetch_arrow_table(), self.numeric_mapping)
        names = [c.name for c in stmt.selected_columns]
        types = [sa_to_arrow(c.type, self.numeric_mapping) for c in stmt.selected_columns]
        return _rows_to_arrow([], names, types)

    def stream(self, stmt: sa.Select, chunk_rows: int, background: bool = True) -> Iterator[pa.Table]:
        """Yield the result in tables of about ``chunk_rows`` rows; memory holds one or two chunks.

        With ``background`` the next chunk is read in a thread while the caller handles this one."""
        it = self._stream_adbc(stmt, chunk_rows) if self._adbc is not None else self._stream_sa(stmt, chunk_rows)
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
        cur = self._adbc.cursor()
        try:
            cur.execute(compiled.string, params or None)
            reader = cur.fetch_record_batch()
            pending: list[pa.RecordBatch] = []
            rows = 0
            for rb in reader:
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
            cur.close()

    def _stream_sa(self, stmt: sa.Select, chunk_rows: int) -> Iterator[pa.Table]:
        types = [sa_to_arrow(c.type, self.numeric_mapping) for c in stmt.selected_columns]
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
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None
        self.engine.dispose()

