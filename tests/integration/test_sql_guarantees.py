"""No skipped rows with out-of-order commits (PostgreSQL), hostile identifiers, and table discovery."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from integrations.errors import ConfigError
from integrations.sources.sql import SqlSource, list_tables
from tests.integration.test_sql_support import config, read_topic, run, stored_offsets


def _setup(url: str, ddl: str) -> sa.Engine:
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text(ddl))
    return eng


@pytest.mark.parametrize("mode", ["incrementing", "timestamp", "timestamp+incrementing"])
@pytest.mark.parametrize("guard", [True, False])
def test_out_of_order_commit(mode: str, guard: bool, pg_url: str, kafka, topic_factory, unique) -> None:
    """A row whose transaction commits after a newer row's is still delivered, exactly once."""
    eng = _setup(pg_url, "CREATE TABLE ev (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), "
                         "name text)")
    offsets = topic_factory("offs", create=False)
    prefix = f"sqlg-{unique}-"
    kw: dict = {"mode": mode, "tables": ["ev"], "topic_prefix": prefix, "transaction_guard": guard}
    if "incrementing" in mode:
        kw["incrementing_column"] = "id"
    if "timestamp" in mode:
        kw["timestamp_column"] = "ts"
    cfg = config(f"g-{unique}", pg_url, **kw)
    try:
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO ev (name) VALUES ('before')"))
        assert run(cfg, kafka, offsets).rows == 1
        slow = eng.connect()
        tx = slow.begin()
        slow.execute(sa.text("INSERT INTO ev (name) VALUES ('slow')"))  # id 2, ts = its transaction start
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO ev (name) VALUES ('fast')"))  # id 3, later ts, commits first
        r_mid = run(cfg, kafka, offsets)
        tx.commit()
        slow.close()
        r_end = run(cfg, kafka, offsets)
        names = [v["name"] for v in read_topic(kafka, prefix + "ev")]
        if guard:
            assert r_mid.rows == 0  # nothing past the open transaction
            assert names == ["before", "slow", "fast"]
            assert r_end.rows == 2
            (off,) = stored_offsets(kafka, offsets, cfg.name).values()
            if "incrementing" in mode:
                assert off["incrementing"] == 3
        else:
            # without the guard the 'fast' row is read first and 'slow' is skipped for ever —
            # the Kafka Connect JDBC behaviour this guard fixes
            assert names == ["before", "fast"]
        assert run(cfg, kafka, offsets).rows == 0
    finally:
        kafka.delete_topics([prefix + "ev"])
        eng.dispose()


