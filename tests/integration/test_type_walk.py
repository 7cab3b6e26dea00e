"""Issue 12 item 12: every type the SQL source emits, from real PostgreSQL through Kafka with the
``json``, ``json_schema`` and ``avro`` converters, into the Parquet sink and the table sink on
PostgreSQL and DuckDB. Every value, NULLs included, must arrive equal to what PostgreSQL holds, or
to its documented representation (docs/sql-source.md, "Types"):

- intervals: an ISO-8601 string with ``json`` (Parquet, table text column); with ``json_schema`` and
  ``avro`` a ``struct<months, days, nanoseconds>`` in Parquet, ``interval`` / ``INTERVAL`` in tables;
- uuid, json/jsonb, enums, inet and unconstrained numerics (NaN, Infinity): their PostgreSQL text.

Values are compared as (months, days, microseconds) for intervals, as float32 for ``real``, NaN equal
to NaN, timestamptz as UTC instants; everything else exactly.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.table import TableSinkError
from tests.integration.test_avro_registry import schema_registry  # noqa: F401 - fixture
from tests.integration.test_sql_support import config, run
from tests.integration.test_sql_types import DDL, VALUE_SCHEMA

# beyond test_sql_types' table: unconstrained numeric (NaN, ±Infinity, tiny), inet (read as ::text)
EXTRA = [
    "ALTER TABLE types ADD COLUMN c_numeric numeric, ADD COLUMN c_inet inet",
    "UPDATE types SET c_numeric = 'NaN', c_inet = '192.168.0.1/24' WHERE id = 1",
    "UPDATE types SET c_numeric = 'Infinity', c_inet = '::1' WHERE id = 2",
    "UPDATE types SET c_numeric = '-Infinity' WHERE id = 4",
    # the longest time part PostgreSQL holds: ISO-8601 input (a double) would lose its last microsecond
    "INSERT INTO types (id, c_numeric, c_interval) VALUES (5, 0.00000000000000000001, '-2562047:47:16.854775')",
]
AS_TEXT = {"c_json", "c_jsonb", "c_mood", "c_uuid", "c_numeric", "c_inet", "c_interval", "c_timetz", "c_money",
           "c_bit", "c_range"}  # (char(n)::text would drop the padding the source keeps)
AS_TEXT_ARRAY = {"c_num_arr", "c_dec_arr", "c_uuid_arr", "c_jsonb_arr", "c_iv_arr"}
JSON_SCHEMA = {**VALUE_SCHEMA, "c_numeric": "string", "c_inet": "string"}
_ISO = re.compile(r"^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?$")


def _iso_interval(s: str) -> tuple[int, int, int]:
    m = _ISO.match(s)
    assert m, f"not an ISO-8601 duration: {s!r}"
    y, mo, d, h, mi, sec = (g or "0" for g in m.groups())
    micros = (int(h) * 3600 + int(mi) * 60) * 1_000_000 + int(Decimal(sec) * 1_000_000)
    return int(y) * 12 + int(mo), int(d), micros


ITEM_AS = {"c_iv_arr": "c_interval", "c_bytea_arr": "c_bytea"}  # array columns: items compared as


def norm(col: str, v: Any) -> Any:
    """A value in the form compared across destinations."""
    if v is None:
        return None
    if isinstance(v, list):
        return [norm(ITEM_AS.get(col, col), x) for x in v]
    if col == "c_interval":
        if isinstance(v, str):
            return _iso_interval(v)
        if isinstance(v, dict):
            return v["months"], v["days"], v["nanoseconds"] // 1000
        return v.months, v.days, v.nanoseconds // 1000  # pa.MonthDayNano
    if col in ("c_real", "c_double"):
        f = float(np.float32(v)) if col == "c_real" else float(v)
        return "NaN" if math.isnan(f) else f
    if col == "c_bytea":
        return bytes(v)
    if col == "c_tstz":
        return v.astimezone(dt.UTC)
    return v


def _pg_rows(url: str, table: str, cols: list[str]) -> list[dict[str, Any]]:
    sel = ", ".join(f'"{c}"::text AS "{c}"' if c in AS_TEXT else f'"{c}"::text[] AS "{c}"' if c in AS_TEXT_ARRAY
                    else f'"{c}"' for c in cols)
    with psycopg.connect(url) as c:
        c.execute("SET intervalstyle = 'iso_8601'")
        cur = c.execute(f'SELECT {sel} FROM "{table}" ORDER BY id')
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _duck_rows(path: str, table: str) -> list[dict[str, Any]]:
    con = duckdb.connect(path, read_only=True)
    try:
        return con.sql(f'SELECT * FROM "{table}" ORDER BY id').to_arrow_table().to_pylist()
    finally:
        con.close()


def _lite_rows(url: str, table: str, cols: list[str]) -> list[dict[str, Any]]:
    """Rows through SQLAlchemy's own types for the table's declared columns (as a user's app reads them)."""
    eng = sa.create_engine(url)
    try:
        t = sa.Table(table, sa.MetaData(), autoload_with=eng)
        with eng.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.select(*[t.c[x] for x in cols]).order_by(t.c.id))]
    finally:
        eng.dispose()


