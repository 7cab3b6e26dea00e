"""PostgreSQL specifics of the SQL source's reads: numeric types under ``numeric_mapping``, the
fix-ups of ADBC's PostgreSQL columns (numeric text spelled as PostgreSQL writes it, uuid strings,
opaque types as text), and exact intervals on the psycopg (SQLAlchemy) path."""

from __future__ import annotations

import decimal
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.errors import HeadraceError

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


class SqlTypeError(HeadraceError):
    """A value its column's Arrow type cannot carry (numeric NaN in a ``numeric(p,s)`` column)."""


def _numeric_nan_error(name: str, target: pa.DataType) -> SqlTypeError:
    return SqlTypeError(
        f"column {name!r} holds NaN, which {target} cannot carry (Kafka Connect's JDBC source fails here "
        "too); set numeric_mapping: best_fit (float64, lossy), or select the column ::text or "
        "::double precision in a custom query")


#: ADBC's text of non-finite numerics (C's printf) -> PostgreSQL's own spelling
_PG_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def pg_numeric_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Numeric text as PostgreSQL writes it: ``NaN``, ``Infinity``, ``-Infinity`` (ADBC writes
    ``nan``, ``inf``, ``-inf``); vectorised, finite values untouched."""
    for adbc, pg_text in _PG_NONFINITE.items():
        col = pc.if_else(pc.equal(col, adbc), pa.scalar(pg_text), col)
    return col


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


def _fix_column(col: pa.ChunkedArray, meta: dict[bytes, bytes], mapping: NumericMapping,
                name: str = "") -> pa.ChunkedArray:
    typ = col.type
    pg_type = meta.get(b"POSTGRESQL:type", b"")
    if isinstance(typ, pa.BaseExtensionType):
        col = pa.chunked_array([c.storage for c in col.chunks], type=typ.storage_type)
    if pg_type == b"numeric":
        typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
        precision, scale = (((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF) if typmod >= 4 else (None, 0)
        target = numeric_type(precision, scale, mapping)
        if target == pa.string():
            return pg_numeric_text(col)
        if pa.types.is_floating(target):  # best_fit: Arrow parses "nan", "inf", "-inf"
            return pc.cast(col, target)
        if pc.any(pc.is_in(col, pa.array(list(_PG_NONFINITE)))).as_py():
            # the column's type must not depend on its values (a chunk of text among decimals)
            raise _numeric_nan_error(name, target)
        return pc.cast(col, target)
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
        col = _fix_column(col, f.metadata or {}, mapping, f.name)
        cols.append(col)
        fields.append(pa.field(f.name, col.type, nullable=True))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


_PG_ISO_INTERVAL = re.compile(
    rb"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+(?:\.\d+)?)S)?)?")


def pg_iso_interval(text: bytes) -> pa.MonthDayNano:
    """PostgreSQL's ``iso_8601`` interval text (``P1Y2M3DT4H5M6.789S``) as exact months, days, nanoseconds."""
    m = _PG_ISO_INTERVAL.fullmatch(bytes(text))
    if m is None:
        raise ValueError(f"not a PostgreSQL ISO-8601 interval: {bytes(text)!r}")
    y, mo, d, h, mi, sec = (g or b"0" for g in m.groups())
    ns = (int(h) * 3600 + int(mi) * 60) * 1_000_000_000 + int(decimal.Decimal(sec.decode()) * 1_000_000_000)
    return pa.MonthDayNano([int(y) * 12 + int(mo), int(d), ns])


def _pg_exact_intervals(dbapi_conn: Any, _record: Any) -> None:
    """psycopg turns intervals into timedeltas, folding months into 30 days; this session reads them
    as ISO-8601 text instead, parsed into exact months, days and nanoseconds."""
    import psycopg.adapt

    class _IntervalLoader(psycopg.adapt.Loader):
        def load(self, data: Any) -> pa.MonthDayNano:
            return pg_iso_interval(data)

    with dbapi_conn.cursor() as cur:
        cur.execute("SET intervalstyle = 'iso_8601'")
    dbapi_conn.commit()
    dbapi_conn.adapters.register_loader("interval", _IntervalLoader)