def test_incrementing_progresses_below_open_transaction(pg_url: str, kafka, topic_factory, unique) -> None:
    """Rows committed before a long transaction began still flow while it stays open."""
    eng = _setup(pg_url, "CREATE TABLE ev (id bigserial PRIMARY KEY, name text)")
    offsets = topic_factory("offs", create=False)
    prefix = f"sqlp-{unique}-"
    cfg = config(f"p-{unique}", pg_url, mode="incrementing", tables=["ev"], incrementing_column="id",
                 topic_prefix=prefix)
    try:
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO ev (name) SELECT 'a' FROM generate_series(1, 3)"))
        assert run(cfg, kafka, offsets).rows == 3
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO ev (name) SELECT 'b' FROM generate_series(1, 2)"))  # ids 4, 5
        run(cfg, kafka, offsets)  # records a sample covering ids 4, 5 (no transaction open: reads them)
        slow = eng.connect()
        tx = slow.begin()
        slow.execute(sa.text("INSERT INTO ev (name) VALUES ('slow')"))  # id 6
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO ev (name) VALUES ('fast')"))  # id 7
        assert run(cfg, kafka, offsets).rows == 0
        tx.commit()
        slow.close()
        assert run(cfg, kafka, offsets).rows == 2
        assert [v["id"] for v in read_topic(kafka, prefix + "ev")] == [1, 2, 3, 4, 5, 6, 7]
    finally:
        kafka.delete_topics([prefix + "ev"])
        eng.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_hostile_identifiers(dialect: str, request, tmp_path, kafka, topic_factory, unique) -> None:
    """Names from config are quoted identifiers, never SQL: injection attempts fail, odd names work."""
    url = request.getfixturevalue("pg_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'h.db'}"
    eng = sa.create_engine(url)
    col = 'id"; DROP TABLE victim; --'
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE victim (x integer)"))
        c.execute(sa.text("INSERT INTO victim VALUES (1)"))
        c.execute(sa.text(f'CREATE TABLE "Odd-Table" ("{col.replace(chr(34), chr(34) * 2)}" integer, '
                          '"select" text, "We""ird ts" timestamp)'))
        c.execute(sa.text('INSERT INTO "Odd-Table" VALUES (1, \'x\', \'2024-01-01 00:00:00\'), '
                          '(2, \'y\', \'2024-01-02 00:00:00\')'))
    offsets = topic_factory("offs", create=False)
    prefix = f"sqlh-{unique}-"
    try:
        # a hostile table name is refused by validation (it cannot make a topic) ...
        with pytest.raises(ValueError):
            config(f"h-{unique}", url, mode="bulk", tables=["victim; DROP TABLE victim"], topic_prefix=prefix)
        # ... and a hostile column name is only ever an identifier: it does not exist here
        bad = config(f"h-{unique}", url, mode="incrementing", tables=["victim"], topic_prefix=prefix,
                     incrementing_column="x > 0; DROP TABLE victim; --")
        with pytest.raises(ConfigError, match="not in 'victim'"):
            run(bad, kafka, offsets)
        # a real column whose name is an injection attempt is read correctly
        cfg = config(f"h2-{unique}", url, mode="timestamp+incrementing", tables=["Odd-Table"],
                     topic_prefix=prefix, incrementing_column=col, timestamp_column='We"ird ts')
        assert run(cfg, kafka, offsets).rows == 2
        vals = read_topic(kafka, prefix + "Odd-Table")
        assert [(v[col], v["select"]) for v in vals] == [(1, "x"), (2, "y")]
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM victim")).scalar() == 1
    finally:
        kafka.delete_topics([prefix + "Odd-Table"])
        eng.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_table_include_and_new_table(dialect: str, request, tmp_path, kafka, topic_factory, unique) -> None:
    """A regex of tables: one topic and one offset per table; a table created later is picked up."""
    url = request.getfixturevalue("pg_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'm.db'}"
    eng = sa.create_engine(url)
    ddl = "CREATE TABLE {} (id integer PRIMARY KEY, v text)"
    with eng.begin() as c:
        for t in ("sales_eu", "sales_us", "sales_tmp", "other"):
            c.execute(sa.text(ddl.format(t)))
            c.execute(sa.text(f"INSERT INTO {t} VALUES (1, '{t}'), (2, '{t}')"))
    offsets = topic_factory("offs", create=False)
    prefix = f"sqli-{unique}-"
    cfg = config(f"i-{unique}", url, mode="incrementing", table_include=["sales_.*"], table_exclude=[".*_tmp"],
                 incrementing_column="id", topic_prefix=prefix)
    topics = [prefix + t for t in ("sales_eu", "sales_us", "sales_asia")]
    try:
        assert list_tables(cfg) == ["sales_eu", "sales_us"]
        r = run(cfg, kafka, offsets)
        assert {s.topic: s.rows for s in r.per_partition.values()} == {prefix + "sales_eu": 2, prefix + "sales_us": 2}
        with eng.begin() as c:
            c.execute(sa.text(ddl.format("sales_asia")))
            c.execute(sa.text("INSERT INTO sales_asia VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
            c.execute(sa.text("INSERT INTO sales_eu VALUES (3, 'eu3')"))
        r2 = run(cfg, kafka, offsets)
        assert {s.topic: s.rows for s in r2.per_partition.values()} == {
            prefix + "sales_asia": 3, prefix + "sales_eu": 1, prefix + "sales_us": 0}
        assert [v["v"] for v in read_topic(kafka, prefix + "sales_asia")] == ["a", "b", "c"]
        stored = stored_offsets(kafka, offsets, cfg.name)
        assert {k: v["incrementing"] for k, v in stored.items()} == {
            '{"table":"sales_asia"}': 3, '{"table":"sales_eu"}': 3, '{"table":"sales_us"}': 2}
    finally:
        kafka.delete_topics(topics)
        eng.dispose()


def test_schema_pattern(pg_url: str) -> None:
    eng = _setup(pg_url, "CREATE SCHEMA s1")
    with eng.begin() as c:
        c.execute(sa.text("CREATE SCHEMA s2"))
        for s in ("s1", "s2", "public"):
            c.execute(sa.text(f"CREATE TABLE {s}.t_a (id int)"))
    eng.dispose()
    cfg = config("sp", pg_url, mode="bulk", table_include=["t_.*"], schema_pattern="s[12]", topic_prefix="p-")
    assert list_tables(cfg) == ["s1.t_a", "s2.t_a"]
    src = SqlSource(cfg)
    try:
        assert src.partitions() == [{"table": "s1.t_a"}, {"table": "s2.t_a"}]
    finally:
        src.close()
