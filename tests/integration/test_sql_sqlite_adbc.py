"""SQLite through ADBC returns exactly the Arrow tables the SQLAlchemy path returns."""

from __future__ import annotations

import datetime as dt
import decimal

import adbc_driver_sqlite  # noqa: F401, E402 - a declared dependency: fail loudly (never skip) when missing
import pyarrow as pa
import pytest
import sqlalchemy as sa

from integrations.sources.sql_reader import SqlReader

ROWS = [
    (1, decimal.Decimal("12.34"), 1.5, "plain", True, dt.date(2024, 3, 31), dt.datetime(2024, 3, 31, 1, 2, 3), b"\x00\x01"),
    (2, decimal.Decimal("-0.01"), None, "", False, dt.date(1970, 1, 1),
     dt.datetime(2024, 3, 31, 1, 2, 3, 456789), b""),
    (3, decimal.Decimal("9999999999.99"), float("inf"), None, None, None, None, None),
    (2**62, decimal.Decimal("0.10"), -0.0, "🙂 漢字 e\u0301", True, dt.date(9999, 12, 31),
     dt.datetime(1999, 12, 31, 23, 59, 59, 1), b"\xff" * 40),
    (-5, None, 1e300, "x" * 3000, False, dt.date(2000, 2, 29), dt.datetime(2000, 2, 29), b"z"),
]


def _table(url: str, rows: list[tuple]) -> sa.Table:
    eng = sa.create_engine(url)
    meta = sa.MetaData()
    t = sa.Table("t", meta, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                 sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Float),
                 sa.Column("name", sa.Text), sa.Column("flag", sa.Boolean), sa.Column("day", sa.Date),
                 sa.Column("at", sa.DateTime), sa.Column("raw", sa.LargeBinary))
    meta.create_all(eng)
    if rows:
        with eng.begin() as c:
            c.execute(t.insert(), [dict(zip(t.c.keys(), r, strict=True)) for r in rows])
    eng.dispose()
    return t


def _read(url: str, stmt: sa.Select, use_adbc: bool, chunk: int = 2) -> tuple[pa.Table, tuple[bool, int]]:
    """The whole result, streamed in chunks; and (ADBC in use, statements that fell back)."""
    reader = SqlReader(url, use_adbc=use_adbc)
    try:
        chunks = list(reader.stream(stmt, chunk))
        empty = reader.fetch(stmt.limit(0))
        used = (reader.uses_adbc, reader.fallbacks)
    finally:
        reader.close()
    return (pa.concat_tables(chunks) if chunks else empty), used


def _reflected(url: str) -> sa.Table:
    return sa.Table("t", sa.MetaData(), autoload_with=sa.create_engine(url))


def test_adbc_matches_sqlalchemy(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _table(url, ROWS)
    for t in (_reflected(url), _table(f"sqlite:///{tmp_path / 'b.db'}", [])):  # reflected and declared
        stmt = sa.select(t).order_by(t.c.id)
        fast, used = _read(url, stmt, use_adbc=True)
        assert used == (True, 0)
        slow, plain = _read(url, stmt, use_adbc=False)
        assert plain == (False, 0)
        assert fast.schema == slow.schema
        assert fast.equals(slow)
        assert fast.schema.field("amount").type == pa.decimal128(12, 2)
        assert fast.schema.field("at").type == pa.timestamp("us")
        ordered = sorted(ROWS)
        for i, name in enumerate(t.c.keys()):  # the source values (SQLite itself stores -0.0 as 0)
            assert fast.column(name).to_pylist() == [r[i] for r in ordered], name
        # bounds inlined as literals: same rows either way
        where = stmt.where(t.c.at > dt.datetime(2000, 2, 29)).where(t.c.name != "x")
        assert _read(url, where, True)[0].equals(_read(url, where, False)[0])


def test_many_rows_and_empty(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    rows = [(i, decimal.Decimal(i) / 100, i / 7 if i % 5 else None, f"n{i}" if i % 3 else None, i % 2 == 0,
             dt.date(2024, 1, 1) + dt.timedelta(days=i % 400), dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i * 1.5),
             str(i).encode()) for i in range(5000)]
    rows[0] = (0, None, None, None, None, None, None, None)  # a first batch value of NULL does not pin a type
    t = _table(url, rows)
    stmt = sa.select(t).order_by(t.c.id)
    fast, used = _read(url, stmt, True, chunk=1500)
    assert used == (True, 0)
    assert fast.equals(_read(url, stmt, False, chunk=1500)[0])
    empty, _ = _read(url, stmt.where(t.c.id < 0), True)
    assert empty.num_rows == 0 and empty.schema == fast.schema


def test_mismatched_storage_falls_back(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _table(url, ROWS)
    with sa.create_engine(url).begin() as c:  # SQLite lets any column hold any storage class
        c.execute(sa.text("UPDATE t SET at = 'not a timestamp at all', name = 42 WHERE id = 1"))
        c.execute(sa.text("UPDATE t SET at = '2024-03-31T01:02:03+02:00' WHERE id = 2"))
    t = _reflected(url)
    stmt = sa.select(t.c.id, t.c.name).order_by(t.c.id)  # TEXT affinity made 42 text: no fallback
    fast, used = _read(url, stmt, True)
    assert fast.equals(_read(url, stmt, False)[0]) and used == (True, 0)
    with sa.create_engine(url).begin() as c:
        c.execute(sa.text("UPDATE t SET flag = 'yes' WHERE id = 1"))
    stmt = sa.select(t.c.id, t.c.flag).order_by(t.c.id)
    fast, used = _read(url, stmt, True, chunk=100)
    assert used == (True, 1)
    assert fast.equals(_read(url, stmt, False, chunk=100)[0])
    stmt = sa.select(t.c.id, t.c.at).where(t.c.id == 2)  # an ISO text with an offset: per value, as SQLAlchemy
    assert _read(url, stmt, True)[0].equals(_read(url, stmt, False)[0])


def test_numeric_rounding_as_sqlalchemy(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _table(url, [])
    values = ["0.125", "0.375", "2.675", "1.005", "-0.001", "12", "-7", "9999999999.995", "NULL", "1e-300"]
    with sa.create_engine(url).begin() as c:  # NUMERIC affinity stores these as REAL or INTEGER
        for i, v in enumerate(values):
            c.execute(sa.text(f"INSERT INTO t (id, amount) VALUES ({i}, {v})"))
    t = _reflected(url)
    ok = sa.select(t.c.id, t.c.amount).where(t.c.id != 7).order_by(t.c.id)
    fast, used = _read(url, ok, True, chunk=4)
    assert used == (True, 0) and fast.equals(_read(url, ok, False, chunk=4)[0])
    too_wide = sa.select(t.c.amount).where(t.c.id == 7)  # rounds to 13 digits: both paths refuse it
    with pytest.raises(pa.ArrowInvalid):
        _read(url, too_wide, False)
    with pytest.raises(pa.ArrowInvalid):
        _read(url, too_wide, True)
