"""Type fidelity: PostgreSQL → Headrace SQL source → Kafka (JSON) → Parquet sink, column by column."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import sqlalchemy as sa

from integrations.config import ParquetSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.integration.test_sql_support import config, run

DDL = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀')",
    """CREATE TABLE types (
      id int PRIMARY KEY, c_small smallint, c_int int, c_big bigint, c_num numeric(20,6),
      c_num38 numeric(38,10), c_real real, c_double double precision, c_bool boolean, c_text text,
      c_varchar varchar(50), c_bytea bytea, c_date date, c_time time, c_ts timestamp, c_tstz timestamptz,
      c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_int_arr int[], c_text_arr text[],
      c_mood mood)""",
    """INSERT INTO types VALUES
     (1, -32768, -2147483648, -9223372036854775808, -99999999999999.999999,
      9999999999999999999999999999.9999999999, 'NaN', 'Infinity', true,
      'emoji 😀 CJK 漢字 combining é', 'varchar ü', '\\x00ff00', '0001-01-01', '00:00:00',
      '2024-03-31 02:30:00', '2024-10-27 02:30:00+02', '1 year 2 months 3 days 04:05:06.789',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}',
      '{1,NULL,3}', '{"a","b c"}', 'happy 😀'),
     (2, 32767, 2147483647, 9223372036854775807, 0.000001, -0.0000000001, '-Infinity', 'NaN', false,
      '', '', '\\x', '9999-12-31', '23:59:59.999999', '2024-10-27 02:30:00', '2024-10-27 02:30:00+01',
      '-1 mons -2 days -00:00:00.000003', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}',
      'sad'),
     (3, NULL, NULL, NULL, NULL, NULL, 3.4028235e38, 1.7976931348623157e308, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
     (4, 0, 0, 0, 12.340000, 1.5, 0.1, 0.1, NULL, 'x', 'x', '\\x22', '2024-02-29', '12:34:56.5',
      '2024-03-31 01:59:59.999999', '2024-03-31 00:59:59.999999+00', '0 seconds',
      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', 'null', '"s"', '{NULL}', '{NULL,""}', 'ok')""",
]
VALUE_SCHEMA = {
    "id": "int32", "c_small": "int16", "c_int": "int32", "c_big": "int64", "c_num": "decimal(20,6)",
    "c_num38": "decimal(38,10)", "c_real": "float32", "c_double": "float64", "c_bool": "bool",
    "c_text": "string", "c_varchar": "string", "c_bytea": "binary", "c_date": "date32", "c_time": "time64[us]",
    "c_ts": "timestamp[us]", "c_tstz": "timestamp[us, tz=UTC]", "c_interval": "string", "c_uuid": "string",
    "c_json": "string", "c_jsonb": "string", "c_mood": "string",
}  # the arrays are left undeclared: the converter infers list<int64> / list<string>


def _iso_interval(s: str) -> tuple[int, int, Decimal]:
    m = re.fullmatch(r"P(-?\d+)M(-?\d+)DT(-?[\d.]+)S", s)
    assert m, s
    return int(m.group(1)), int(m.group(2)), Decimal(m.group(3))


def _same(col: str, want, got) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if col == "c_real":
        w, g = np.float32(want), np.float32(got)
        return (math.isnan(w) and math.isnan(g)) or w == g
    if col == "c_double":
        return (math.isnan(want) and math.isnan(got)) or want == got
    if col == "c_bytea":
        return bytes(want) == got
    return want == got


def test_every_type_round_trips(pg_url: str, kafka, topic_factory, unique, tmp_path: Path) -> None:
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        for stmt in DDL:
            c.execute(sa.text(stmt))
    with eng.connect() as c:
        cols = [r[0] for r in c.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'types' ORDER BY ordinal_position"))]
        exprs = ", ".join(
            f"{x}::text AS {x}" if x in ("c_json", "c_jsonb", "c_mood") else
            f"CASE WHEN {x} IS NOT NULL THEN ARRAY[extract(year from {x}) * 12 + extract(month from {x}), extract(day from {x}), "
            f"extract(hour from {x}) * 3600 + extract(minute from {x}) * 60 + extract(second from {x})] END AS {x}"
            if x == "c_interval" else x for x in cols)
        expected = [dict(r._mapping) for r in c.execute(sa.text(f"SELECT {exprs} FROM types ORDER BY id"))]
    eng.dispose()
    offsets = topic_factory("offs", create=False)
    prefix = f"sqlty-{unique}-"
    topic = prefix + "types"
    try:
        src = config(f"ty-{unique}", pg_url, mode="incrementing", tables=["types"], incrementing_column="id",
                     topic_prefix=prefix, batch_max_rows=3)
        assert run(src, kafka, offsets).rows == 4
        sink = ParquetSinkConfig(name=f"tyk-{unique}", type="parquet_sink", topics=[topic],
                                 path=str(tmp_path / "lake"), value_schema=VALUE_SCHEMA)
        assert run_sink(sink, kafka).rows == 4
        files = sorted((tmp_path / "lake").rglob("*.parquet"))
        got = sorted(pq.read_table(files[0]).to_pylist() if len(files) == 1 else
                     [r for f in files for r in pq.read_table(f).to_pylist()], key=lambda r: r["id"])
        assert len(got) == 4
        for want_row, got_row in zip(expected, got, strict=True):
            for col in cols:
                want, have = want_row[col], got_row[col]
                if col == "c_interval" and want is not None:
                    m, d, s = _iso_interval(have)
                    assert (m, d, s) == (int(want[0]), int(want[1]), Decimal(str(want[2]))), (col, want, have)
                elif col == "c_uuid" and want is not None:
                    assert uuid.UUID(have) == want and have == str(want), (col, want, have)
                else:
                    assert _same(col, want, have), (want_row["id"], col, want, have)
        # DST: the two instants sharing the wall time 02:30 in Europe/Berlin stay distinct UTC instants
        assert got[0]["c_tstz"] == dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC)
        assert got[1]["c_tstz"] == dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC)
        assert got[0]["c_text"] == "emoji 😀 CJK 漢字 combining é" and got[1]["c_text"] == ""
        assert got[2]["c_text"] is None
    finally:
        kafka.delete_topics([topic])
