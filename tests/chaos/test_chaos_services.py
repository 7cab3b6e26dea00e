"""Chaos around the services: the broker killed (kill -9) and restarted in the middle of runs, and
PostgreSQL sessions killed with ``pg_terminate_backend`` during source and sink runs.

The broker is a throwaway second single-node KRaft broker on its own ports and data folder (as in
tests/integration/test_broker_restart.py), so the shared broker of the other tests is never disturbed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka
from tests.chaos.connectors import parquet_sink, sql_source, table_sink
from tests.chaos.harness import (
    SCALE,
    Run,
    parquet_files,
    parquet_ids,
    partition_total,
    produce_numbered,
    seed_table,
    table_rows,
    table_tally,
    tally,
    topic_ids,
)
from tests.conftest import free_port, remove_broker
from tests.integration.sink_race import process_state


class Broker:
    """A throwaway local broker that a scenario kills hard and starts again."""

    def __init__(self) -> None:
        self.local = LocalKafka(port=free_port(), controller_port=free_port(), heap="384m")

    def start(self) -> None:
        self.local.up(wait=120)

    def kill(self) -> None:
        pid = self.local.pid()
        assert pid, "the throwaway broker is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.local.pid() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.local.pid_file.unlink(missing_ok=True)

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.local.bootstrap, client_config={}, connect_retries=8)

    def remove(self) -> None:
        if self.local.pid():
            self.kill()
        remove_broker(self.local)


@pytest.fixture
def broker(kafka) -> Iterator[Broker]:
    """A second broker for one scenario (the shared one provides the jars); removed afterwards."""
    b = Broker()
    try:
        b.start()
        yield b
    finally:
        b.remove()


def _bounce(broker: Broker, runs: list[Run], reached: Callable[[], bool], log: list[str],
            resume: tuple[Run, ...] = ()) -> threading.Thread:
    """In the background: once ``reached()``, kill -9 the broker, resume ``resume`` (runs paused at a
    fault point, so that they cannot finish before), wait 2 s, start it again. The log says whether
    every one of ``runs`` was still running when the broker died."""

    def bounce() -> None:
        deadline = time.monotonic() + 300
        while not reached() and all(r.code is None for r in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = [r.label for r in runs if r.code is None]
        broker.kill()
        for r in resume:
            r.send(signal.SIGCONT)
        log.append(f"killed while running: {', '.join(alive) or 'none'}")
        time.sleep(2)
        broker.start()
        log.append("started")

    t = threading.Thread(target=bounce, daemon=True)
    t.start()
    return t


def test_broker_killed_and_restarted_mid_run(chaos, broker, harness_db, pg_url, unique):
    """A SQL source run and a Parquet sink run work at once when the broker dies (kill -9) and returns.
    Both must ride it out (exit 0): the source loses nothing and repeats at most the batches in flight;
    the sink writes each record of its topic exactly once."""
    n, settings, batch = SCALE.rows, broker.settings(), max(SCALE.batch // 4, 500)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.local.bootstrap}
    table, prefix = f"src_{unique}", f"chaos-bounce-{unique}-"
    seed_table(harness_db, table, n)
    topic = prefix + table
    settings.ensure_topic(topic, partitions=3)
    sink_topic = f"chaos-bounce-in-{unique}"
    settings.ensure_topic(sink_topic, partitions=3)
    produce_numbered(settings, sink_topic, range(1, n + 1))
    src_cfg = chaos.connector(sql_source(f"chaos-bounce-{unique}", pg_url, table, prefix, batch_max_rows=batch))
    lake = chaos.folder / "lake"
    sink_cfg = chaos.connector(parquet_sink(f"chaos-bounce-sink-{unique}", sink_topic, lake, flush_size=batch))

    log: list[str] = []
    # each run pauses (SIGSTOP to itself) after its first batch until the broker is down: under load one
    # could otherwise finish before the other had started
    def paused(point: str, who: str) -> dict[str, str]:
        return {**env, "HEADRACE_FAULT": point, "HEADRACE_FAULT_ACTION": "pause",
                "HEADRACE_FAULT_ONCE": str(chaos.folder / f"{who}-paused")}

    source = chaos.start(src_cfg, "source", paused("source_after_produce", "source"))
    sink = chaos.start(sink_cfg, "sink", paused("sink_after_write", "sink"))
    bouncer = _bounce(broker, [source, sink], lambda: all(process_state(r.proc.pid) == "T" for r in (source, sink))
                      and partition_total(settings, topic) > 0 and len(parquet_files(lake)) > 0, log, (source, sink))
    source.wait(600)
    sink.wait(600)
    bouncer.join(300)
    chaos.kills += 1
    in_topic, in_lake = topic_ids(settings, topic), parquet_ids(lake)
    topic_tally = tally("topic (read_committed)", in_topic, n)
    lake_tally = tally("parquet dataset", in_lake, n)
    chaos.record(table_tally(harness_db, table, n, "source table"), topic_tally,
                 tally("sink topic (read_committed)", topic_ids(settings, sink_topic), n), lake_tally)
    assert log == ["killed while running: source, sink", "started"], log
    assert source.code == 0, f"the source did not ride out the restart: {source.describe()}"
    assert sink.code == 0, f"the sink did not ride out the restart: {sink.describe()}"
    assert (topic_tally.missing, topic_tally.stray) == (0, 0), "an acknowledged record was lost"
    # at-least-once: only the batches in flight at the restart repeat (two, as in test_broker_restart.py)
    assert topic_tally.duplicates <= 2 * batch
    assert (lake_tally.missing, lake_tally.duplicates, lake_tally.stray) == (0, 0, 0), \
        "the Parquet sink did not write each record once"


def _terminator(harness_db: sa.Engine, targets: list[Callable[[], bool]], stop: threading.Event,
                killed: list[int]) -> threading.Thread:
    """In the background: each time the next ``targets`` condition holds, terminate every session of the
    scenario's database except the harness's own (``application_name`` ``chaos-harness``)."""

    def run() -> None:
        with harness_db.connect() as c:
            for reached in targets:
                while not stop.is_set() and not reached():
                    time.sleep(0.02)
                while not stop.is_set():
                    pids = c.execute(sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                        "AND coalesce(application_name, '') <> 'chaos-harness'")).scalars().all()
                    hit = [p for p in pids if c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": p}).scalar()]
                    if hit:
                        killed.extend(hit)
                        break
                    time.sleep(0.01)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind", ["source", "table_sink"])
def test_pg_terminate_backend_during_runs(chaos, harness_db, pg_url, unique, kind):
    n, times = SCALE.rows, SCALE.kills
    name = f"chaos-pgkill-{unique}"
    if kind == "source":
        table, prefix = f"src_{unique}", f"{name}-"
        seed_table(harness_db, table, n)
        topic = chaos.topic(prefix + table)
        cfg = chaos.connector(sql_source(name, pg_url, table, prefix))
        progress = lambda: partition_total(chaos.kafka, topic)  # noqa: E731
    else:
        table, topic = f"sink_{unique}", chaos.topic(f"{name}-in")
        produce_numbered(chaos.kafka, topic, range(1, n + 1))
        cfg = chaos.connector(table_sink(name, topic, pg_url, table))
        progress = lambda: table_rows(harness_db, table)  # noqa: E731
    # the first termination once the first output is there, the others spread over the rest
    targets = [lambda: progress() > 0] + [lambda k=k: progress() >= n * k // (times + 1) for k in range(1, times)]
    stop, killed = threading.Event(), []
    run = chaos.start(cfg, kind)
    killer = _terminator(harness_db, targets, stop, killed)
    try:
        run.wait(600)
    finally:
        stop.set()
        killer.join(30)
    chaos.kills = len(killed)
    if kind == "source":
        got = tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n)
        chaos.record(table_tally(harness_db, table, n, "source table"), got)
    else:
        got = table_tally(harness_db, table, n, "table (insert)")
        chaos.record(tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n), got)
    assert killed, "no session of the connector was seen"
    assert run.code == 0, f"a lost connection is retried by default, the run must complete: {run.describe()}"
    assert (got.missing, got.stray) == (0, 0), "records lost"
    # a retry restarts from the last stored offset; rows read but not produced are read again, and
    # nothing is produced twice (docs/exactly-once-source.md, lost database connections)
    assert got.duplicates == 0, "duplicates after a lost connection"
