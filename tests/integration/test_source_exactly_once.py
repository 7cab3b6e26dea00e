"""Exactly-once source (KIP-618's design): with ``exactly_once: true`` a batch's records and its offset
are one Kafka transaction, so a ``read_committed`` consumer sees every row exactly once however the
source runs are killed (kill -9 at random moments) or raced against each other. Real PostgreSQL,
real broker, real ``headrace run`` processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess

import orjson

from integrations.offsets import OffsetStore
from tests.integration.source_helpers import (
    finish,
    gaps_and_duplicates,
    numbered_table,
    read_ids,
    source_file,
    start_paused_run,
    start_run,
    uncommitted_end,
    wait_for_growth,
)


def test_kill_9_at_random_moments_leaves_each_row_exactly_once(pg_url, kafka, topic_factory, unique, tmp_path):
    rows, batch, kills = 400_000, 20_000, 4
    table, name = f"eos_{unique}", f"eos-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("eos", create=False), topic_factory("eos-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch, topic_partitions=3,
                       exactly_once=True)
    rng = random.Random(unique)
    store = OffsetStore(kafka, offsets)
    pkey = orjson.dumps({"table": table}).decode()
    killed, runs = 0, 0
    # kill -9 runs at random moments until one finishes the table; at ~200k rows/s a run can finish
    # the rest before the next kill lands, so the loop ends on the stored offset, not on a kill count
    while (store.read(name).get(pkey) or {}).get("incrementing") != rows:
        runs += 1
        assert runs <= kills + 10, f"the source never finished ({killed} kills)"
        proc = start_run(path, offsets)
        if killed < kills and wait_for_growth(kafka, topic, uncommitted_end(kafka, topic), proc):
            # a random moment after this run's first records reached the topic: mid-transaction,
            # between transactions, during a commit
            try:
                proc.wait(rng.uniform(0, 0.4))
            except subprocess.TimeoutExpired:  # still running: kill it now
                os.killpg(proc.pid, signal.SIGKILL)
                finish(proc)
                killed += 1
                continue
        code, out, err = finish(proc)
        assert code == 0, err
    assert killed >= 1, "no kill landed before the source finished"
    committed = read_ids(kafka, topic, "read_committed")
    assert gaps_and_duplicates(committed, rows) == (0, 0)
    assert len(committed) == rows
    uncommitted = read_ids(kafka, topic, "read_uncommitted")
    missing, aborted_dups = gaps_and_duplicates(uncommitted, rows)
    assert missing == 0
    print(f"read_uncommitted sees {aborted_dups} aborted duplicate(s) after {killed} kills")  # reported
    assert aborted_dups <= killed * batch  # at most the transaction open at each kill
    assert store.read(name)[pkey]["incrementing"] == rows
    assert len(kafka.partitions(topic)) == 3


def test_two_runs_started_together_one_is_fenced(pg_url, kafka, topic_factory, unique, tmp_path):
    rows, batch = 300_000, 10_000
    table, name = f"eos2_{unique}", f"eos2-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("eos2", create=False), topic_factory("eos2-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch, exactly_once=True)
    first, second = start_run(path, offsets), start_run(path, offsets)
    results = [finish(first), finish(second)]
    fenced = [r for r in results if r[0] != 0]
    # both started at once: the later init_transactions fences the earlier run at its next batch
    assert len(fenced) == 1, results
    code, _out, err = fenced[0]
    assert code == 1 and "fenced this one" in err and "aborted" in err and "Traceback" not in err, err
    # the winner may stop short (seen: exit 0, 0 rows; likely the no-skip guard waiting for the fenced
    # run's open read transaction): what it left is the next micro-batch's, still exactly once
    final = finish(start_run(path, offsets))
    assert final[0] == 0, final
    assert gaps_and_duplicates(read_ids(kafka, topic, "read_committed"), rows) == (0, 0)


def test_a_paused_run_resumed_after_another_completed_is_fenced(pg_url, kafka, topic_factory, unique, tmp_path):
    """SIGSTOP a run mid-way, let a second run finish, SIGCONT the first: its open transaction was
    aborted by the second run's init_transactions and it fails on its next call, one line."""
    rows, batch = 200_000, 10_000
    table, name = f"eos3_{unique}", f"eos3-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("eos3", create=False), topic_factory("eos3-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch, exactly_once=True)
    stale = start_paused_run(path, offsets, tmp_path / "paused-once")  # stopped inside its first transaction
    try:
        code, _out, err = finish(start_run(path, offsets))
        assert code == 0, err
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    code, _out, err = finish(stale)
    assert code == 1 and "fenced this one" in err, err
    assert gaps_and_duplicates(read_ids(kafka, topic, "read_committed"), rows) == (0, 0)
    stored = OffsetStore(kafka, offsets).read(name)
    assert stored[orjson.dumps({"table": table}).decode()]["incrementing"] == rows  # not moved back


def test_file_source_killed_inside_a_transaction_is_exactly_once(kafka, topic_factory, unique, tmp_path):
    """A file source with exactly_once, killed (SIGKILL) after producing a batch and before committing it:
    the rerun's init_transactions aborts it; read_committed sees each record once."""
    rows, batch = 50_000, 5_000
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n" + "\n".join(map(str, range(1, rows + 1))) + "\n")
    topic, offsets = topic_factory("feos", create=False), topic_factory("feos-offs", create=False)
    name = f"feos-{unique}"
    path = tmp_path / "c.yaml"
    path.write_text(orjson.dumps({"name": name, "type": "file_source", "input_path": str(folder), "topic": topic,
                                  "batch_size": batch, "exactly_once": True}).decode())
    once = tmp_path / "fault-once"
    code, _out, err = finish(start_run(path, offsets, {"HEADRACE_FAULT": "source_after_produce",
                                                       "HEADRACE_FAULT_ONCE": str(once)}))
    assert code == -signal.SIGKILL and once.exists(), err
    assert read_ids(kafka, topic, "read_uncommitted") != []  # the killed batch reached the log ...
    code, _out, err = finish(start_run(path, offsets))
    assert code == 0, err
    assert gaps_and_duplicates(read_ids(kafka, topic, "read_committed"), rows) == (0, 0)  # ... never committed
    missing, aborted = gaps_and_duplicates(read_ids(kafka, topic, "read_uncommitted"), rows)
    assert missing == 0 and aborted == batch  # the one aborted batch
    (stored,) = OffsetStore(kafka, offsets).read(name).values()
    assert stored["record"] == rows and stored["done"] is True
