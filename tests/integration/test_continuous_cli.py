"""``headrace run NAME --continuous`` (issue 14 item 2): the engine's continuous loop in a real child
process. Changes arrive while it runs; SIGTERM or SIGINT ends it at a batch boundary (exit 143/130, the
one "stopped" line); a restart picks up from the stored offsets; ``--max-seconds`` ends it cleanly
(exit 0, a JSON summary). Every record is in the topic exactly once, read committed.

The CDC case also stops the run between two batches of one WAL chunk (its inserts are produced, its
deletes and tombstones not yet, its offset not stored): the stop must wait for the chunk's offset, or
the restart would deliver the inserts twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import orjson
import psycopg
import yaml

from integrations.kafka.cluster import KafkaSettings
from tests.conftest import run_cli
from tests.integration.cdc_helpers import Cdc, cdc_fixture, ops_by_key  # noqa: F401 (fixture)
from tests.integration.continuous_helpers import read_records, start_cli, stop_process, wait_for
from tests.integration.sink_race import connector, overlaps, parquet_counts, process_state, produce_ids
from tests.integration.source_helpers import finish, numbered_table, read_ids, source_file


def _paused(proc, once: Path) -> bool:
    """True once ``proc`` stopped itself (SIGSTOP) at its fault point."""
    assert proc.poll() is None, proc.communicate()
    return process_state(proc.pid) == "T" and once.exists()


def _stopped(proc, code: int) -> None:
    got, out, err = finish(proc)
    assert got == code, err
    assert err.startswith("stopped:") and "batch boundary" in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_cli_continuous_cdc_sigterm_mid_chunk_restart_and_budget(cdc: Cdc, tmp_path) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    cdc.overrides.update(table_include=[r"public\.items"], snapshot_mode="never")
    topic = cdc.topic("items")
    cdc.run()  # the slot and its starting position
    path = tmp_path / "cdc.yaml"
    path.write_text(yaml.safe_dump(cdc.config().model_dump(mode="json", exclude_defaults=True)
                                   | {"type": "postgres_cdc"}))
    expected: dict[int, list[str]] = {}

    def change(*statements: str, inserted: range = range(0), deleted: range = range(0),
               updated: range = range(0)) -> None:
        cdc.sql("BEGIN", *statements, "COMMIT")
        for i in inserted:
            expected[i] = ["c"]
        for i in updated:
            expected[i].append("u")
        for i in deleted:
            expected[i] += ["d", "-"]

    def events() -> list:
        return [(None if k is None else orjson.loads(k), None if v is None else orjson.loads(v))
                for k, v in read_records(cdc.kafka, topic)]

    def count() -> int:
        return sum(len(ops) for ops in expected.values())

    # one WAL chunk that goes out as three batches: 10 inserts, 3 deletes, their 3 tombstones
    change("INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g", inserted=range(1, 11))
    change("DELETE FROM items WHERE id <= 3", deleted=range(1, 4))
    once = tmp_path / "paused-once"
    proc = start_cli(path, cdc.offsets_topic, env={"HEADRACE_FAULT": "source_after_produce",
                                                    "HEADRACE_FAULT_ACTION": "pause",
                                                    "HEADRACE_FAULT_ONCE": str(once)})
    try:
        wait_for("the run paused after producing the chunk's inserts", lambda: _paused(proc, once))
        os.killpg(proc.pid, signal.SIGTERM)  # pending while it is stopped
        os.killpg(proc.pid, signal.SIGCONT)
        _stopped(proc, 143)
        assert ops_by_key(events()) == expected  # the whole chunk, once: the stop waited for its offset

        proc = start_cli(path, cdc.offsets_topic)  # changes arrive while it runs
        for n in range(5):
            lo = 100 + 10 * n
            change(f"INSERT INTO items SELECT g, 'b' FROM generate_series({lo}, {lo + 9}) g",
                   f"UPDATE items SET v = 'u' WHERE id = {4 + n}", inserted=range(lo, lo + 10), updated=[4 + n])
            wait_for(f"{count()} events", lambda: len(events()) >= count(), alive=lambda: proc.poll() is None)
        change("DELETE FROM items WHERE id BETWEEN 100 AND 104", deleted=range(100, 105))
        wait_for(f"{count()} events", lambda: len(events()) >= count(), alive=lambda: proc.poll() is None)
        os.killpg(proc.pid, signal.SIGTERM)
        _stopped(proc, 143)

        change("INSERT INTO items SELECT g, 'c' FROM generate_series(200, 206) g", inserted=range(200, 207))
        proc = start_cli(path, cdc.offsets_topic, "--max-seconds", "1")  # restart, then the budget ends it
        code, out, err = finish(proc)
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["connector"], summary["mode"], summary["rows"], summary["topics"]) == (
            cdc.name, "continuous", 7, {topic: 7})
    finally:
        stop_process(proc)
    got = events()
    assert len(got) == count() and ops_by_key(got) == expected
    lsns = [v["source"]["lsn"] for _k, v in got if v is not None]
    assert len(lsns) == len(set(lsns))


def test_cli_continuous_sql_source_sigint_restart_and_budget(pg_url, kafka: KafkaSettings, topic_factory,
                                                              unique, tmp_path) -> None:
    table, name = f"ccli_{unique}", f"ccli-{unique}"
    numbered_table(pg_url, table, 100)
    prefix, offsets = topic_factory("ccli", create=False), topic_factory("ccli-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=30, exactly_once=True)
    bad = run_cli("run", str(path), "--max-seconds", "5")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --max-seconds needs --continuous", bad.stderr

    proc = start_cli(path, offsets)
    try:
        wait_for("the first rows", lambda: len(read_ids(kafka, topic)) >= 100,
                 alive=lambda: proc.poll() is None)
        with psycopg.connect(pg_url, autocommit=True) as c:  # rows arriving while it runs
            for lo in range(101, 201, 20):
                c.execute(f"INSERT INTO \"{table}\" SELECT g, 'x' || g FROM generate_series({lo}, {lo + 19}) g")
        wait_for("the rows inserted meanwhile", lambda: len(read_ids(kafka, topic)) >= 200,
                 alive=lambda: proc.poll() is None)
        os.killpg(proc.pid, signal.SIGINT)
        _stopped(proc, 130)
        numbered_table(pg_url, table, 100, start=201)
        proc = start_cli(path, offsets, "--max-seconds", "1")
        code, out, err = finish(proc)
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["rows"], summary["topics"], summary["batches"]) == (100, {topic: 100}, 1)
    finally:
        stop_process(proc)
    ids = read_ids(kafka, topic)
    assert sorted(ids) == list(range(1, 301))  # each once


def test_cli_continuous_cdc_exactly_once_killed_mid_chunk(cdc: Cdc, tmp_path) -> None:
    """``exactly_once``: a WAL chunk that goes out as several batches is one transaction with its offset,
    so kill -9 between them leaves nothing of the chunk visible read committed; the restart delivers it
    once (the killed run's copies are aborted: visible only read uncommitted)."""
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    cdc.overrides.update(table_include=[r"public\.items"], snapshot_mode="never", exactly_once=True)
    topic = cdc.topic("items")
    cdc.run()
    path = tmp_path / "cdc.yaml"
    path.write_text(yaml.safe_dump(cdc.config().model_dump(mode="json", exclude_defaults=True)
                                   | {"type": "postgres_cdc"}))
    cdc.sql("INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g", "DELETE FROM items WHERE id <= 3")
    once = tmp_path / "killed-once"
    # killed right after the chunk's first batch (its inserts) went through ``_move_batch``, where a batch
    # with an offset would be committed
    proc = start_cli(path, cdc.offsets_topic, env={"HEADRACE_FAULT": "source_after_commit",
                                                    "HEADRACE_FAULT_ONCE": str(once)})
    try:
        code, _out, err = finish(proc)
        assert code == -signal.SIGKILL and once.exists(), err
        assert read_records(cdc.kafka, topic) == []
        proc = start_cli(path, cdc.offsets_topic)
        expected = {i: ["c", "d", "-"] if i <= 3 else ["c"] for i in range(1, 11)}
        wait_for("the chunk", lambda: len(read_records(cdc.kafka, topic)) >= 16, alive=lambda: proc.poll() is None)
        os.killpg(proc.pid, signal.SIGTERM)
        _stopped(proc, 143)
    finally:
        stop_process(proc)
    got = [(None if k is None else orjson.loads(k), None if v is None else orjson.loads(v))
           for k, v in read_records(cdc.kafka, topic)]
    assert len(got) == 16 and ops_by_key(got) == expected
    assert len(read_records(cdc.kafka, topic, "read_uncommitted")) == 16 + 10  # the aborted inserts


def test_cli_continuous_parquet_sink_sigterm_restart_and_budget(kafka: KafkaSettings, topic_factory, unique,
                                                                 tmp_path) -> None:
    topic = topic_factory("ccpq", partitions=2)
    produce_ids(kafka, topic, 0, 100, partitions=2)
    root = tmp_path / "lake"
    cfg = connector(tmp_path / "c", {"type": "parquet_sink", "name": f"ccpq-{unique}", "topics": [topic],
                                     "path": str(root), "flush_size": 40})
    offsets = topic_factory("ccpq-offs", create=False)  # a sink keeps group offsets; never created
    proc = start_cli(cfg, offsets)
    try:
        wait_for("the first records in Parquet", lambda: parquet_counts(root, topic)[0] >= 100,
                 alive=lambda: proc.poll() is None)
        produce_ids(kafka, topic, 100, 200, partitions=2)  # arriving while it runs
        wait_for("the records produced meanwhile", lambda: parquet_counts(root, topic)[0] >= 200,
                 alive=lambda: proc.poll() is None)
        os.killpg(proc.pid, signal.SIGTERM)
        _stopped(proc, 143)
        produce_ids(kafka, topic, 200, 250, partitions=2)
        proc = start_cli(cfg, offsets, "--max-seconds", "1")
        code, out, err = finish(proc)
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["mode"], summary["rows"], summary["rows_per_topic"]) == ("continuous", 50, {topic: 50})
    finally:
        stop_process(proc)
    assert parquet_counts(root, topic) == (250, 250, 0, 249)  # each record once
    assert overlaps(root, topic) == []
