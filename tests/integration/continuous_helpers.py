"""Helpers for the continuous-mode tests: a connector's ``<connector>_continuous_job`` run in-process in a
thread and terminated as Dagster's UI does (the run marked CANCELING, which the op's stop bridge turns
into a stop at a batch boundary), ``headrace run NAME --continuous`` child processes, read_committed
topic reads to the end of every partition (transactional topics end in control records), and waits on
conditions (never on timings)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from confluent_kafka import Consumer, TopicPartition

from integrations.kafka.cluster import KafkaSettings
from integrations.runtime import stopping
from tests.integration.source_helpers import REPO

T = TypeVar("T")
_EOF = -191  # librdkafka's _PARTITION_EOF


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180,
             alive: Callable[[], bool] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` (or when ``alive`` says the
    thing that should make it true has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if alive is not None and not alive():
            got = probe()  # it may have come true just before the end
            if got:
                return got
            raise AssertionError(f"{what}: the run ended first")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@dataclass
class ContinuousRun:
    """One in-process execution of a connector's continuous job, in a thread."""

    instance: dg.DagsterInstance
    thread: threading.Thread
    outcome: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    def alive(self) -> bool:
        """True while the run is going."""
        return self.thread.is_alive()

    def terminate(self, timeout: float = 180) -> dg.ExecuteInProcessResult:
        """Mark the run CANCELING (the first thing every launcher's terminate does) and wait for it to end."""
        run = wait_for("the continuous run to be recorded", lambda: next(iter(self.instance.get_runs()), None))
        self.instance.report_run_canceling(self.instance.get_run_by_id(run.run_id))
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the terminated continuous run did not stop"
        stopping.reset()  # the flag is process-wide; the next run in this process starts clean
        return self.outcome[0]


def start_continuous_job(config: Any) -> ContinuousRun:
    """Execute ``config``'s continuous job in-process (its own ephemeral instance) in a thread: only the
    status watcher can stop it there, as in a run worker whose signals Dagster owns."""
    from assets.factory import connector_defs
    from resources.kafka import KafkaResource

    stopping.reset()
    jobs = [j for j in connector_defs(config).jobs if j.name.endswith("_continuous_job")]
    assert len(jobs) == 1, [j.name for j in connector_defs(config).jobs]
    instance = dg.DagsterInstance.ephemeral()
    run = ContinuousRun(instance, threading.Thread())

    def execute() -> None:
        run.outcome.append(jobs[0].execute_in_process(instance=instance, resources={"kafka": KafkaResource()},
                                                      raise_on_error=False))

    run.thread = threading.Thread(target=execute, name="continuous-job", daemon=True)
    run.thread.start()
    return run


def tear_down(kafka: KafkaSettings, connector: str, halt: threading.Event, *runs: ContinuousRun | None) -> None:
    """A test's cleanup: stop its writer thread, terminate the runs still going, forget the connector's
    stored offsets (the in-process jobs use the shared default offsets topic)."""
    from integrations.offsets import OffsetStore

    halt.set()
    for run in runs:
        if run is not None and run.alive():
            run.terminate()
    OffsetStore(kafka).reset(connector)


def stop_line(result: dg.ExecuteInProcessResult) -> str:
    """The one failure of a terminated continuous run: its stop line (fails on any other outcome)."""
    assert not result.success, "the continuous run ended by itself; it should have been terminated"
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1, [f.event_specific_data.error for f in failures]  # no retry of a terminated step
    data = failures[0].event_specific_data
    text = data.user_failure_data.description if data.user_failure_data else str(data.error)
    assert "stopped at a batch boundary" in (text or ""), text
    return text


def materialized_rows(run: ContinuousRun) -> list[int]:
    """``rows`` of every materialization the run recorded (one per micro-batch and topic)."""
    (record,) = run.instance.get_runs()
    return [int(e.asset_materialization.metadata["rows"].value)
            for e in run.instance.all_logs(record.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]


def read_records(kafka: KafkaSettings, topic: str, isolation: str = "read_committed",
                 timeout: float = 120) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record of ``topic`` visible under ``isolation`` up to the end of every partition
    as of the call ([] when the topic does not exist yet). A topic that keeps growing is read up to its
    end offsets at the start (a consumer that keeps finding new records would never see EOF); a
    transactional topic that ends in a control record ends at EOF."""
    parts = kafka.partitions(topic)
    if not parts:
        return []
    if isolation == "read_committed":
        highs = {p: hi for p, (_lo, hi) in kafka.watermarks(topic).items()}
    else:
        probe = Consumer({**kafka.base(), "group.id": f"cont-{uuid.uuid4().hex[:8]}"})
        try:
            highs = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                     for p in parts}
        finally:
            probe.close()
    c = Consumer({**kafka.base(), "group.id": f"cont-{uuid.uuid4().hex[:8]}", "isolation.level": isolation,
                  "enable.partition.eof": True, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        done = {p for p in parts if not highs.get(p)}
        c.assign([TopicPartition(topic, p, 0) for p in parts if p not in done])
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for m in c.consume(num_messages=100_000, timeout=0.5):
                p = m.partition()
                if m.error():
                    if m.error().code() == _EOF:
                        done.add(p)
                    continue
                if p in done or m.offset() >= highs[p]:
                    done.add(p)
                    continue
                out.append((m.key(), m.value()))
                if m.offset() + 1 >= highs[p]:
                    done.add(p)
    finally:
        c.close()
    return out


def start_cli(path: Path, offsets_topic: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``headrace run <path> --continuous <args>`` in a child process (its own session, output captured)."""
    return subprocess.Popen([sys.executable, "-m", "headrace.cli", "run", str(path), "--continuous", *args],
                            cwd=REPO, env={**os.environ, "HEADRACE_OFFSETS_TOPIC": offsets_topic, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop_process(proc: subprocess.Popen) -> None:
    """Kill a child run that a failed test left behind (its whole session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.communicate(timeout=30)