def _parquet_rows(root: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
    assert files, f"no Parquet files under {root}"
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: r["id"])


def _mismatches(where: str, want: list[dict[str, Any]], got: list[dict[str, Any]], cols: list[str]) -> list[str]:
    if [r["id"] for r in got] != [r["id"] for r in want]:
        return [f"{where}: ids {[r['id'] for r in got]} != {[r['id'] for r in want]}"]
    out = []
    for w, g in zip(want, got, strict=True):
        for c in cols:
            if c not in g:
                out.append(f"{where}: id {w['id']} column {c} missing")
            elif norm(c, w[c]) != norm(c, g[c]):
                out.append(f"{where}: id {w['id']} {c}: want {norm(c, w[c])!r}, got {norm(c, g[c])!r}")
    return out


@pytest.mark.parametrize("converter", ["json", "json_schema", "avro"])
def test_every_type_through_both_sinks(converter: str, request, pg_url: str, kafka, topic_factory, unique: str,
                                       tmp_path: Path) -> None:
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        for stmt in DDL + EXTRA:
            c.execute(sa.text(stmt))
    eng.dispose()
    cols = [r[0] for r in psycopg.connect(pg_url).execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'types' ORDER BY ordinal_position")]
    want = _pg_rows(pg_url, "types", cols)
    conv: dict[str, Any] = {"type": converter}
    if converter == "avro":
        conv["schema_registry_url"] = request.getfixturevalue("schema_registry")
    offsets = topic_factory("offs", create=False)
    prefix = f"walk-{unique}-"
    topic = prefix + "types"
    # json carries no schema: the sinks are given one, as a user would (arrays are inferred)
    declared = {"value_schema": JSON_SCHEMA} if converter == "json" else {}
    duck = f"duckdb:///{tmp_path}/wh.duckdb"
    try:
        src = config(f"walk-{unique}", pg_url, mode="incrementing", tables=["types"], incrementing_column="id",
                     topic_prefix=prefix, batch_max_rows=2, value_converter=conv)
        assert run(src, kafka, offsets).rows == len(want)
        problems: list[str] = []
        lake = tmp_path / "lake"
        pq_sink = ParquetSinkConfig(name=f"walkp-{unique}", type="parquet_sink", topics=[topic], path=str(lake),
                                    value_converter=conv, **declared)
        assert run_sink(pq_sink, kafka).rows == len(want)
        problems += _mismatches(f"{converter}→parquet", want, _parquet_rows(lake), cols)
        for url in (pg_url, duck):
            sink = TableSinkConfig(name=f"walkt-{unique}-{url[:4]}", type="table_sink", topics=[topic],
                                   connection_url=url, auto_create=True, value_converter=conv, **declared)
            assert run_sink(sink, kafka).rows == len(want)
            got = _pg_rows(url, topic, cols) if url == pg_url else _duck_rows(f"{tmp_path}/wh.duckdb", topic)
            problems += _mismatches(f"{converter}→{url.split(':')[0]} table", want, got, cols)
        # the generic SQLAlchemy backend (SQLite here): intervals as ISO-8601 text, time as TIME, bytea as
        # BLOB. Refused with a clear error, never stored wrong: arrays (no mapping), decimals of more than
        # 15 digits (SQLite keeps NUMERIC as doubles) and NaN floats (SQLite stores NULL)
        lite = f"sqlite:///{tmp_path}/wh.sqlite"
        arrays = ["c_int_arr", "c_text_arr"]
        refused = {"c_int_arr": "no SQL column mapping", "c_num": "would lose digits in SQLite",
                   "c_real": "holds NaN, which SQLite stores as NULL"}
        for k, (col, why) in enumerate(refused.items()):
            others = [c for c in (*arrays, "c_num", "c_num38", "c_real", "c_double") if c != col]
            sink = TableSinkConfig(name=f"walkr{k}-{unique}", type="table_sink", topics=[topic],
                                   connection_url=f"sqlite:///{tmp_path}/refused{k}.sqlite", auto_create=True,
                                   value_converter=conv, **declared,
                                   transforms=[{"type": "ReplaceField.Value", "exclude": others}])
            with pytest.raises(TableSinkError, match=why):
                run_sink(sink, kafka)
        dropped = [*arrays, "c_num", "c_num38", "c_real", "c_double"]
        sink = TableSinkConfig(name=f"walkt-{unique}-lite", type="table_sink", topics=[topic], connection_url=lite,
                               auto_create=True, value_converter=conv, **declared,
                               transforms=[{"type": "ReplaceField.Value", "exclude": dropped}])
        assert run_sink(sink, kafka).rows == len(want)
        flat = [c for c in cols if c not in dropped]
        problems += _mismatches(f"{converter}→sqlite table", want, _lite_rows(lite, topic, flat), flat)
        assert not problems, "\n".join(problems)
    finally:
        kafka.delete_topics([topic])


@pytest.mark.parametrize("converter", ["json_schema", "avro"])
def test_more_types_through_both_sinks(converter: str, request, pg_url: str, kafka, topic_factory, unique: str,
                                       tmp_path: Path) -> None:
    """The other PostgreSQL types the source emits (timetz, money, bit, ranges as text; arrays of numeric,
    interval, bytea, uuid, date, timestamp, jsonb) through the typed converters into Parquet and tables."""
    with psycopg.connect(pg_url) as c:
        for stmt in MORE_DDL:
            c.execute(stmt)
        cols = [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'more_types' ORDER BY ordinal_position")]
    want = _pg_rows(pg_url, "more_types", cols)
    conv: dict[str, Any] = {"type": converter}
    if converter == "avro":
        conv["schema_registry_url"] = request.getfixturevalue("schema_registry")
    offsets = topic_factory("offs", create=False)
    prefix = f"walk2-{unique}-"
    topic = prefix + "more_types"
    duck = f"duckdb:///{tmp_path}/wh.duckdb"
    try:
        src = config(f"walk2-{unique}", pg_url, mode="bulk", tables=["more_types"], topic_prefix=prefix,
                     value_converter=conv)
        assert run(src, kafka, offsets).rows == len(want)
        lake = tmp_path / "lake"
        pq_sink = ParquetSinkConfig(name=f"walk2p-{unique}", type="parquet_sink", topics=[topic], path=str(lake),
                                    value_converter=conv)
        assert run_sink(pq_sink, kafka).rows == len(want)
        problems = _mismatches(f"{converter}→parquet", want, _parquet_rows(lake), cols)
        for url in (pg_url, duck):
            sink = TableSinkConfig(name=f"walk2t-{unique}-{url[:4]}", type="table_sink", topics=[topic],
                                   connection_url=url, auto_create=True, value_converter=conv)
            assert run_sink(sink, kafka).rows == len(want)
            got = _pg_rows(url, topic, cols) if url == pg_url else _duck_rows(f"{tmp_path}/wh.duckdb", topic)
            problems += _mismatches(f"{converter}→{url.split(':')[0]} table", want, got, cols)
        assert not problems, "\n".join(problems)
    finally:
        kafka.delete_topics([topic])


NUMERIC_ROWS = ["'NaN'", "'Infinity'", "'-Infinity'", "0.00000000000000000001", "-1.50", "NULL"]


@pytest.mark.parametrize("use_adbc", [True, False])
def test_numeric_text_as_postgresql_writes_it(pg_url: str, use_adbc: bool) -> None:
    """Item 6: an unconstrained numeric arrives as PostgreSQL's own text (``NaN``, not ``nan``;
    ``1E-20`` never), on the ADBC and the SQLAlchemy paths alike."""
    from integrations.sources.sql import SqlSource

    with psycopg.connect(pg_url) as c:
        c.execute("CREATE TABLE n (id serial PRIMARY KEY, v numeric)")
        for v in NUMERIC_ROWS:
            c.execute(f"INSERT INTO n (v) VALUES ({v})")
        want = [r[0] for r in c.execute("SELECT v::text FROM n ORDER BY id")]
    assert want[:3] == ["NaN", "Infinity", "-Infinity"]
    src = SqlSource(config("num", pg_url, mode="incrementing", tables=["n"], incrementing_column="id"),
                    use_adbc=use_adbc)
    try:
        assert src.reader.uses_adbc is use_adbc
        batches = list(src.poll({"table": "n"}, None))
        got = pa.concat_tables([b.records for b in batches])
        assert got.schema.field("v").type == pa.string()
        assert got.column("v").to_pylist() == want
    finally:
        src.close()


@pytest.mark.parametrize("use_adbc", [True, False])
def test_numeric_nan_in_a_decimal_column(pg_url: str, use_adbc: bool) -> None:
    """A ``numeric(p,s)`` column holding NaN cannot be a decimal: one clear error naming the
    connector, table and column (never a chunk of text among decimals, never a silent NULL); with
    ``numeric_mapping: best_fit`` the column is float64 and NaN arrives as NaN."""
    from integrations.sources.sql import SqlSource
    from integrations.sources.sql_reader import SqlTypeError

    with psycopg.connect(pg_url) as c:
        c.execute("CREATE TABLE d (id serial PRIMARY KEY, amount numeric(10,2))")
        c.execute("INSERT INTO d (amount) VALUES (1.25), ('NaN'), (NULL)")
    kw = {"mode": "incrementing", "tables": ["d"], "incrementing_column": "id", "batch_max_rows": 1}
    src = SqlSource(config("dec", pg_url, **kw), use_adbc=use_adbc)
    try:
        with pytest.raises(SqlTypeError, match=r"connector dec, table 'd': column 'amount' holds NaN.*best_fit"):
            list(src.poll({"table": "d"}, None))
    finally:
        src.close()
    src = SqlSource(config("dec", pg_url, numeric_mapping="best_fit", **kw), use_adbc=use_adbc)
    try:
        got = pa.concat_tables([b.records for b in src.poll({"table": "d"}, None)])
        assert got.schema.field("amount").type == pa.float64()
        vals = got.column("amount").to_pylist()
        assert vals[0] == 1.25 and math.isnan(vals[1]) and vals[2] is None
    finally:
        src.close()


MORE_DDL = [
    """CREATE TABLE more_types (id int PRIMARY KEY, c_timetz timetz, c_money money, c_bit bit(3), c_range int4range,
      c_num_arr numeric[], c_dec_arr numeric(10,2)[], c_iv_arr interval[], c_bytea_arr bytea[], c_uuid_arr uuid[],
      c_date_arr date[], c_ts_arr timestamp[], c_jsonb_arr jsonb[], c_char char(3))""",
    """INSERT INTO more_types VALUES
      (1, '12:00:00+02', 12.5, B'101', '[1,5)', '{1.5,NaN,NULL}', '{1.5,NaN}', ARRAY['1 year 2 mons'::interval, NULL],
       '{"\\\\x00ff"}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{2024-02-29}', '{"2024-03-31 02:30:00"}',
       ARRAY['{"b": 1}'::jsonb], 'ab'),
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""",
]
MORE_WANT = {  # row 1 as the source documents it (both read paths)
    "c_timetz": "12:00:00+02", "c_money": "$12.50", "c_bit": "101", "c_range": "[1,5)",
    "c_num_arr": ["1.5", "NaN", None], "c_dec_arr": ["1.50", "NaN"],
    "c_iv_arr": [pa.MonthDayNano([14, 0, 0]), None], "c_bytea_arr": [b"\x00\xff"],
    "c_uuid_arr": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], "c_date_arr": [dt.date(2024, 2, 29)],
    "c_ts_arr": [dt.datetime(2024, 3, 31, 2, 30)], "c_jsonb_arr": ['{"b": 1}'], "c_char": "ab ",
}


def test_both_read_paths_agree(pg_url: str) -> None:
    """ADBC (binary COPY) and SQLAlchemy (psycopg) read every type to the same values: intervals keep
    their months on both (psycopg alone folds them into 30-day days), timetz arrives as its text (not
    ADBC's wire bytes), arrays of numeric, uuid and jsonb as text arrays (not nested extension types)."""
    from integrations.sources.sql import SqlSource

    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        for stmt in DDL + EXTRA + MORE_DDL:
            c.execute(sa.text(stmt))
    eng.dispose()
    got: dict[bool, dict[str, pa.Table]] = {}
    for use_adbc in (True, False):
        src = SqlSource(config("paths", pg_url, mode="bulk", tables=["types", "more_types"]), use_adbc=use_adbc)
        try:
            got[use_adbc] = {t: pa.concat_tables([b.records for b in src.poll({"table": t}, None)]).sort_by("id")
                             for t in ("types", "more_types")}
        finally:
            src.close()
    row = got[True]["more_types"].to_pylist()[0]
    assert {k: row[k] for k in MORE_WANT} == MORE_WANT
    for table in ("types", "more_types"):
        a, b = got[True][table], got[False][table]
        assert a.column_names == b.column_names
        for name in a.column_names:
            assert a.schema.field(name).type == b.schema.field(name).type, (table, name)
            assert _same_values(a.column(name).to_pylist(), b.column(name).to_pylist()), (table, name)


def _same_values(a: list[Any], b: list[Any]) -> bool:
    """Equal lists, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True))


def test_schemaless_json_float_nan_asks_for_a_schema() -> None:
    """A float column with NaN among numbers, written by the json converter, is valid JSON that schemaless
    decoding cannot type: the error says so and names the fix (not "malformed JSON"); with value_schema
    the values arrive."""
    from integrations.converters.factory import PlainJsonConverter
    from integrations.converters.json import ConversionError

    conv = PlainJsonConverter()
    values = [v.as_py().encode() if isinstance(v.as_py(), str) else v.as_py()
              for v in conv.encode_values(pa.table({"f": [float("nan"), 1.5, float("-inf")]}))]
    assert values[0] == b'{"f":"NaN"}'
    with pytest.raises(ConversionError, match=r"NaN/Infinity.*declare value_schema"):
        conv.decode(values)
    got = conv.decode(values, pa.schema([("f", pa.float64())])).column("f").to_pylist()
    assert math.isnan(got[0]) and got[1:] == [1.5, float("-inf")]
