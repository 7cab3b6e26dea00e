"""Reliability matrix row 17: a Dagster run worker killed in the middle of a sink run, on the
project's SQLite instance and (issue 15) on the multi-node PostgreSQL-storage instance.

Real daemon, real code server, real run workers, the project's dagster.yaml (with a 1 s monitoring
poll). The sink sensor requests a run; its step (a child process of the run worker) stalls right
after writing the first file, at a one-shot fault point. The test SIGKILLs the run worker:

- ``worker``: the code server that started it reports the run failed (or run monitoring, if its
  poll comes first);
- ``worker_and_code_server``: the code server is killed first, so nobody is left to report it, and
  run monitoring finds the dead worker through ``LocalRunLauncher``'s health check.

Either way the orphaned step dies with its worker (``die_with_run_worker``), run retries start the
run again with the same ``headrace/ranges`` tag, the sensor does not ask for the same ranges a
second time, and the retry finishes the dataset: every record exactly once, in the same
deterministic files as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml

from assets.run_launcher import run_worker_pid
from assets.sensors import REQUEST_TAG
from tests.helpers import read_dataset, write_connector

ROOT = Path(__file__).resolve().parents[2]
N, FLUSH = 20_000, 2_000


def _instance_yaml(home: Path, storage: str) -> None:
    """The project's dagster.yaml, or (``postgres``) the multi-node one with PostgreSQL storage, with a
    1 s monitoring poll."""
    base = ROOT / ("dagster.yaml" if storage == "sqlite" else "infra/dagster/dagster-postgres.yaml")
    conf = yaml.safe_load(base.read_text())
    conf["run_monitoring"]["poll_interval_seconds"] = 1
    conf["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(conf))


def _wait(what: str, fn, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := fn()) is not None:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.parametrize(("kill", "storage"), [
    ("worker", "postgres"),  # make test: the production storage; make test-long adds the two SQLite variants
    pytest.param("worker", "sqlite", marks=pytest.mark.long),
    pytest.param("worker_and_code_server", "sqlite", marks=pytest.mark.long)])
def test_killed_run_worker_is_failed_and_retried(kill, storage, kafka, topic_factory, tmp_path, unique, monkeypatch,
                                                 request):
    topic = topic_factory("crash17")
    p = kafka.producer()
    for i in range(N):
        p.produce(topic, json.dumps({"id": i, "v": f"row {i}"}))
    assert p.flush(30) == 0
    home, dagster_home, connectors = tmp_path / "hr", tmp_path / "dagster", tmp_path / "connectors"
    dagster_home.mkdir(parents=True)
    _instance_yaml(dagster_home, storage)
    if storage == "postgres":  # issue 15: the instance shared through PostgreSQL (psycopg2, as docs/deploy.md)
        url = request.getfixturevalue("pg_url").replace("postgresql://", "postgresql+psycopg2://", 1)
        monkeypatch.setenv("DAGSTER_PG_URL", url)
    name = f"crash-{unique}"
    lake = tmp_path / "lake"
    write_connector(connectors, {"name": name, "type": "parquet_sink", "topics": [topic], "path": str(lake),
                                 "flush_size": FLUSH, "poll_interval": 1})
    marker = tmp_path / "fault.pid"
    env = {**os.environ, "HEADRACE_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "HEADRACE_CONNECTORS_DIR": str(connectors), "HEADRACE_FAULT": "sink_after_write",
           "HEADRACE_FAULT_ACTION": "stall", "HEADRACE_FAULT_ONCE": str(marker),
           # the step in a process of its own (connector jobs run in-process by default), to prove
           # that an orphaned step dies with its run worker
           "HEADRACE_EXECUTOR": "multiprocess"}
    bin_dir = Path(sys.executable).parent
    workspace = ["-w", str(ROOT / "workspace.yaml")]
    subprocess.run([str(bin_dir / "dagster"), "sensor", "start", f"{name.replace('-', '_')}_sensor", *workspace],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", *workspace], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    step_pid = None
    try:
        step_pid = int(_wait("the first run to reach the fault point",
                             lambda: marker.read_text() or None if marker.exists() else None, 180))
        with dg.DagsterInstance.get() as instance:
            first = _wait("the first run", lambda: next(iter(instance.get_runs()), None), 30)
            worker, _ = run_worker_pid(instance, first.run_id)
            assert psutil.Process(step_pid).ppid() == worker  # the stalled step is a child of the run worker
            if kill == "worker_and_code_server":
                os.kill(psutil.Process(worker).ppid(), signal.SIGKILL)
            os.kill(worker, signal.SIGKILL)  # the run worker dies without a word; its step is left stalled

            def finished():
                retry = [r for r in instance.get_runs() if r.run_id != first.run_id]
                if retry and retry[0].status == dg.DagsterRunStatus.SUCCESS:
                    return retry[0]
                if retry and retry[0].is_finished:
                    raise AssertionError(f"the retry ended {retry[0].status}")
                return None

            retry = _wait("the run to be failed and retried", finished, 240)
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
            messages = [e.dagster_event.message or "" for e in instance.all_logs(first.run_id) if e.dagster_event]
            by_monitoring = any(f"run worker process {worker}" in m for m in messages)
            if kill == "worker":  # whichever notices first: the code server, or run monitoring's poll
                assert by_monitoring or any(f"{first.run_id} was terminated by signal 9" in m for m in messages)
            else:  # nobody but run monitoring is left to notice
                assert by_monitoring
            assert len(instance.get_runs()) == 2  # one retry only
            if kill == "worker":  # Dagster's run retries re-execute it; the sensor sees will_retry and waits
                assert retry.tags.get("dagster/parent_run_id") == first.run_id
            else:  # Dagster's retry, or, when the retry daemon gave up because the code server was still
                # down (will_retry=false), the sensor's request of the same ranges under a new run key
                assert (retry.tags.get("dagster/parent_run_id") == first.run_id
                        or retry.tags["dagster/run_key"] == first.tags[REQUEST_TAG] + "#retry1")
            assert retry.tags[REQUEST_TAG] == first.tags[REQUEST_TAG]
            ranges = json.dumps([[topic, 0, 0, N]], separators=(",", ":"))
            assert retry.tags["headrace/ranges"] == first.tags["headrace/ranges"] == ranges
        _wait("the orphaned step to die", lambda: True if not _alive(step_pid) else None, 10)
    finally:
        if step_pid is not None and _alive(step_pid):
            os.kill(step_pid, signal.SIGKILL)
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        log.close()
    files = sorted(f.name for f in (lake / topic).rglob("*.parquet"))
    assert files == [f"{topic}+0+{start:020d}.parquet" for start in range(0, N, FLUSH)]
    ids = read_dataset(lake / topic).column("id").to_pylist()
    assert sorted(ids) == list(range(N))  # every record exactly once


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
