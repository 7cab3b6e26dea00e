"""Units of the SQL source: config validation, type mapping, UUIDs, and the JSON value encoding."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid

import pyarrow as pa
import pytest
import sqlalchemy as sa

from integrations.config import SqlSourceConfig
from integrations.converters.json import JsonConverter, interval_iso
from integrations.sources.sql import list_tables
from integrations.sources.sql_reader import numeric_type, uuid_strings


def _cfg(**kw) -> SqlSourceConfig:
    return SqlSourceConfig(name="c", type="sql_source", connection_url="sqlite://", **kw)


def test_config_table_selection() -> None:
    assert _cfg(mode="bulk", table_include=["a.*"]).table_include == ["a.*"]
    with pytest.raises(ValueError, match="table_include"):
        _cfg(mode="bulk")
    with pytest.raises(ValueError, match="not both"):
        _cfg(mode="bulk", table_include=["a"], query="select 1", topic_prefix="t")
    with pytest.raises(ValueError, match="regular expression"):
        _cfg(mode="bulk", table_include=["(unclosed"])
    with pytest.raises(ValueError, match="time zone"):
        _cfg(mode="bulk", tables=["a"], db_timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="numeric_mapping"):
        _cfg(mode="bulk", tables=["a"], numeric_mapping="approx")


def test_list_tables_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        for t in ("orders", "orders_tmp", "users", "bad name"):
            c.execute(sa.text(f'CREATE TABLE "{t}" (id int)'))
    cfg = SqlSourceConfig(name="c", type="sql_source", connection_url=url, mode="bulk",
                          table_include=["orders.*", "users", "bad.*"], table_exclude=[".*_tmp"])
    assert list_tables(cfg) == ["orders", "users"]  # 'bad name' cannot be a topic: skipped
    eng.dispose()


def test_numeric_mapping() -> None:
    assert numeric_type(12, 2) == pa.decimal128(12, 2)
    assert numeric_type(None, 0) == pa.string()
    assert numeric_type(5, 0, "precision_only") == pa.int32()
    assert numeric_type(12, 2, "precision_only") == pa.decimal128(12, 2)
    assert numeric_type(12, 2, "best_fit") == pa.float64()
    assert numeric_type(18, 0, "best_fit") == pa.int64()


def test_uuid_strings() -> None:
    vals = [uuid.uuid4(), None, uuid.UUID(int=0)]
    arr = pa.array([v.bytes if v else None for v in vals], pa.binary(16))
    assert uuid_strings(arr).to_pylist() == [str(v) if v else None for v in vals]
    assert uuid_strings(arr.slice(1)).to_pylist() == [None, str(vals[2])]


def test_interval_iso() -> None:
    arr = pa.array([pa.MonthDayNano([14, 3, 14_706_789_000_000]), None, pa.MonthDayNano([-1, -2, -3000])],
                   pa.month_day_nano_interval())
    assert interval_iso(arr).to_pylist() == ["P14M3DT14706.789S", None, "P-1M-2DT-0.000003S"]


def test_json_round_trip_every_type() -> None:
    t = pa.table({
        "f": pa.array([math.nan, math.inf, -math.inf, 1.5, None]),
        "r": pa.array([0.1, math.nan, None, 3.4028235e38, -2.5], pa.float32()),
        "b": pa.array([b"\x00\xff", b"", None, b"abc", b'"'], pa.binary()),
        "t": pa.array([dt.time(12, 34, 56, 500000), dt.time(0), None, dt.time(23, 59, 59, 999999), dt.time(1)]),
        "d": pa.array([decimal.Decimal("-0.01"), decimal.Decimal("9999999999.99"), None, decimal.Decimal("0"),
                       decimal.Decimal("1.10")], pa.decimal128(12, 2)),
        "dd": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(1970, 1, 1), dt.date(2024, 2, 29)]),
        "s": ["NaN", "", None, "é漢😀", 'a"b'],
        "ts": pa.array([dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC)] * 5, pa.timestamp("us", tz="UTC")),
    })
    conv = JsonConverter()
    vals = conv.encode(t)
    assert vals[0].startswith('{"f":"NaN","r":0.1,"b":"AP8=","t":"12:34:56.5","d":-0.01,')
    back = conv.decode([v.encode() for v in vals], t.schema)
    for name in t.column_names:
        for a, b in zip(t.column(name).to_pylist(), back.column(name).to_pylist(), strict=True):
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (name, a, b)
    assert back.column("s").to_pylist()[0] == "NaN"  # a string 'NaN' is not a float
    assert JsonConverter("string").encode(t.select(["d"]))[4] == '{"d":"1.10"}'
    assert conv.encode_keys(t, ["b"])[0] == '"AP8="'
