"""``headrace offsets show|reset|set`` on a SQL source, a Parquet sink and a table sink (DuckDB and
PostgreSQL), each followed by a run that reads exactly from the new position; and the refusal while a
run of the connector is in flight in the Dagster instance. Real Kafka, databases and Dagster instance.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import psycopg
from dagster._core.storage.dagster_run import DagsterRun

from integrations.config import load_connector
from integrations.offsets import OffsetStore
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from tests.conftest import run_cli
from tests.helpers import read_dataset, read_topic, write_connector
from tests.integration.sink_helpers import produce
from tests.integration.sink_race import connector, finish, produce_ids, reap, spawn, wait_for
from tests.integration.source_helpers import finish as finish_source
from tests.integration.source_helpers import numbered_table, source_file, start_paused_run, start_run

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "dagster").mkdir(exist_ok=True)
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {"HEADRACE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run_cli(*args, env={**_env(tmp_path), **(env or {})})
    assert proc.returncode == 0, f"headrace {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _ids(kafka, topic: str) -> list[int]:
    return [orjson.loads(v)["id"] for _k, v, _p, _o in read_topic(kafka, topic)]


def test_sql_source_reset_and_set(kafka, request, tmp_path, unique):
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 11)])
    con.commit()
    topic = f"ops-src-{unique}-t"
    request.addfinalizer(lambda: kafka.delete_topics([topic]))  # the source creates its topic
    name = f"ops-src-{unique}"
    path = write_connector(tmp_path / "c", {"name": name, "type": "sql_source", "connection_url": f"sqlite:///{db}",
                                            "mode": "incrementing", "incrementing_column": "id", "tables": ["t"],
                                            "topic_prefix": f"ops-src-{unique}-"})
    config = load_connector(path)
    assert run_source(config, kafka).rows == 10
    part = '{"table":"t"}'
    assert json.loads(_cli(tmp_path, "offsets", "show", str(path))) == {part: {"incrementing": 10}}

    out = _cli(tmp_path, "offsets", "set", str(path), "--partition", '{"table": "t"}', "--offset", '{"incrementing": 7}')
    assert out.splitlines() == [f"{name}: set 1 partition(s)", f'  {part}: {{"incrementing":10}} -> {{"incrementing":7}}']
    assert run_source(config, kafka).rows == 3
    assert _ids(kafka, topic) == [*range(1, 11), 8, 9, 10]

    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-earliest")
    assert out.splitlines()[1] == f'  {part}: {{"incrementing":10}} -> none'
    assert json.loads(_cli(tmp_path, "offsets", "show", str(path))) == {}
    assert run_source(config, kafka).rows == 10
    assert _ids(kafka, topic)[13:] == list(range(1, 11))

    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(11, 16)])
    con.commit()
    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-latest", "--json")
    assert json.loads(out)["after"] == {part: {"incrementing": 15}}
    assert run_source(config, kafka).rows == 0  # rows 11..15 skipped, as asked
    con.executemany("INSERT INTO t VALUES (?, ?)", [(16, "v16"), (17, "v17")])
    con.commit()
    assert run_source(config, kafka).rows == 2
    assert _ids(kafka, topic)[23:] == [16, 17]
    con.close()

    bad = run_cli("offsets", "set", str(path), "--partition", '{"table": "nope"}', "--offset", "{}", env=_env(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("error: connector") and "unknown source partition" in bad.stderr
    bad = run_cli("offsets", "reset", str(path), "--to-timestamp", "2026-01-01T00:00:00Z", env=_env(tmp_path))
    assert bad.returncode == 2 and "needs a timestamp mode" in bad.stderr, bad.stderr


def test_sql_source_reset_to_timestamp(kafka, request, tmp_path, unique):
    db = tmp_path / "ts.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, at TIMESTAMP NOT NULL)")
    con.executemany("INSERT INTO e VALUES (?, ?)", [(i, f"2026-01-01 00:0{i}:00") for i in range(1, 7)])
    con.commit()
    con.close()
    topic = f"ops-ts-{unique}-e"
    request.addfinalizer(lambda: kafka.delete_topics([topic]))
    path = write_connector(tmp_path / "c", {"name": f"ops-ts-{unique}", "type": "sql_source",
                                            "connection_url": f"sqlite:///{db}", "mode": "timestamp+incrementing",
                                            "incrementing_column": "id", "timestamp_column": ["at"],
                                            "tables": ["e"], "topic_prefix": f"ops-ts-{unique}-"})
    out = json.loads(_cli(tmp_path, "offsets", "reset", str(path), "--to-timestamp", "2026-01-01T00:03:30", "--json"))
    assert out["before"] == {'{"table":"e"}': None}
    assert out["after"] == {'{"table":"e"}': {"timestamp": "2026-01-01T00:03:30"}}
    assert run_source(load_connector(path), kafka).rows == 3  # rows after 00:03:30
    assert _ids(kafka, topic) == [4, 5, 6]


def test_parquet_sink_reset_and_set(kafka, topic_factory, tmp_path, unique):
    topic = topic_factory("ops-pq", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, T0 + i * 1000) for i in range(20)])  # 10 per partition
    lake = tmp_path / "lake"
    path = write_connector(tmp_path / "c", {"name": f"ops-pq-{unique}", "type": "parquet_sink", "topics": [topic],
                                            "path": str(lake)})
    config = load_connector(path)
    # records i >= 10 have timestamps from T0 + 10 s: offsets 5 in both partitions
    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-timestamp", "2026-01-01T00:00:10Z")
    assert out.splitlines()[1:] == [f"  {topic}[0]: none -> 5", f"  {topic}[1]: none -> 5"]
    assert run_sink(config, kafka).rows == 10
    assert sorted(read_dataset(lake / topic).column("id").to_pylist()) == list(range(10, 20))
    assert kafka.committed(config.consumer_group, topic) == {0: 10, 1: 10}

    out = _cli(tmp_path, "offsets", "set", str(path), "--partition", "1", "--offset", "8")
    assert out.splitlines()[1:] == [f"  {topic}[1]: 10 -> 8"]
    assert kafka.committed(config.consumer_group, topic) == {0: 10, 1: 8}
    assert run_sink(config, kafka).rows == 2
    ids = read_dataset(lake / topic).column("id").to_pylist()
    assert sorted(ids) == sorted([*range(10, 20), 17, 19])  # records 8 and 9 of partition 1 again

    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-earliest")
    assert out.splitlines()[1:] == [f"  {topic}[0]: 10 -> 0", f"  {topic}[1]: 10 -> 0"]
    assert json.loads(_cli(tmp_path, "offsets", "show", str(path))) == {f"{topic}[0]": 0, f"{topic}[1]": 0}
    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-latest")
    assert json.loads(_cli(tmp_path, "offsets", "show", str(path))) == {f"{topic}[0]": 10, f"{topic}[1]": 10}
    assert run_sink(config, kafka).rows == 0

    bad = run_cli("offsets", "set", str(path), "--partition", "0", "--offset", "11", env=_env(tmp_path))
    assert bad.returncode == 2 and bad.stderr == f"error: offset 11 for {topic}[0] is outside the log [0, 10]\n"
    bad = run_cli("offsets", "reset", str(path), env=_env(tmp_path))
    assert bad.returncode == 2 and "reset needs a target" in bad.stderr


def _table_ids(url: str, table: str) -> list[int]:
    sql = f'SELECT id FROM "{table}" ORDER BY id'
    if url.startswith("duckdb"):
        with duckdb.connect(url.split(":///", 1)[1], read_only=True) as c:
            return [r[0] for r in c.execute(sql).fetchall()]
    with psycopg.connect(url) as c:
        return [r[0] for r in c.execute(sql).fetchall()]


def _delete_all(url: str, table: str) -> None:
    if url.startswith("duckdb"):
        with duckdb.connect(url.split(":///", 1)[1]) as c:
            c.execute(f'DELETE FROM "{table}"')
        return
    with psycopg.connect(url) as c:
        c.execute(f'DELETE FROM "{table}"')


def test_table_sink_reset_and_set(kafka, topic_factory, tmp_path, unique, db_url):
    topic = topic_factory("ops-tbl")
    produce(kafka, topic, [(0, None, {"id": i, "v": f"v{i}"}, None) for i in range(10)])
    table = f"t_{unique}"
    path = write_connector(tmp_path / "c", {"name": f"ops-tbl-{unique}", "type": "table_sink", "topics": [topic],
                                            "connection_url": db_url, "table_name_format": table,
                                            "auto_create": True, "insert_mode": "upsert",
                                            "pk_mode": "record_value", "pk_fields": ["id"]})
    config = load_connector(path)
    assert run_sink(config, kafka).rows == 10
    assert _table_ids(db_url, table) == list(range(10))

    out = _cli(tmp_path, "offsets", "set", str(path), "--partition", "0", "--offset", "6")
    assert out.splitlines()[1:] == [f"  {topic}[0]: 10 -> 6"]
    assert kafka.committed(config.consumer_group, topic) == {0: 6}  # the group mirrors it (sensors read it)
    _delete_all(db_url, table)
    assert run_sink(config, kafka).rows == 4
    assert _table_ids(db_url, table) == [6, 7, 8, 9]

    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-earliest")
    assert out.splitlines()[1:] == [f"  {topic}[0]: 10 -> 0"]
    assert run_sink(config, kafka).rows == 10
    assert _table_ids(db_url, table) == list(range(10))
    assert json.loads(_cli(tmp_path, "offsets", "show", str(path))) == {f"{topic}[0]": 10}


def test_refused_while_a_run_is_in_flight(kafka, topic_factory, tmp_path, unique):
    topic = topic_factory("ops-busy")
    produce(kafka, topic, [(0, None, {"id": i}, None) for i in range(3)])
    name = f"ops-busy-{unique}"
    path = write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic],
                                            "path": str(tmp_path / "lake")})
    env = _env(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        run = DagsterRun(job_name=f"ops_busy_{unique}_job", status=dg.DagsterRunStatus.STARTED,
                         tags={"headrace/connector": name})
        instance.add_run(run)
        for args in (("reset", str(path), "--to-latest"), ("set", str(path), "--partition", "0", "--offset", "2")):
            proc = run_cli("offsets", *args, env=env)
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr == (f"error: connector {name}: run {run.run_id[:8]} (ops_busy_{unique}_job) is "
                                   "STARTED; offsets are not changed while a run is in flight (wait for it, or "
                                   "terminate it, and pause the sensor first)\n")
        assert kafka.committed(f"headrace-{name}", topic) == {0: None}  # nothing moved
        instance.report_run_failed(run)
    out = _cli(tmp_path, "offsets", "reset", str(path), "--to-latest")
    assert out.splitlines()[1:] == [f"  {topic}[0]: none -> 3"]


def test_offsets_set_fences_a_paused_parquet_run(kafka, topic_factory, tmp_path, unique):
    """A ``headrace run`` outside Dagster, paused (SIGSTOP) after its first file: ``offsets set`` takes the
    connector's fence; resumed, the run fails with the fenced line and never commits over the new offset."""
    topic = topic_factory("ops-fence")
    produce_ids(kafka, topic, 0, 30_000)
    root = tmp_path / "lake"
    name = f"ops-fence-{unique}"
    cfg = connector(tmp_path / "c", {"type": "parquet_sink", "name": name, "topics": [topic], "path": str(root),
                                     "flush_size": 300})
    a = spawn(cfg)
    try:
        wait_for(lambda: any(root.rglob("*.parquet")) or a.poll() is not None)
        os.kill(a.pid, signal.SIGSTOP)
        assert a.poll() is None, "the run finished before it could be paused"
        out = _cli(tmp_path, "offsets", "set", str(cfg), "--partition", "0", "--offset", "29000", "--json")
        assert json.loads(out)["after"] == {f"{topic}[0]": 29_000}
        os.kill(a.pid, signal.SIGCONT)
        rc, lines = finish(a)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
        reap(a)
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"error: another run of {name} "), (rc, lines)
    assert kafka.committed(f"headrace-{name}", topic) == {0: 29_000}  # the fenced run committed nothing more
    assert run_sink(load_connector(cfg), kafka).rows == 1000  # the next run reads exactly from the new offset
    assert kafka.committed(f"headrace-{name}", topic) == {0: 30_000}


