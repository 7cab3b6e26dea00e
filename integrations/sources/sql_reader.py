"""Run a SQLAlchemy Core SELECT and get Arrow back.

PostgreSQL goes through ADBC (``adbc_driver_postgresql``, binary COPY into Arrow) when installed;
every other database goes through SQLAlchemy, with column types taken from the statement's result
types. Either way the caller gets a ``pyarrow.Table`` whose types follow the SQL types exactly
(``numeric(p,s)`` → ``decimal128(p,s)``, ``timestamptz`` → ``timestamp[us, tz=UTC]``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

try:  # optional fast path
    import adbc_driver_postgresql.dbapi as adbc_pg
except ImportError:  # pragma: no cover - exercised only without the driver
    adbc_pg = None

_PG_DOLLAR = postgresql.dialect(paramstyle="numeric_dollar")


def sa_to_arrow(t: sa.types.TypeEngine) -> pa.DataType:
    """The Arrow type for a SQLAlchemy column type."""
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.SmallInteger):
        return pa.int16()
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Float):
        return pa.float32() if getattr(t, "precision", None) and t.precision <= 24 else pa.float64()
    if isinstance(t, sa.Numeric):
        if t.precision and t.precision <= 38:
            return pa.decimal128(t.precision, t.scale or 0)
        return pa.string()  # unconstrained numeric: kept exact as text
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if t.timezone else None)
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Time):
        return pa.time64("us")
    if isinstance(t, sa.LargeBinary | sa.LargeBinary):
        return pa.binary()
    return pa.string()


def _py_to_arrow_value(v: Any) -> Any:
    if isinstance(v, uuid.UUID | dict | list):
        return str(v)
    return v


def _rows_to_arrow(rows: list[Any], names: list[str], types: list[pa.DataType]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for col, typ in zip(cols, types, strict=True):
        if pa.types.is_string(typ):
            col = [None if v is None else (v if isinstance(v, str) else str(_py_to_arrow_value(v))) for v in col]
        elif pa.types.is_timestamp(typ) and typ.tz:
            col = [v.astimezone(dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo else v for v in col]
        elif pa.types.is_decimal(typ):
            col = [decimal.Decimal(v) if isinstance(v, str | int | float) else v for v in col]
        arrays.append(pa.array(col, type=typ))
    return pa.Table.from_arrays(arrays, names=names)


def _fix_pg_types(table: pa.Table) -> pa.Table:
    """Cast ADBC's opaque PostgreSQL numerics to exact decimals, dropping driver field metadata."""
    cols, fields = [], []
    for f, col in zip(table.schema, table.columns, strict=True):
        meta = f.metadata or {}
        typ = f.type
        if isinstance(typ, pa.ExtensionType) or meta.get(b"POSTGRESQL:type") == b"numeric":
            if isinstance(typ, pa.ExtensionType):
                storage = pa.chunked_array([c.storage for c in col.chunks], type=typ.storage_type)
            else:
                storage = col
            typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
            if meta.get(b"POSTGRESQL:type") == b"numeric" and typmod >= 4:
                precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
                if precision <= 38:
                    storage = pc.cast(storage, pa.decimal128(precision, scale))
            col, typ = storage, storage.type
        cols.append(col)
        fields.append(pa.field(f.name, typ, nullable=True))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


class SqlReader:
    """Executes SELECT statements against one database and returns Arrow tables."""

    def __init__(self, url: str, use_adbc: bool = True) -> None:
        self.url = sa.make_url(url)
        self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        self._adbc = None
        if use_adbc and self.dialect == "postgresql" and adbc_pg is not None:
            self._adbc = adbc_pg.connect(self._libpq_uri())

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

    def fetch(self, stmt: sa.Select) -> pa.Table:
        """Run a SELECT and return all its rows as Arrow (callers bound it with LIMIT)."""
        if self._adbc is not None:
            compiled = stmt.compile(dialect=_PG_DOLLAR)
            params = [compiled.params[name] for name in compiled.positiontup or []]
            with self._adbc.cursor() as cur:
                cur.execute(compiled.string, params or None)
                table = cur.fetch_arrow_table()
            self._adbc.commit()
            return _fix_pg_types(table)
        with self.engine.connect() as conn:
            result = conn.execute(stmt)
            names = list(result.keys())
            types = [sa_to_arrow(c.type) for c in stmt.selected_columns]
            rows = result.fetchall()
        return _rows_to_arrow(rows, names, types)

    def close(self) -> None:
        """Close connections."""
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None
        self.engine.dispose()
