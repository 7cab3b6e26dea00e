"""Kafka → PostgreSQL upsert: Headrace's table sink vs Debezium's JDBC sink vs Quix Streams' PostgreSQL
sink vs a plain psycopg ``ON CONFLICT`` script.

Data: N messages, 70% distinct ids (30% are updates), in Kafka Connect's JSON envelope (``{schema,
payload}``: the JDBC sink needs a schema) with the decimal as a JSON number and created_at as Connect's
Timestamp (epoch ms); one one-partition topic, produced once. Every run upserts into a fresh, pre-created
table ``(id bigint primary key, qty int, amount numeric(12,2), name text, created_at timestamptz)``; the
check is the table's row count, sum of qty and count of non-null names against the last value of each id. Headrace: table sink,
``value_converter: {type: json, schemas_enable: true}``, upsert on id, 250k-message batches. Debezium JDBC
sink: ``insert.mode=upsert``, ``primary.key.mode=record_value``, stock otherwise, and the named variant "tuned"
(``batch.size=10000``, ``use.reduction.buffer=true``, ``consumer.override.max.poll.records=10000``); timed until
the table holds the expected rows, sum and names (polled every 0.5 s). Quix Streams: bench/peers/scripts/quix_postgres.py. Plain
script: bench/peers/scripts/plain_postgres.py (executemany of the last value per id per 10k batch).
"""

from __future__ import annotations

import uuid
from typing import Any

import duckdb
import psycopg
import sqlalchemy as sa

from bench.common import PG_URL, admin_engine, delete_topics, drop_db
from bench.peers.common import Run, finish, headrace, pg_stats, python_peer, unique
from bench.peers.connect import run_connector
from integrations.kafka.cluster import KafkaSettings

NAME = "kafka_to_postgres_upsert"
TITLE = "Kafka → PostgreSQL upsert"
DEFAULT_ROWS = 1_000_000
DDL = ('CREATE TABLE "{t}" (id bigint PRIMARY KEY, qty integer, amount numeric(12,2), name text, '
       "created_at timestamptz)")
SCHEMA = ('{"type":"struct","name":"bench_rows","optional":false,"fields":['
          '{"field":"id","type":"int64","optional":false},{"field":"qty","type":"int32","optional":true},'
          '{"field":"amount","type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal",'
          '"version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"}},'
          '{"field":"name","type":"string","optional":true},'
          '{"field":"created_at","type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp",'
          '"version":1}]}')


def produce_envelope_topic(rows: int, distinct: int) -> str:
    """``rows`` envelope messages keyed by id; id = (g % distinct) + 1, so later messages update earlier."""
    kafka = KafkaSettings.from_env()
    topic = f"peers-upsert-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, partitions=1)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    p = kafka.producer()
    for lo in range(0, rows, 200_000):
        hi = min(lo + 200_000, rows)
        t = con.sql(f"""
            SELECT ((g % {distinct}) + 1)::VARCHAR AS k, '{{"schema":{SCHEMA},"payload":' || to_json({{
                   'id': (g % {distinct}) + 1, 'qty': (g % 1000)::INT,
                   'amount': ((g % 100000) / 100)::DECIMAL(12,2),
                   'name': CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g || '-é漢' END,
                   'created_at': epoch_ms(TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g))}})::VARCHAR
                   || '}}' AS v
            FROM range({lo}, {hi}) t(g)""").to_arrow_table()
        for k, v in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True):
            try:
                p.produce(topic, v, k)
            except BufferError:
                p.poll(0.05)
                p.produce(topic, v, k)
        p.poll(0)
    assert p.flush(120) == 0
    return topic