def test_offsets_set_fences_a_paused_source_run(pg_url, kafka, topic_factory, unique, tmp_path):
    """A source run outside Dagster, paused mid-table: ``offsets set`` takes the source's transactional id
    (aborting the paused run's open offset transaction); resumed, the run fails with the fenced line and
    stores nothing more; the next run reads exactly the rows after the new offset."""
    rows, batch = 100_000, 5_000
    table, name = f"opsf_{unique}", f"opsf-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("opsf", create=False), topic_factory("opsf-offs", create=False)
    path = source_file(tmp_path / "c", name, pg_url, table, prefix, batch_max_rows=batch)
    part = orjson.dumps({"table": table}).decode()
    stale = start_paused_run(path, offsets, tmp_path / "paused-once")  # stopped after its first batch
    try:
        out = _cli(tmp_path, "offsets", "set", str(path), "--partition", part, "--offset", '{"incrementing": 90000}',
                   "--json", env={"HEADRACE_OFFSETS_TOPIC": offsets})
        assert json.loads(out)["after"] == {part: {"incrementing": 90_000}}
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    code, _out, err = finish_source(stale)
    assert code == 1 and f"another run of {name} started" in err and "fenced this one" in err, err
    assert OffsetStore(kafka, offsets).read(name) == {part: {"incrementing": 90_000}}  # nothing stored after it
    code, out, err = finish_source(start_run(path, offsets))
    assert code == 0, err
    assert json.loads(out)["rows"] == 10_000  # ids 90001..100000
    assert OffsetStore(kafka, offsets).read(name)[part]["incrementing"] == rows


