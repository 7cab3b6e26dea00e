"""Chaos: two runs of one connector at once (one writer per connector, issue 11 item 1).

- Two runs started together: a SQL source, a Parquet sink, a table sink.
- One run paused (SIGSTOP) right after its first write while more data arrives; another run completes;
  then the first resumes (SIGCONT). It must fail with one line and publish nothing.

Exactly-once modes end with every record exactly once; a run that lost the race exits 1 with one line.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.chaos.connectors import parquet_sink, sql_source, table_sink
from tests.chaos.harness import (
    FULL,
    SCALE,
    Run,
    one_line_failure,
    parquet_files,
    parquet_ids,
    partition_total,
    produce_numbered,
    seed_table,
    table_rows,
    table_tally,
    tally,
    topic_ids,
    wait_for,
)

#: source: at-least-once (a fenced run's batch in flight may repeat); source_eos: ``exactly_once: true``
KINDS = ["source", "source_eos", "parquet", "table"]
SMALL_BATCH = max(SCALE.batch // 4, 500)  # many writes per run, so a paused run always has work left
BLOCKED_AFTER = 120 if FULL else 30  # seconds the other run may take before it counts as blocked


def _setup(chaos, kind: str, unique: str, pg_url: str, harness_db, rows: int):
    """Connector YAML, a progress probe, and a function that returns the final tallies, for one kind."""
    name = f"chaos-{kind}-{unique}"
    if kind.startswith("source"):
        table, prefix = f"src_{unique}", f"{name}-"
        seed_table(harness_db, table, rows)
        topic = chaos.topic(prefix + table)
        cfg = chaos.connector(sql_source(name, pg_url, table, prefix, exactly_once=kind == "source_eos",
                                         batch_max_rows=SMALL_BATCH))
        return (cfg, lambda: partition_total(chaos.kafka, topic), topic,
                lambda n: [table_tally(harness_db, table, n, "source table"),
                           tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n)])
    topic = chaos.topic(f"{name}-in")
    produce_numbered(chaos.kafka, topic, range(1, rows + 1))
    if kind == "parquet":
        lake = chaos.folder / "lake"
        cfg = chaos.connector(parquet_sink(name, topic, lake, flush_size=SMALL_BATCH))
        return (cfg, lambda: len(parquet_files(lake)), topic,
                lambda n: [tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n),
                           tally("parquet dataset", parquet_ids(lake), n)])
    table = f"sink_{unique}"
    cfg = chaos.connector(table_sink(name, topic, pg_url, table, batch_size=SMALL_BATCH))
    return (cfg, lambda: table_rows(harness_db, table), topic,
            lambda n: [tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n),
                       table_tally(harness_db, table, n, "table (insert)")])


def _lost_or_won(run: Run) -> None:
    """A run that raced another either completed (exit 0) or failed with exit 1 and one line."""
    if run.code != 0:
        one_line_failure(run, code=1)


def _check(final: list, kind: str) -> None:
    """No loss; no duplicates in exactly-once modes; for the at-least-once source at most the stale
    run's batch in flight (it is fenced at its next offset write: docs/fencing.md)."""
    out = final[-1]
    assert (out.missing, out.stray) == (0, 0), f"{kind}: records lost"
    bound = SMALL_BATCH if kind == "source" else 0
    assert out.duplicates <= bound, f"{kind}: {out.duplicates} duplicates after two runs overlapped (bound {bound})"


@pytest.mark.parametrize("kind", KINDS)
def test_two_runs_started_together(chaos, harness_db, pg_url, unique, kind):
    n = SCALE.small
    cfg, _progress, _topic, final = _setup(chaos, kind, unique, pg_url, harness_db, n)
    a, b = chaos.start(cfg, "run-a"), chaos.start(cfg, "run-b")
    a.wait(600)
    b.wait(600)
    # the winner planned (or read) everything; the full variant also checks that the next run still works
    last = chaos.run(cfg, "run-after") if FULL else None
    tallies = final(n)
    chaos.record(*tallies)
    assert 0 in (a.code, b.code), f"neither run completed: {a.describe()} / {b.describe()}"
    _lost_or_won(a)
    _lost_or_won(b)
    assert last is None or last.code == 0, last.describe()
    _check(tallies, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_paused_run_resumes_after_another_completed(chaos, harness_db, pg_url, unique, kind):
    """The paused run wakes up after another run completed, and fails with one line.

    One documented exception (docs/fencing.md, table sinks): a run paused *inside* its database
    transaction holds the offsets row, so the other run waits for it instead of completing; after
    ``BLOCKED_AFTER`` seconds the paused run is resumed, and whichever commits second is fenced."""
    n, half = SCALE.small, SCALE.small // 2
    cfg, progress, topic, final = _setup(chaos, kind, unique, pg_url, harness_db, half)
    stale = chaos.start(cfg, "paused")
    assert wait_for(lambda: progress() > 0, 300, "the first write", while_alive=stale), stale.describe()
    assert stale.send(signal.SIGSTOP), f"the run ended before it could be paused: {stale.describe()}"
    blocked = False
    try:
        # more data arrives while it sleeps
        if kind.startswith("source"):
            seed_table(harness_db, f"src_{unique}", n - half, start=half + 1)
        else:
            produce_numbered(chaos.kafka, topic, range(half + 1, n + 1))
        other = chaos.start(cfg, "other")
        try:
            other.wait(BLOCKED_AFTER)
        except subprocess.TimeoutExpired:
            blocked = True  # waiting for a lock the paused run holds
    finally:
        stale.send(signal.SIGCONT)
    other.wait(300)
    stale.wait(300)
    # the rest, when the blocked case left some (and in the full variant always: the next run works)
    last = chaos.run(cfg, "run-after") if FULL or blocked else None
    tallies = final(n)
    for t in tallies:
        t.note = "the other run waited for the paused one's transaction" if blocked else t.note
    chaos.record(*tallies)
    if blocked:
        assert kind == "table", f"{kind}: the other run waited for the paused run: {other.describe()}"
        for r in (stale, other):
            _lost_or_won(r)
        assert 0 in (stale.code, other.code), f"neither run completed: {stale.describe()} / {other.describe()}"
    else:
        assert other.code == 0, other.describe()
        one_line_failure(stale, code=1)  # the stale run fails loudly: another run moved the offsets
    assert last is None or last.code == 0, last.describe()
    _check(tallies, kind)
