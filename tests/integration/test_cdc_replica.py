"""CDC replicas converge: postgres_cdc → Kafka → table sink (ExtractNewRecordState + tombstones +
delete_enabled, Debezium's JDBC-sink recipe) on DuckDB and PostgreSQL, across kill -9, a terminated
session and a snapshot with concurrent changes."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import psycopg
import pytest

from integrations.config import TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.helpers import write_connector
from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)
from tests.integration.source_helpers import finish, start_run, uncommitted_end

UNWRAP = [{"type": "ExtractNewRecordState", "delete_handling_mode": "none", "drop_tombstones": False}]


def _sink(cdc: Cdc, url: str, topic: str) -> TableSinkConfig:
    return TableSinkConfig(type="table_sink", name=f"rep-{cdc.name}", topics=[topic], connection_url=url,
                           table_name_format="replica", auto_create=True, insert_mode="upsert",
                           pk_mode="record_key", pk_fields=["id"], delete_enabled=True, transforms=UNWRAP)


def _replica(url: str) -> list[tuple]:
    q = "SELECT id, name, n FROM replica ORDER BY id"
    if url.startswith("duckdb"):
        con = duckdb.connect(url.split(":///", 1)[1], read_only=True)
        try:
            return [tuple(r) for r in con.execute(q).fetchall()]
        finally:
            con.close()
    with psycopg.connect(url) as c:
        return c.execute(q).fetchall()


def _source(cdc: Cdc) -> list[tuple]:
    return cdc.query("SELECT id, name, n FROM items ORDER BY id")


def _replica_url(backend: str, cdc: Cdc, tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path}/replica.duckdb" if backend == "duckdb" else cdc.pg_url


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_replica_converges(cdc: Cdc, tmp_path: Path, backend: str) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            "INSERT INTO items SELECT g, 'seed' || g, g FROM generate_series(1, 500) g")
    cdc.run(snapshot_fetch_size=200)  # the snapshot: 500 reads
    cdc.sql("INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(501, 10500) g",
            "UPDATE items SET name = 'u' || id, n = n * 10 WHERE id % 3 = 0 AND id <= 9000",
            "DELETE FROM items WHERE id > 9500")
    cdc.run(batch_max_events=4000)
    url = _replica_url(backend, cdc, tmp_path)
    topic = cdc.topic("items")
    res = run_sink(_sink(cdc, url, topic), cdc.kafka)
    assert res.rows > 0
    assert _replica(url) == _source(cdc)
    # more changes, including a key that comes back after its delete, then a second sink run
    cdc.sql("INSERT INTO items VALUES (9999, 'back', 1)", "UPDATE items SET id = 20000 WHERE id = 1",
            "DELETE FROM items WHERE id BETWEEN 2 AND 100")
    cdc.run()
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    assert _replica(url) == _source(cdc)
    # the topic holds the truncate; the unwrap recipe drops it (documented: a flat row cannot empty a table)
    cdc.sql("TRUNCATE items")
    cdc.run()
    assert [v["op"] for _k, v in envelopes(cdc.kafka, topic) if v is not None][-1] == "t"


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_truncate_enabled_empties_the_replica_then_later_changes_apply(cdc: Cdc, tmp_path: Path,
                                                                      backend: str) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            "INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 3000) g")
    cdc.run()
    url = _replica_url(backend, cdc, tmp_path)
    topic = cdc.topic("items")
    sink = _sink(cdc, url, topic).model_copy(update={"truncate_enabled": True, "batch_size": 1000})
    run_sink(sink, cdc.kafka)
    assert len(_replica(url)) == 3000
    # one run sees: changes, a truncate, changes after it, a second truncate, and more changes
    cdc.sql("UPDATE items SET name = 'before' WHERE id <= 10", "TRUNCATE items",
            "INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(2001, 2500) g",
            "DELETE FROM items WHERE id > 2490",
            "TRUNCATE items",
            "INSERT INTO items SELECT g, 'c' || g, g FROM generate_series(5001, 5200) g",
            "UPDATE items SET n = -n WHERE id % 2 = 0")
    cdc.run()
    ops = [v["op"] for _k, v in envelopes(cdc.kafka, topic) if v is not None]
    assert ops.count("t") == 2
    res = run_sink(sink, cdc.kafka)
    replica = _replica(url)
    assert replica == _source(cdc)
    assert [r[0] for r in replica] == list(range(5001, 5201))
    assert res.rows > 0
    # nothing left: a further run applies nothing and the replica stays equal
    run_sink(sink, cdc.kafka)
    assert _replica(url) == _source(cdc)


def _lsn_duplicates(cdc: Cdc, topic: str) -> tuple[int, int]:
    """(events, events whose LSN and op were already seen: replays after a crash)."""
    seen = collections.Counter((v["source"]["lsn"], v["op"], k["id"]) for k, v in envelopes(cdc.kafka, topic)
                               if v is not None and v["op"] != "r")
    return sum(seen.values()), sum(n - 1 for n in seen.values())


# read_ahead_wal_bytes 0: every run reads its batches from a temporary copy of the slot, one call ahead
# (postgres_cdc_prefetch); null: in line, from the connector's slot
@pytest.mark.parametrize("read_ahead", [None, 0], ids=["in_line", "read_ahead"])
def test_kill9_during_streaming_three_times(cdc: Cdc, tmp_path: Path, read_ahead: int | None) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)")
    path = write_connector(tmp_path / "connectors", cdc.settings(batch_max_events=2000,
                                                                 read_ahead_wal_bytes=read_ahead))
    cdc.run(batch_max_events=2000)  # slot and (empty) snapshot
    topic = cdc.topic("items")
    for i in range(60):  # 60 transactions of 1,000 inserts, updates and deletes mixed
        base = i * 1000
        cdc.sql(f"INSERT INTO items SELECT g, 'n' || g, g FROM generate_series({base + 1}, {base + 1000}) g",
                f"UPDATE items SET n = -n WHERE id BETWEEN {base + 1} AND {base + 300}",
                f"DELETE FROM items WHERE id BETWEEN {base + 901} AND {base + 1000}")
    kills = 0
    for _ in range(3):
        before = uncommitted_end(cdc.kafka, topic)
        proc = start_run(path, cdc.offsets_topic)
        deadline = time.monotonic() + 120
        while uncommitted_end(cdc.kafka, topic) <= before + 3000 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run produced nothing"
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        finish(proc)
    code, _out, err = finish(start_run(path, cdc.offsets_topic))
    assert code == 0, err
    assert kills == 3
    events, dups = _lsn_duplicates(cdc, topic)
    print(f"kill -9 x3: {events} events, {dups} duplicates by LSN (batches produced but not stored)")
    assert dups <= 3 * 2 * 2000  # at most the batch in flight per kill (events + tombstones)
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    assert _replica(url) == _source(cdc)
    assert cdc.run().rows == 0
    assert cdc.temporary_slots() == []  # the killed runs' copies went with their sessions


@pytest.mark.parametrize("read_ahead", [None, 0], ids=["in_line", "read_ahead"])
def test_terminated_session_resumes_without_gap(cdc: Cdc, tmp_path: Path, read_ahead: int | None) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)")
    cdc.run()
    for i in range(20):
        cdc.sql(f"INSERT INTO items SELECT g, 'n' || g, g FROM generate_series({i * 2000 + 1}, {i * 2000 + 2000}) g")
    stop = threading.Event()
    killed = []

    def terminate() -> None:
        with psycopg.connect(cdc.pg_url, autocommit=True) as c:
            while not stop.is_set() and not killed:
                rows = c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                                 "'headrace-cdc' AND datname = current_database() AND state = 'active'").fetchall()
                killed.extend(r for r in rows if r[0])
                time.sleep(0.005)

    t = threading.Thread(target=terminate)
    t.start()
    try:
        # the run may fail after its retries; the next run resumes from the stored offset
        with contextlib.suppress(psycopg.OperationalError):
            cdc.run(batch_max_events=1000, read_ahead_wal_bytes=read_ahead)
    finally:
        stop.set()
        t.join()
    assert killed, "the connector's session was never terminated"
    cdc.run(batch_max_events=1000, read_ahead_wal_bytes=read_ahead)
    ids = collections.Counter(k["id"] for k, v in envelopes(cdc.kafka, cdc.topic("items")) if v is not None)
    assert set(ids) == set(range(1, 40001))  # no gap
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    run_sink(_sink(cdc, url, cdc.topic("items")), cdc.kafka)
    assert _replica(url) == _source(cdc)


def test_snapshot_with_concurrent_changes_converges(cdc: Cdc, tmp_path: Path) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            "INSERT INTO items SELECT g, 'seed', g FROM generate_series(1, 30000) g")
    done = threading.Event()

    def churn() -> None:
        with psycopg.connect(cdc.pg_url, autocommit=True) as c:
            c.execute("SET synchronous_commit = on")  # flushed commits: the last run reads them all
            i = 0
            while not done.is_set() and i < 400:
                k = 30000 - i * 70
                c.execute("UPDATE items SET name = 'changed', n = -n WHERE id = %s", (k,))
                c.execute("DELETE FROM items WHERE id = %s", (k - 1,))
                c.execute("INSERT INTO items VALUES (%s, 'new', 0)", (100000 + i,))
                i += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        cdc.run(snapshot_fetch_size=500)  # 60 chunks while the churn goes on
    finally:
        done.set()
        t.join()
    cdc.run()
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    run_sink(_sink(cdc, url, cdc.topic("items")), cdc.kafka)
    assert _replica(url) == _source(cdc)
    reads = [k["id"] for k, v in envelopes(cdc.kafka, cdc.topic("items")) if v is not None and v["op"] == "r"]
    assert len(reads) == len(set(reads))  # each row read once by the snapshot


def test_kill9_during_snapshot_resumes_mid_table(cdc: Cdc, tmp_path: Path) -> None:
    # 300k rows: each run is killed once its records grow by 6,000, so a run must outlast the watcher's
    # polls (a few hundred ms under load); 60k rows were snapshotted faster than that once
    rows = 300_000
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            f"INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, {rows}) g")
    path = write_connector(tmp_path / "connectors", cdc.settings(snapshot_fetch_size=2000))
    topic = cdc.topic("items")
    cdc.topics.update(f"{cdc.prefix}.public.{t}" for t in ("snapshot", "heartbeat"))
    kills = 0
    for _ in range(3):
        before = uncommitted_end(cdc.kafka, topic)
        proc = start_run(path, cdc.offsets_topic)
        deadline = time.monotonic() + 120
        while uncommitted_end(cdc.kafka, topic) <= before + 6000 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run produced nothing"
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        finish(proc)
    cdc.sql("UPDATE items SET name = 'late' WHERE id % 1000 = 0")
    code, _out, err = finish(start_run(path, cdc.offsets_topic))
    assert code == 0, err
    assert kills == 3
    reads = collections.Counter(k["id"] for k, v in envelopes(cdc.kafka, topic) if v is not None and v["op"] == "r")
    dups = sum(n - 1 for n in reads.values())
    print(f"kill -9 x3 during the snapshot: {sum(reads.values())} reads, {dups} read twice")
    assert set(reads) == set(range(1, rows + 1))  # resumed mid-table: nothing skipped
    assert dups <= 3 * 2000  # at most the chunk in flight per kill
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    assert _replica(url) == _source(cdc)


def test_signal_resnapshots_one_table_while_streaming(cdc: Cdc, tmp_path: Path) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            "CREATE TABLE other (id int PRIMARY KEY)",
            "CREATE TABLE signals (id text PRIMARY KEY, type text, data text)",
            "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 3000) g")
    cdc.overrides.update(table_include=[r"public\.(items|other)"], signal_data_collection="public.signals",
                         snapshot_fetch_size=700, batch_max_events=500)
    cdc.run()  # the initial snapshot: 3,000 reads
    cdc.sql("UPDATE items SET name = 'before-signal' WHERE id <= 100", "INSERT INTO other VALUES (1)",
            """INSERT INTO signals VALUES ('s1', 'execute-snapshot', '{"data-collections": ["public.items"]}')""",
            "UPDATE items SET name = 'after-signal' WHERE id > 2900", "DELETE FROM items WHERE id <= 10")
    cdc.run()
    topic = cdc.topic("items")
    ops = [(k["id"], v["op"]) for k, v in envelopes(cdc.kafka, topic) if v is not None]
    reads = [i for i, op in ops if op == "r"]
    # the re-snapshot runs once the chunk holding the signal is stored: it reads the table as it is then
    # (the deletes, committed before the run, are gone)
    assert len(reads) == 3000 + 2990 and sorted(reads[3000:]) == list(range(11, 3001))
    assert len(set(reads[3000:])) == len(reads[3000:])  # each row once per snapshot
    assert sum(1 for _i, op in ops if op == "u") == 200 and sum(1 for _i, op in ops if op == "d") == 10
    assert [v["op"] for _k, v in envelopes(cdc.kafka, cdc.topic("other"))] == ["c"]
    assert cdc.kafka.partitions(cdc.topic("signals")) in ([], None, {})  # signals are not produced
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    assert _replica(url) == _source(cdc)
