"""Reliability matrix row 3: the broker restarts, cleanly (SIGTERM) and hard (SIGKILL), in the middle of a run.

A second single-node KRaft broker, started by the test on its own ports and data folder, so the
shared broker of the other tests is never disturbed. A SQL source writes 300,000 numbered rows
while the broker goes down and comes back; then a Parquet sink drains the topic while it goes down
and comes back again. Every acknowledged record must be readable afterwards: no id is missing from
the topic, duplicates stay within the batch in flight (the source is at-least-once), and the sink's
files hold every id exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from confluent_kafka import TopicPartition

from integrations.config import ParquetSinkConfig, SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka
from integrations.offsets import OffsetStore
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from tests.conftest import free_port, remove_broker

ROWS, BATCH = 300_000, 10_000


class Broker:
    """A throwaway local broker that a test can stop (clean or hard) and start again."""

    def __init__(self) -> None:
        self.local = LocalKafka(port=free_port(), controller_port=free_port(), heap="384m")

    def start(self) -> None:
        self.local.up(wait=120)

    def stop(self, hard: bool) -> None:
        pid = self.local.pid()
        assert pid, "the test broker is not running"
        if not hard:
            self.local.down()
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.local.pid() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.local.pid_file.unlink(missing_ok=True)

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.local.bootstrap, client_config={}, connect_retries=8,
                             message_timeout_ms=120_000)

    def remove(self) -> None:
        if self.local.pid():
            self.stop(hard=True)
        remove_broker(self.local)


@pytest.fixture(scope="module")
def broker(kafka) -> Iterator[Broker]:
    """A second broker for this module only (the shared one provides the jars); removed afterwards."""
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.remove()


def _restart_when(broker: Broker, reached: threading.Event, hard: bool, log: list[tuple[str, float]]
                  ) -> threading.Thread:
    """In the background: once ``reached`` is set, stop the broker, wait 2 s, start it again; ``log``
    gets the moments, and ``log.stopped`` (an Event) is set once the broker is down."""

    def run() -> None:
        reached.wait(120)
        log.append(("stopping", time.monotonic()))
        broker.stop(hard)
        log.append(("stopped", time.monotonic()))
        stopped.set()
        time.sleep(2)
        broker.start()
        log.append(("started", time.monotonic()))

    stopped = threading.Event()
    t = threading.Thread(target=run, daemon=True)
    t.stopped = stopped  # type: ignore[attr-defined]
    t.start()
    return t


def _hold_at(monkeypatch, module: object, point: str, nth: int, reached: threading.Event,  # noqa: ANN001
             restarter: Callable[[], threading.Thread]) -> None:
    """Make the run (in this process) wait at its ``nth`` pass of fault point ``point`` until the broker
    is down: it then goes on against a stopped, then restarting broker (it could otherwise finish
    before a clean shutdown completes)."""
    seen = 0

    def hold(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen == nth:
                reached.set()
                assert restarter().stopped.wait(120), "the broker did not stop"  # type: ignore[attr-defined]

    monkeypatch.setattr(module, "fault_point", hold)


def _ids(settings: KafkaSettings, topic: str) -> list[int]:
    c = settings.consumer(group_id="restart-reader")
    c.assign([TopicPartition(topic, 0, 0)])
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    ids: list[int] = []
    seen = 0
    while seen < high:
        for m in c.consume(num_messages=50_000, timeout=2):
            if m.error() is None:
                ids.append(orjson.loads(m.value())["id"])
                seen = m.offset() + 1
    c.close()
    return ids


# make test: the clean restart here and a kill -9 in tests/chaos (short); make test-long adds this kill -9
@pytest.mark.parametrize("hard", [False, pytest.param(True, marks=pytest.mark.long)], ids=["clean", "hard"])
def test_source_and_sink_ride_out_a_broker_restart(broker, hard, tmp_path: Path, unique, monkeypatch):
    from integrations.runtime import sink_runner, source_runner

    settings = broker.settings()
    db = tmp_path / "src.db"
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE events (id INTEGER PRIMARY KEY, v TEXT)"))
        c.execute(sa.text(f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {ROWS}) "
                          "INSERT INTO events SELECT i, printf('%050d', i) FROM g"))
    eng.dispose()
    prefix = f"restart-{unique}-"
    topic = prefix + "events"
    cfg = SqlSourceConfig(name=f"restart-{unique}", type="sql_source", connection_url=f"sqlite:///{db}",
                          mode="incrementing", incrementing_column="id", tables=["events"], topic_prefix=prefix,
                          batch_max_rows=BATCH, errors_retry_timeout=180, errors_retry_delay_max=2)
    offsets = f"restart-offsets-{unique}"

    # 1. the source: the broker goes down once its first batch is committed; the source waits for that
    log: list[tuple[str, float]] = []
    reached = threading.Event()
    restarter = _restart_when(broker, reached, hard, log)
    _hold_at(monkeypatch, source_runner, "source_after_commit", 1, reached, lambda: restarter)
    res = run_source(cfg, settings, offsets)
    ended = time.monotonic()
    restarter.join(timeout=180)
    assert [e for e, _ in log] == ["stopping", "stopped", "started"]
    assert ended > log[1][1], "the source finished before the broker was down"
    ids = _ids(settings, topic)
    assert sorted(set(ids)) == list(range(1, ROWS + 1))  # every acknowledged row is there: no gap
    assert len(ids) - ROWS <= 2 * BATCH  # at-least-once: only batches in flight at the restart repeat
    assert res.rows == ROWS
    stored = OffsetStore(settings, offsets).read(cfg.name)
    assert stored[orjson.dumps({"table": "events"}).decode()]["incrementing"] == ROWS

    # 2. the sink: the broker goes down while the topic is being drained into Parquet
    out = tmp_path / "out"
    sink = ParquetSinkConfig(type="parquet_sink", name=f"restart-sink-{unique}", topics=[topic], path=str(out),
                             flush_size=BATCH, errors_retry_timeout=180, errors_retry_delay_max=2)
    log.clear()
    reached = threading.Event()
    restarter = _restart_when(broker, reached, hard, log)
    _hold_at(monkeypatch, sink_runner, "sink_after_write", 3, reached, lambda: restarter)
    first = run_sink(sink, settings, consume_batch=BATCH)
    ended = time.monotonic()
    restarter.join(timeout=180)
    assert [e for e, _ in log] == ["stopping", "stopped", "started"]
    assert ended > log[1][1], "the sink finished before the broker was down"
    second = run_sink(sink, settings)  # whatever the first run could not finish
    files = sorted(out.rglob("*.parquet"))
    got = [i for f in files for i in pq.read_table(f).column("id").to_pylist()]
    assert len(got) == len(ids) and sorted(set(got)) == list(range(1, ROWS + 1))  # each record exactly once
    assert first.rows + second.rows == len(ids)
    assert not list(out.rglob("*.tmp"))
    assert [f.name for f in files] == [f"{topic}+0+{s:020d}.parquet" for s in range(0, len(ids), BATCH)]