def setup(rows: int) -> dict[str, Any]:
    """The topic, an empty database, and the expected (rows, sum of qty) of the last value per id."""
    distinct = max(rows * 7 // 10, 1)
    name = f"hr_peers_{uuid.uuid4().hex[:8]}"
    with admin_engine().connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    total, names = duckdb.sql(f"SELECT sum(g % 1000), count(*) FILTER (g % 10 <> 0) "
                              f"FROM range({rows - distinct}, {rows}) t(g)").fetchall()[0]
    return {"topic": produce_envelope_topic(rows, distinct), "rows": rows, "url": url,
            "expected": [distinct, int(total), int(names)], "work_rows": rows,
            "bootstrap": KafkaSettings.from_env().bootstrap_servers}


def _table(state: dict[str, Any]) -> str:
    t = unique("t_")
    with psycopg.connect(state["url"], autocommit=True) as c:
        c.execute(DDL.format(t=t))
    return t


def _drop(state: dict[str, Any], table: str) -> None:
    with psycopg.connect(state["url"], autocommit=True) as c:
        c.execute(f'DROP TABLE IF EXISTS "{table}"')


def _check(state: dict[str, Any], table: str, ok: bool) -> tuple[int, int] | None:
    return pg_stats(state["url"], table) if ok else None


def headrace_sink(state: dict[str, Any]) -> Run:
    """Headrace's table sink through ``headrace run``."""
    table = _table(state)
    cfg = {"name": unique("peers-up-"), "type": "table_sink", "topics": [state["topic"]],
           "connection_url": state["url"], "table_name_format": table, "insert_mode": "upsert",
           "pk_mode": "record_value", "pk_fields": ["id"], "auto_create": False, "batch_size": 250_000,
           "value_converter": {"type": "json", "schemas_enable": True, "decimal_format": "numeric"}}
    try:
        timed = headrace(cfg)
        return finish("Headrace table sink", timed, _check(state, table, timed.returncode == 0),
                      tuple(state["expected"]))
    finally:
        _drop(state, table)


TUNED_JDBC = {"batch.size": 10_000, "use.reduction.buffer": "true", "consumer.override.max.poll.records": 10_000}


def debezium_jdbc(state: dict[str, Any]) -> Run:
    """Debezium's JDBC sink connector, upsert on id, stock settings."""
    return _debezium_jdbc(state, tuned=False)


def debezium_jdbc_tuned(state: dict[str, Any]) -> Run:
    """The same with 10k-record batches, polls of 10k records and the reduction buffer (one row per key)."""
    return _debezium_jdbc(state, tuned=True)


def _debezium_jdbc(state: dict[str, Any], tuned: bool) -> Run:
    table = _table(state)
    u = sa.make_url(state["url"])
    expected = tuple(state["expected"])
    connector = {
        "name": unique("dbz-jdbc-"), "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": 1, "topics": state["topic"],
        "connection.url": f"jdbc:postgresql://{u.host}:{u.port}/{u.database}",
        "connection.username": u.username, "connection.password": u.password or "",
        "insert.mode": "upsert", "primary.key.mode": "record_value", "primary.key.fields": "id",
        "collection.name.format": table, "schema.evolution": "none",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "true",
        **(TUNED_JDBC if tuned else {}),
    }
    side = "Debezium JDBC sink (tuned)" if tuned else "Debezium JDBC sink"
    try:
        timed = run_connector("debezium-connector-jdbc", connector,
                              lambda: pg_stats(state["url"], table) == expected, poll=0.5,
                              timeout=max(180, state["rows"] / 2000))
        return finish(side, timed, _check(state, table, True), expected)
    finally:
        _drop(state, table)


def quix(state: dict[str, Any]) -> Run:
    """Quix Streams' PostgreSQL sink."""
    table = _table(state)
    u = sa.make_url(state["url"])
    args = {"bootstrap": state["bootstrap"], "topic": state["topic"], "group": unique("peers-g-"),
            "rows": state["rows"], "host": u.host, "port": u.port, "dbname": u.database, "user": u.username,
            "password": u.password or "", "table": table}
    try:
        timed = python_peer("quix_postgres.py", args)
        return finish("Quix Streams PostgreSQL sink", timed, _check(state, table, timed.returncode == 0),
                      tuple(state["expected"]))
    finally:
        _drop(state, table)


def plain(state: dict[str, Any]) -> Run:
    """The plain psycopg ON CONFLICT script."""
    table = _table(state)
    args = {"bootstrap": state["bootstrap"], "topic": state["topic"], "group": unique("peers-g-"),
            "rows": state["rows"], "url": state["url"], "table": table, "batch": 10_000}
    try:
        timed = python_peer("plain_postgres.py", args)
        return finish("plain psycopg ON CONFLICT script", timed, _check(state, table, timed.returncode == 0),
                      tuple(state["expected"]))
    finally:
        _drop(state, table)


SIDES = [headrace_sink, debezium_jdbc, quix, plain, debezium_jdbc_tuned]
HEADRACE_SIDE = "Headrace table sink"
GOALS = {"Debezium JDBC sink": 5.0}


def teardown(state: dict[str, Any]) -> None:
    """Delete the topic and the database."""
    delete_topics(state["topic"])
    drop_db(state["url"])