def test_offsets_set_on_a_paused_table_run_never_hangs(kafka, topic_factory, tmp_path, unique, pg_url):
    """A PostgreSQL table sink run paused (SIGSTOP) mid-stream: ``offsets set`` either waits at most the lock
    timeout for the run's open transaction and refuses (the run then finishes normally), or moves the offset
    (the run, resumed, is fenced at its next transaction). Either way exactly one of them wins."""
    topic = topic_factory("ops-tp")
    produce_ids(kafka, topic, 0, 30_000)
    name, table = f"ops-tp-{unique}", f"ops_tp_{unique}"
    cfg = connector(tmp_path / "c", {"type": "table_sink", "name": name, "topics": [topic], "connection_url": pg_url,
                                     "auto_create": True, "table_name_format": table, "batch_size": 300,
                                     "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"]})

    def stored() -> int | None:
        with psycopg.connect(pg_url) as c:
            if not c.execute("SELECT 1 FROM pg_tables WHERE tablename = 'headrace_sink_offsets'").fetchone():
                return None
            row = c.execute("SELECT next_offset FROM headrace_sink_offsets WHERE connector = %s", [name]).fetchone()
            return None if row is None else row[0]

    a = spawn(cfg)
    try:
        wait_for(lambda: stored() is not None or a.poll() is not None, every=0.01)
        os.kill(a.pid, signal.SIGSTOP)
        assert a.poll() is None, "the run finished before it could be paused"
        started = time.monotonic()
        proc = run_cli("offsets", "set", str(cfg), "--partition", "0", "--offset", "100", env=_env(tmp_path))
        waited = time.monotonic() - started
        os.kill(a.pid, signal.SIGCONT)
        rc, lines = finish(a)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
        reap(a)
    if proc.returncode == 0:  # the run was between transactions: it is fenced at its next one
        assert proc.stdout.splitlines()[1].endswith(" -> 100"), proc.stdout
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), (rc, lines)
        assert "moved back" in lines[0] or "another run" in lines[0], lines
        assert stored() == 100
    else:  # the run held the row in an open transaction: refused after the lock timeout, nothing changed
        assert proc.returncode == 1 and proc.stderr == (
            f"error: connector {name}: a run still holds its offset of {topic}[0] in an open transaction "
            "(waited 10s); nothing changed there\n"), proc.stderr
        assert waited < 60
        assert rc == 0, lines
        assert stored() == 30_000
