"""Crash tests with real SIGKILLs in child processes (reliability matrix rows 2, 4 and 5)."""

from __future__ import annotations

import json
import signal
import sqlite3

import orjson

from integrations.offsets import OffsetStore
from tests.conftest import run_cli
from tests.helpers import produce_all, read_dataset, read_topic, write_connector


def _produce_ids(kafka, topic: str, n: int, partitions: int = 1) -> None:
    produce_all(kafka, topic, ({"value": orjson.dumps({"id": i, "v": f"row {i}"}), "partition": i % partitions}
                               for i in range(n)))


def test_sink_killed_after_write_before_commit_reruns_exactly_once(kafka, topic_factory, tmp_path, unique):
    topic = topic_factory("crash-sink", partitions=2)
    n = 10_000
    _produce_ids(kafka, topic, n, partitions=2)
    cfg = write_connector(tmp_path / "c", {
        "name": f"crash-sink-{unique}", "type": "parquet_sink", "topics": [topic], "path": str(tmp_path / "lake"),
        "flush_size": 1500, "value_schema": {"id": "int64", "v": "string"},
    })
    group = f"headrace-crash-sink-{unique}"

    crashed = run_cli("run", str(cfg), env={"HEADRACE_FAULT": "sink_after_write"})
    assert crashed.returncode == -signal.SIGKILL
    files_after_crash = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert len(files_after_crash) == 1  # the first file was renamed into place, then the process died
    assert kafka.committed(group, topic) == {0: None, 1: None}  # nothing committed

    ok = run_cli("run", str(cfg), check=True)
    out = json.loads(ok.stdout)
    assert out["rows"] == n
    assert kafka.committed(group, topic) == {0: n // 2, 1: n // 2}
    ids = read_dataset(tmp_path / "lake" / topic).column("id").to_pylist()
    assert len(ids) == n and sorted(ids) == list(range(n))  # every record exactly once
    names = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert set(files_after_crash) <= set(names)  # the re-run rewrote the same name
    expected = [f"{topic}+{p}+{s:020d}.parquet" for p in (0, 1) for s in (0, 1500, 3000, 4500)]
    assert names == sorted(expected)
    assert not list((tmp_path / "lake").rglob("*.tmp"))

    again = json.loads(run_cli("run", str(cfg), check=True).stdout)
    assert again["rows"] == 0 and again["files"] == []


def test_source_killed_between_produce_and_offset_store_loses_nothing(kafka, tmp_path, unique):
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 5001)])
    con.commit()
    con.close()
    prefix = f"crash-src-{unique}-"
    name = f"crash-src-{unique}"
    cfg = write_connector(tmp_path / "c", {
        "name": name, "type": "sql_source", "connection_url": f"sqlite:///{db}", "mode": "incrementing",
        "incrementing_column": "id", "tables": ["t"], "topic_prefix": prefix, "batch_max_rows": 2000,
    })
    topic = prefix + "t"
    store = OffsetStore(kafka)
    try:
        crashed = run_cli("run", str(cfg), env={"HEADRACE_FAULT": "source_after_produce"})
        assert crashed.returncode == -signal.SIGKILL
        assert store.read(name) == {}  # the first batch was produced, its offset never stored
        assert len(read_topic(kafka, topic)) == 2000

        out = json.loads(run_cli("run", str(cfg), check=True).stdout)
        assert out["rows"] == 5000  # the unacknowledged-offset batch is read again
        ids = [orjson.loads(v)["id"] for _k, v, _p, _o in read_topic(kafka, topic)]
        assert set(ids) == set(range(1, 5001))  # no row lost
        duplicates = len(ids) - len(set(ids))
        assert duplicates == 2000  # at-least-once: exactly the first batch, counted
        assert store.read(name) == {'{"table":"t"}': {"incrementing": 5000}}
    finally:
        kafka.delete_topics([topic])
        store.reset(name)
