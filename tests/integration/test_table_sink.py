"""Table sink on DuckDB, PostgreSQL and SQLite (SQLAlchemy): modes, deletes, evolution, quoting, exactly once."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import orjson
import psycopg
import pytest
import sqlalchemy as sa
import yaml

from integrations.config import TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.table import TableSinkError
from tests.conftest import run_cli
from tests.integration.sink_helpers import produce

N_KEYS = 100_000


def _url(backend: str, tmp_path: Path, pg_url: str | None) -> str:
    if backend == "duckdb":
        return f"duckdb:///{tmp_path}/wh.duckdb"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/wh.sqlite"
    return pg_url


def _fetch(url: str, sql: str) -> list[tuple]:
    if url.startswith("duckdb"):
        con = duckdb.connect(url.split(":///", 1)[1], read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    if url.startswith("sqlite"):
        with sa.create_engine(url).connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    with psycopg.connect(url) as c:
        return c.execute(sql).fetchall()


def _cfg(url: str, topic: str, unique: str, **kw) -> TableSinkConfig:
    base = {"type": "table_sink", "name": f"tbl-{unique}", "topics": [topic], "connection_url": url,
            "auto_create": True}
    return TableSinkConfig(**{**base, **kw})


def _upsert_workload(kafka, topic: str) -> dict[int, tuple[int, str, int]]:
    """100,000 inserts, 30% updates and 5% tombstones; returns the expected final table."""
    rnd = random.Random(7)
    expected = {i: (i, f"a{i}", i) for i in range(N_KEYS)}
    msgs: list = [(None, i, {"id": i, "v": f"a{i}", "n": i}) for i in range(N_KEYS)]
    for i in rnd.sample(range(N_KEYS), N_KEYS * 30 // 100):
        msgs.append((None, i, {"id": i, "v": f"b{i}", "n": -i}))
        expected[i] = (i, f"b{i}", -i)
    for i in rnd.sample(range(N_KEYS), N_KEYS * 5 // 100):
        msgs.append((None, i, None))
        expected.pop(i)
    p = kafka.producer()
    for _, k, v in msgs:
        p.produce(topic, key=orjson.dumps(k), value=None if v is None else orjson.dumps(v))
        p.poll(0)
    assert p.flush(60) == 0
    return expected


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_upsert_100k_keys_updates_tombstones(backend, kafka, topic_factory, unique, tmp_path, request):
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbu", partitions=3)
    expected = _upsert_workload(kafka, topic)
    cfg = _cfg(url, topic, unique, insert_mode="upsert", pk_mode="record_key", pk_fields=["id"],
               delete_enabled=True, batch_size=20_000)
    res = run_sink(cfg, kafka)
    assert res.rows == N_KEYS + N_KEYS * 30 // 100 and res.tombstones == N_KEYS * 5 // 100
    got = _fetch(url, f'SELECT id, v, n FROM "{topic}" ORDER BY id')
    assert got == sorted(expected.values())
    marks = kafka.watermarks(topic)
    assert dict((p, o) for _, p, o in _fetch(url, "SELECT topic, partition, next_offset FROM headrace_sink_offsets")) \
        == {p: hi for p, (_, hi) in marks.items()}
    assert res.lag_after == {topic: 0}  # from the offsets stored in the target
    assert run_sink(cfg, kafka).rows == 0  # resumes from the offsets stored in the target


def test_lag_after_a_capped_run_counts_what_is_left(kafka, topic_factory, unique, tmp_path):
    """The lag a run reports comes from the target's stored offsets: a capped run leaves the rest."""
    topic = topic_factory("tbl-lag", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(30)])  # 15 per partition
    cfg = _cfg(_url("duckdb", tmp_path, None), topic, unique, max_records_per_run=10)
    first = run_sink(cfg, kafka)
    assert (first.rows, first.lag_after) == (20, {topic: 10})
    second = run_sink(cfg, kafka)
    assert (second.rows, second.lag_after) == (10, {topic: 0})


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_sigkill_after_db_commit_then_rerun(backend, kafka, topic_factory, unique, tmp_path, request):
    """Insert mode without a key: applying any batch twice would duplicate rows."""
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbk", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(5000)])
    conf = {"type": "table_sink", "name": f"tbl-{unique}", "topics": [topic], "connection_url": url,
            "auto_create": True, "batch_size": 1000}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    crashed = run_cli("run", str(path), env={"HEADRACE_FAULT": "sink_after_write"})
    assert crashed.returncode == -9
    assert _fetch(url, f'SELECT count(*) FROM "{topic}"') == [(1000,)]
    assert kafka.committed(f"headrace-tbl-{unique}", topic) == {0: None, 1: None}
    run_cli("run", str(path), check=True)
    assert _fetch(url, f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{topic}"') == [(5000, 5000, 0, 4999)]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_upsert_sigkill_rerun_identical_table(backend, kafka, topic_factory, unique, tmp_path, request):
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbx", partitions=2)
    rnd = random.Random(3)
    recs = [(None, k, ({"id": k, "v": j} if rnd.random() > 0.1 else None), None)
            for j in range(6000) for k in [rnd.randrange(1500)]]
    produce(kafka, topic, [(k % 2, k, v, t) for _, k, v, t in recs])
    expected: dict[int, int] = {}
    for _, k, v, _t in recs:
        if v is None:
            expected.pop(k, None)
        else:
            expected[k] = v["v"]
    conf = {"type": "table_sink", "name": f"tbl-{unique}", "topics": [topic], "connection_url": url,
            "auto_create": True, "insert_mode": "upsert", "pk_mode": "record_key", "pk_fields": ["id"],
            "delete_enabled": True, "batch_size": 700}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    assert run_cli("run", str(path), env={"HEADRACE_FAULT": "sink_after_write"}).returncode == -9
    run_cli("run", str(path), check=True)
    assert _fetch(url, f'SELECT id, v FROM "{topic}" ORDER BY id') == sorted(expected.items())


@pytest.mark.parametrize("backend", ["duckdb", "postgres", "sqlite"])
def test_auto_evolve_and_clear_errors(backend, kafka, topic_factory, unique, tmp_path, request):
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbe")
    produce(kafka, topic, [(0, None, {"id": 1, "a": 10}, None)])
    run_sink(_cfg(url, topic, unique), kafka)
    produce(kafka, topic, [(0, None, {"id": 2, "a": 20, "b": "new"}, None)])
    with pytest.raises(TableSinkError, match=r"has no column\(s\) \['b'\].*set auto_evolve: true"):
        run_sink(_cfg(url, topic, unique), kafka)
    run_sink(_cfg(url, topic, unique, auto_evolve=True), kafka)
    assert _fetch(url, f'SELECT id, a, b FROM "{topic}" ORDER BY id') == [(1, 10, None), (2, 20, "new")]
    produce(kafka, topic, [(0, None, {"id": 3, "a": "not a number"}, None)])
    with pytest.raises(TableSinkError, match="auto_evolve only adds columns"):
        run_sink(_cfg(url, topic, unique, auto_evolve=True), kafka)


@pytest.mark.parametrize("backend", ["duckdb", "postgres", "sqlite"])
def test_hostile_identifiers(backend, kafka, topic_factory, unique, tmp_path, request):
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbh")
    evil = 'x"; DROP TABLE t; --'
    produce(kafka, topic, [(0, 7, {"id": 7, evil: "boom", "select": 1}, None),
                           (0, 7, {"id": 7, evil: "bang", "select": 2}, None)])
    run_sink(_cfg(url, topic, unique, table_name_format='we"ird ${topic}', insert_mode="upsert",
                  pk_mode="record_key", pk_fields=["id"]), kafka)
    table = f'"we""ird {topic}"'
    assert _fetch(url, f'SELECT id, "x""; DROP TABLE t; --", "select" FROM {table}') == [(7, "bang", 2)]


@pytest.mark.parametrize("backend", ["duckdb", "postgres", "sqlite"])
def test_pk_modes_and_update(backend, kafka, topic_factory, unique, tmp_path, request):
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbm")
    produce(kafka, topic, [(0, {"k": 1}, {"name": "a", "qty": 1}, None), (0, {"k": 2}, {"name": "b", "qty": 2}, None),
                           (0, {"k": 1}, {"name": "a", "qty": 3}, None), (0, {"k": 2}, None, None)])
    run_sink(_cfg(url, topic, unique, name=f"kfk-{unique}", pk_mode="kafka", table_name_format="kfk_${topic}"), kafka)
    assert _fetch(url, f'SELECT __connect_offset, name, qty FROM "kfk_{topic}" ORDER BY 1') == \
        [(0, "a", 1), (1, "b", 2), (2, "a", 3)]
    run_sink(_cfg(url, topic, unique, name=f"rv-{unique}", pk_mode="record_value", pk_fields=["name"],
                  insert_mode="upsert", table_name_format="rv_${topic}"), kafka)
    assert _fetch(url, f'SELECT name, qty FROM "rv_{topic}" ORDER BY 1') == [("a", 3), ("b", 2)]
    run_sink(_cfg(url, topic, unique, name=f"rk-{unique}", pk_mode="record_key", insert_mode="upsert",
                  delete_enabled=True, table_name_format="rk_${topic}"), kafka)
    assert _fetch(url, f'SELECT k, name, qty FROM "rk_{topic}" ORDER BY 1') == [(1, "a", 3)]
    produce(kafka, topic, [(0, {"k": 1}, {"name": "z", "qty": 9}, None), (0, {"k": 5}, {"name": "y", "qty": 5}, None)])
    run_sink(_cfg(url, topic, unique, name=f"rk-{unique}", pk_mode="record_key", insert_mode="update",
                  table_name_format="rk_${topic}"), kafka)
    assert _fetch(url, f'SELECT k, name, qty FROM "rk_{topic}" ORDER BY 1') == [(1, "z", 9)]


def test_missing_table_without_auto_create(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("tbn")
    produce(kafka, topic, [(0, None, {"id": 1}, None)])
    with pytest.raises(TableSinkError, match="does not exist; create it or set auto_create: true"):
        run_sink(_cfg(f"duckdb:///{tmp_path}/wh.duckdb", topic, unique, auto_create=False), kafka)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_type_edge_cases_round_trip(backend, kafka, topic_factory, unique, tmp_path, request):
    """Decimals, time zones, emoji, quotes/newlines in text, and empty string vs NULL arrive exactly."""
    import datetime as dt
    from decimal import Decimal

    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tbt")
    produce(kafka, topic, [
        (0, None, {"id": 1, "amount": 12345678901.23, "at": "2024-03-31 01:30:00.123456+00", "s": ""}, None),
        (0, None, {"id": 2, "amount": -0.01, "at": "2024-10-27 00:59:59.999999+00", "s": None}, None),
        (0, None, {"id": 3, "amount": None, "at": None, "s": 'é漢🙂 "q",\nline'}, None),
    ])
    schema = {"id": "int64", "amount": "decimal(13,2)", "at": "timestamp[us, tz=UTC]", "s": "string"}
    run_sink(_cfg(url, topic, unique, value_schema=schema), kafka)
    got = _fetch(url, f'SELECT id, amount, "at", s FROM "{topic}" ORDER BY id')
    utc = dt.UTC
    want = [(1, Decimal("12345678901.23"), dt.datetime(2024, 3, 31, 1, 30, 0, 123456, tzinfo=utc), ""),
            (2, Decimal("-0.01"), dt.datetime(2024, 10, 27, 0, 59, 59, 999999, tzinfo=utc), None),
            (3, None, None, 'é漢🙂 "q",\nline')]
    norm = [(i, a, t.astimezone(utc) if t else None, s) for i, a, t, s in got]
    assert norm == want
