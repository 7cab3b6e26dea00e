"""Every SQL source mode against PostgreSQL and SQLite, through real Kafka: exact rows and offsets."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.integration.test_sql_support import config, read_topic, run, stored_offsets

T0 = dt.datetime(2024, 3, 31, 0, 0, 0)


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh database of each dialect."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'src.db'}"


def _make(url: str, table: str) -> tuple[sa.Engine, sa.Table]:
    eng = sa.create_engine(url)
    meta = sa.MetaData()
    t = sa.Table(table, meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("updated_at", sa.DateTime, nullable=False), sa.Column("name", sa.Text))
    meta.create_all(eng)
    return eng, t


def _ts(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _insert(eng: sa.Engine, t: sa.Table, rows: list[tuple[int, int, str | None]]) -> None:
    with eng.begin() as c:
        c.execute(t.insert(), [{"id": i, "updated_at": _ts(m), "name": n} for i, m, n in rows])


@pytest.mark.parametrize("mode", ["bulk", "incrementing", "timestamp", "timestamp+incrementing"])
def test_mode(mode: str, db_url: str, kafka, topic_factory, unique) -> None:
    eng, t = _make(db_url, "events")
    # rows 2 and 3 share a timestamp, and batch_max_rows=2 splits them unless groups are kept whole
    _insert(eng, t, [(1, 1, "a"), (2, 2, "b"), (3, 2, "漢字😀"), (4, 3, None), (5, 4, "")])
    offsets = topic_factory("offs", create=False)
    prefix = f"sqlm-{unique}-"
    topic = prefix + "events"
    topic_factory("x", create=False)
    kw: dict = {"mode": mode, "tables": ["events"], "topic_prefix": prefix, "batch_max_rows": 2}
    if "incrementing" in mode:
        kw["incrementing_column"] = "id"
    if "timestamp" in mode:
        kw["timestamp_column"] = "updated_at"
    cfg = config(f"m-{unique}", db_url, **kw)
    try:
        r1 = run(cfg, kafka, offsets)
        assert r1.rows == 5
        first = read_topic(kafka, topic)
        assert sorted(v["id"] for v in first) == [1, 2, 3, 4, 5]
        assert {v["id"]: v["name"] for v in first} == {1: "a", 2: "b", 3: "漢字😀", 4: None, 5: ""}
        # second poll: new rows, plus an updated row (timestamp modes re-send it)
        _insert(eng, t, [(6, 5, "f"), (7, 5, "g")])
        with eng.begin() as c:
            c.execute(t.update().where(t.c.id == 1).values(updated_at=_ts(6)))
        r2 = run(cfg, kafka, offsets)
        ids = [v["id"] for v in read_topic(kafka, topic)][5:]
        expected = {"bulk": [1, 2, 3, 4, 5, 6, 7], "incrementing": [6, 7], "timestamp": [6, 7, 1],
                    "timestamp+incrementing": [6, 7, 1]}[mode]
        assert (sorted(ids) if mode == "bulk" else ids) == expected
        assert r2.rows == len(expected)
        stored = stored_offsets(kafka, offsets, cfg.name)
        if mode == "bulk":
            assert stored == {}
        else:
            (off,) = stored.values()
            if "incrementing" in mode:
                assert off["incrementing"] == (7 if mode == "incrementing" else 1)
            if "timestamp" in mode:
                assert dt.datetime.fromisoformat(off["timestamp"]).replace(tzinfo=None) == _ts(6)
        # third poll: nothing new (bulk re-reads everything, as Kafka Connect's bulk mode does)
        r3 = run(cfg, kafka, offsets)
        assert r3.rows == (7 if mode == "bulk" else 0)
    finally:
        kafka.delete_topics([topic])
        eng.dispose()


@pytest.mark.parametrize("mode", ["bulk", "incrementing", "timestamp", "timestamp+incrementing"])
def test_custom_query(mode: str, db_url: str, kafka, topic_factory, unique) -> None:
    eng, t = _make(db_url, "orders")
    _insert(eng, t, [(1, 1, "keep"), (2, 2, "drop"), (3, 3, "keep"), (4, 3, "keep")])
    offsets = topic_factory("offs", create=False)
    topic = topic_factory(f"sqlq-{unique}", create=False)
    kw: dict = {"mode": mode, "query": "SELECT id, updated_at, upper(name) AS name FROM orders WHERE name = 'keep'",
                "topic_prefix": topic, "batch_max_rows": 1}
    if "incrementing" in mode:
        kw["incrementing_column"] = "id"
    if "timestamp" in mode:
        kw["timestamp_column"] = ["updated_at"]
    cfg = config(f"q-{unique}", db_url, **kw)
    try:
        assert run(cfg, kafka, offsets).rows == 3
        _insert(eng, t, [(5, 4, "keep"), (6, 5, "drop")])
        r2 = run(cfg, kafka, offsets)
        vals = read_topic(kafka, topic)
        assert [v["name"] for v in vals] == ["KEEP"] * len(vals)
        if mode == "bulk":
            assert r2.rows == 4 and sorted(v["id"] for v in vals) == [1, 1, 3, 3, 4, 4, 5]
        else:
            assert r2.rows == 1 and [v["id"] for v in vals] == [1, 3, 4, 5]
    finally:
        eng.dispose()


def test_timestamp_initial_and_delay(db_url: str, kafka, topic_factory, unique) -> None:
    eng, t = _make(db_url, "ev")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with eng.begin() as c:
        c.execute(t.insert(), [{"id": 1, "updated_at": _ts(0), "name": "old"},
                               {"id": 2, "updated_at": _ts(10), "name": "mid"},
                               {"id": 3, "updated_at": now + dt.timedelta(hours=1), "name": "future"}])
    offsets = topic_factory("offs", create=False)
    topic = topic_factory(f"sqlt-{unique}", create=False)
    cfg = config(f"ti-{unique}", db_url, mode="timestamp", tables=["ev"], timestamp_column="updated_at",
                 timestamp_initial=_ts(5).isoformat() + "+00:00", timestamp_delay=60,
                 topic_prefix=topic.removesuffix("ev") if False else "", key_columns=["id"])
    cfg = cfg.model_copy(update={"topic_prefix": topic + "-"})
    try:
        assert run(cfg, kafka, offsets).rows == 1  # 'old' is before timestamp_initial, 'future' after the bound
        assert [v["name"] for v in read_topic(kafka, topic + "-ev")] == ["mid"]
    finally:
        kafka.delete_topics([topic + "-ev"])
        eng.dispose()


def test_validate_non_null(db_url: str, unique) -> None:
    from integrations.errors import ConfigError
    from integrations.sources.sql import SqlSource

    eng = sa.create_engine(db_url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE n (id integer, ts timestamp)"))
    eng.dispose()
    cfg = config(f"nn-{unique}", db_url, mode="incrementing", tables=["n"], incrementing_column="id",
                 validate_non_null=True)
    src = SqlSource(cfg)
    try:
        with pytest.raises(ConfigError, match="nullable"):
            list(src.poll({"table": "n"}, None))
    finally:
        src.close()
