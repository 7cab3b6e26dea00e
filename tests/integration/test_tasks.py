"""tasks_max in the engine, against the real broker and PostgreSQL: topic partitions, tables and bulk key
ranges divided among tasks; every record exactly once; offsets per partition / table; reassigning tasks
(another tasks_max, added partitions) loses and duplicates nothing; a task killed while the other
succeeds, then retried."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka.admin import NewPartitions

from integrations.config import ParquetSinkConfig, SqlSourceConfig, TableSinkConfig
from integrations.offsets import OffsetStore
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from integrations.runtime.tasks import key_range, sink_partitions
from tests.conftest import run_cli
from tests.integration.sink_helpers import file_rows, produce, stored_offsets
from tests.integration.source_helpers import numbered_table, read_ids


def _ids(root: str, topic: str) -> list[int]:
    return [i for ids in file_rows(root, topic).values() for i in ids]


def test_key_range_covers_without_overlap():
    for low, high, parts in [(1, 10, 3), (5, 5, 4), (-7, 100, 7), (1, 1_000_000, 2)]:
        spans = [key_range(low, high, parts, i) for i in range(parts)]
        covered = [k for s in spans if s for k in range(s[0], s[1] + 1)]
        assert covered == list(range(low, high + 1))
    assert key_range(3, 2, 2, 0) is None


def test_sink_partitions_stable_when_partitions_are_added():
    before = {p: t for t in range(3) for (_x, p) in sink_partitions(["a"], [("a", q) for q in range(4)], 3, t)}
    after = {p: t for t in range(3) for (_x, p) in sink_partitions(["a"], [("a", q) for q in range(7)], 3, t)}
    assert all(after[p] == t for p, t in before.items())
    assert sorted(after) == list(range(7))


def test_parquet_sink_tasks_then_reassigned(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("tsk", partitions=4)
    produce(kafka, topic, [(i % 4, None, {"id": i}, None) for i in range(4000)])
    root = str(tmp_path / "out")
    conf = {"type": "parquet_sink", "name": f"tsk-{unique}", "topics": [topic], "path": root, "flush_size": 300}
    two = ParquetSinkConfig(**conf, tasks_max=2)
    r0 = run_sink(two, kafka, task=0)
    assert sorted(r.partition for r in r0.ranges) == [0, 2]
    assert r0.rows == 2000 and r0.lag_after == {topic: 0}
    # task 1 has not run: its partitions are still behind
    assert sorted(_ids(root, topic)) == [i for i in range(4000) if i % 4 in (0, 2)]
    r1 = run_sink(two, kafka, task=1)
    assert sorted(r.partition for r in r1.ranges) == [1, 3] and r1.rows == 2000
    assert sorted(_ids(root, topic)) == list(range(4000))
    assert {p: o for p, o in kafka.committed(two.consumer_group, topic).items()} == {p: 1000 for p in range(4)}
    # more records, then tasks_max 3 (partitions move between tasks), then 1: nothing lost, nothing twice
    produce(kafka, topic, [(i % 4, None, {"id": i}, None) for i in range(4000, 6000)])
    three = ParquetSinkConfig(**conf, tasks_max=3)
    got = [run_sink(three, kafka, task=t).rows for t in range(3)]
    assert sum(got) == 2000 and got == [1000, 500, 500]  # task 0 owns partitions 0 and 3
    produce(kafka, topic, [(i % 4, None, {"id": i}, None) for i in range(6000, 7000)])
    one = ParquetSinkConfig(**conf)
    assert run_sink(one, kafka).rows == 1000
    assert sorted(_ids(root, topic)) == list(range(7000))
    # partitions added: the new ones are read by their task from the log start
    kafka.admin().create_partitions([NewPartitions(topic, 6)])[topic].result()
    produce(kafka, topic, [(i % 6, None, {"id": i}, None) for i in range(7000, 7600)])
    merged = run_sink(two, kafka)  # no task given: every task in turn
    assert merged.rows == 600
    assert sorted(_ids(root, topic)) == list(range(7600))


def test_table_sink_tasks_store_offsets_per_partition(kafka, topic_factory, unique, pg_url):
    topic = topic_factory("tsq", partitions=3)
    produce(kafka, topic, [(i % 3, {"id": i}, {"id": i, "v": f"r{i}"}, None) for i in range(900)])
    conf = {"type": "table_sink", "name": f"tsq-{unique}", "topics": [topic], "connection_url": pg_url,
            "table_name_format": "t_${topic}", "auto_create": True, "insert_mode": "upsert", "pk_mode": "record_value",
            "pk_fields": ["id"]}
    two = TableSinkConfig(**conf, tasks_max=2)
    assert run_sink(two, kafka, task=1).rows == 300
    assert stored_offsets(two) == {(topic, 1): 300}
    assert run_sink(two, kafka, task=0).rows == 600
    assert stored_offsets(two) == {(topic, p): 300 for p in range(3)}
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        ids = [r[0] for r in c.execute(sa.text(f'SELECT id FROM "t_{topic}"'))]
    eng.dispose()
    assert sorted(ids) == list(range(900))


def test_sql_source_tables_among_tasks(kafka, unique, pg_url):
    tables = ["ta", "tb", "tc"]
    prefix = f"tss{unique}-"
    for t in tables:
        numbered_table(pg_url, t, 500)
    topics = [f"{prefix}{t}" for t in tables]
    for t in topics:
        kafka.ensure_topic(t)
    offsets = f"tss-offsets-{unique}"
    conf = {"type": "sql_source", "name": f"tss-{unique}", "connection_url": pg_url, "mode": "incrementing",
            "incrementing_column": "id", "tables": tables, "topic_prefix": prefix, "key_columns": ["id"]}
    try:
        two = SqlSourceConfig(**conf, tasks_max=2)
        r0 = run_source(two, kafka, offsets, task=0)
        assert sorted(json.loads(k)["table"] for k in r0.per_partition) == ["ta", "tc"]
        r1 = run_source(two, kafka, offsets, task=1)
        assert sorted(json.loads(k)["table"] for k in r1.per_partition) == ["tb"]
        stored = OffsetStore(kafka, offsets).read(two.name)
        assert {json.loads(k)["table"]: v["incrementing"] for k, v in stored.items()} == {t: 500 for t in tables}
        # tasks_max 3 (tb and tc move), more rows: each table continues from its own offset
        for t in tables:
            numbered_table(pg_url, t, 200, start=501)
        three = SqlSourceConfig(**conf, tasks_max=3)
        assert sum(run_source(three, kafka, offsets, task=i).rows for i in range(3)) == 600
        for topic in topics:
            assert collections.Counter(read_ids(kafka, topic)) == collections.Counter(range(1, 701))
    finally:
        kafka.delete_topics([*topics, offsets])


@pytest.mark.parametrize("read_ranges", [1, 3])
def test_bulk_table_split_into_key_ranges(kafka, unique, pg_url, read_ranges):
    numbered_table(pg_url, "big", 10_000)
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:  # a key gap and a NULL key: still exactly the table's rows
        c.execute(sa.text('DELETE FROM "big" WHERE id BETWEEN 4000 AND 6000'))
        c.execute(sa.text('ALTER TABLE "big" ADD COLUMN n bigint'))
        c.execute(sa.text('UPDATE "big" SET n = id'))
        c.execute(sa.text('UPDATE "big" SET n = NULL WHERE id = 7'))
    eng.dispose()
    topic = f"tsb{unique}-big"
    kafka.ensure_topic(topic)
    offsets = f"tsb-offsets-{unique}"
    conf = SqlSourceConfig(type="sql_source", name=f"tsb-{unique}", connection_url=pg_url, mode="bulk",
                           tables=["big"], topic_prefix=f"tsb{unique}-", key_columns=["n"], tasks_max=2,
                           batch_max_rows=1000)
    try:
        rows = [run_source(conf, kafka, offsets, task=i, read_ranges=read_ranges).rows for i in range(2)]
        assert sum(rows) == 7999 and min(rows) > 3000
        assert collections.Counter(read_ids(kafka, topic)) == collections.Counter(
            i for i in range(1, 10_001) if not 4000 <= i <= 6000)
    finally:
        kafka.delete_topics([topic, offsets])


def test_task_killed_while_other_succeeds_then_retried(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("tsx", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(3000)])
    root = str(tmp_path / "out")
    conf = {"type": "parquet_sink", "name": f"tsx-{unique}", "topics": [topic], "path": root, "flush_size": 500,
            "tasks_max": 2}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    once = str(tmp_path / "fault-once")
    killed = run_cli("run", str(path), "--task", "0",
                     env={"HEADRACE_FAULT": "sink_after_write", "HEADRACE_FAULT_ONCE": once})
    assert killed.returncode == -9  # SIGKILL after a file was published, before its offset commit
    ok = run_cli("run", str(path), "--task", "1")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["rows"] == 1500
    retried = run_cli("run", str(path), "--task", "0")
    assert retried.returncode == 0, retried.stderr
    assert sorted(_ids(root, topic)) == list(range(3000))
    assert kafka.committed(f"headrace-tsx-{unique}", topic) == {0: 1500, 1: 1500}
    bad = run_cli("run", str(path), "--task", "2")
    assert bad.returncode != 0 and "task 2 does not exist" in bad.stderr


FIRST_LOAD = """
import sys
from integrations.config import load_connector
from integrations.runtime.source_runner import run_source
print(run_source(load_connector(sys.argv[1]), read_ranges=3).rows)
"""


def test_incrementing_first_load_in_key_ranges_resumes(kafka, unique, pg_url, tmp_path):
    numbered_table(pg_url, "inc", 9000)
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text('DELETE FROM "inc" WHERE id BETWEEN 2000 AND 2999'))  # a gap inside range 0
    eng.dispose()
    prefix = f"tsi{unique}-"
    topic, offsets = f"{prefix}inc", f"tsi-offsets-{unique}"
    conf = {"type": "sql_source", "name": f"tsi-{unique}", "connection_url": pg_url, "mode": "incrementing",
            "incrementing_column": "id", "tables": ["inc"], "topic_prefix": prefix, "key_columns": ["id"],
            "batch_max_rows": 500, "exactly_once": True}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    env = {"HEADRACE_OFFSETS_TOPIC": offsets, "HEADRACE_FAULT": "source_after_commit",
           "HEADRACE_FAULT_ONCE": str(tmp_path / "once")}
    try:
        # killed right after the first batch's transaction (records + snapshot offset) committed
        killed = subprocess.run([sys.executable, "-c", FIRST_LOAD, str(path)], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=300)
        assert killed.returncode == -9, killed.stderr[-2000:]
        # the killed run's commit marker is written after its commit returned, and under load it can
        # come later than a read's wait for it (a run takes the fence first, which waits for it)
        deadline = time.monotonic() + 60
        while not (stored := OffsetStore(kafka, offsets).read(conf["name"])) and time.monotonic() < deadline:
            time.sleep(0.5)
        (snap,) = [v["snapshot"] for v in stored.values()]
        assert snap["upto"] == 9000 and [r[:2] for r in snap["ranges"]] == [[1, 3000], [3001, 6000], [6001, 9000]]
        again = subprocess.run([sys.executable, "-c", FIRST_LOAD, str(path)], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        assert int(again.stdout.split()[-1]) == 8000 - 500
        (after,) = OffsetStore(kafka, offsets).read(conf["name"]).values()
        assert after["incrementing"] == 9000 and "snapshot" not in after
        numbered_table(pg_url, "inc", 100, start=9001)  # then incremental polls go on from 9000
        assert run_source(SqlSourceConfig(**conf), kafka, offsets, read_ranges=3).rows == 100
        want = [i for i in range(1, 9101) if not 2000 <= i <= 2999]
        assert collections.Counter(read_ids(kafka, topic)) == collections.Counter(want)
    finally:
        kafka.delete_topics([topic, offsets])
