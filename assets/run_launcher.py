"""A run launcher for one machine that tells run monitoring when a run worker has died.

Dagster's ``DefaultRunLauncher`` starts each run worker as a process of the code server, but it
cannot report that process's health, so run monitoring never notices a run worker that was killed
(OOM killer, ``kill -9``, a crashed interpreter). Such a run stays STARTED for ever, and because
runs of one connector never overlap (the ``headrace/connector`` tag limit), the connector would
stall. ``LocalRunLauncher`` launches exactly like the default one and adds the health check: the
run worker logs its pid when it starts ("Started process for run (pid: N)"); if that process is
gone, or is a zombie, or is a newer process that reused the pid, the worker is reported FAILED.
Run monitoring then marks the run failed and run retries (``dagster.yaml``) start it again; the
retry reads the same Kafka ranges (the ``headrace/ranges`` tag), so the output is unchanged.

Step processes of the multiprocess executor outlive a killed run worker (they are its children,
re-parented on its death). Before the run is reported FAILED, the step processes it logged
("Executing step ... in subprocess", with their pid) that still live are killed, so the retry never
writes alongside an orphan of the dead run.

Only for run workers on the same machine as the daemon, which is what ``DefaultRunLauncher`` does.
"""

import datetime as dt

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

_STARTED = "Started process for run (pid: "


def step_pids(instance, run_id: str) -> list[tuple[int, float]]:
    """``(pid, logged at)`` of every step process the run's multiprocess executor started."""
    out = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_WORKER_STARTED):
        event = entry.dagster_event
        meta = event.event_specific_data.metadata if event is not None and event.event_specific_data else {}
        pid = meta.get("pid")
        if pid is not None:
            out.append((int(pid.value), entry.timestamp))
    return out


def run_worker_pid(instance, run_id: str) -> tuple[int, float] | None:
    """``(pid, logged at as a POSIX time)`` of the latest run worker process of a run, if logged."""
    found = None
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or not (event.message or entry.user_message or "").startswith(_STARTED):
            continue
        meta = event.engine_event_data.metadata if event.engine_event_data else {}
        pid = meta.get("pid")
        if pid is not None:
            found = (int(pid.value), entry.timestamp)
    return found


def worker_alive(pid: int, logged_at: float) -> bool:
    """True when ``pid`` is a live (non-zombie) process that existed when its start was logged."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        # a process created after the worker logged its start reuses a dead worker's pid
        return proc.create_time() <= logged_at + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else: cannot be our dead worker
        return True


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus a run worker health check for run monitoring (same machine)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the logged run worker process lives; FAILED once it is gone."""
        found = run_worker_pid(self._instance, run.run_id)
        if found is None:  # the worker has not logged its pid yet (the run is only just STARTED)
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker pid not logged yet")
        pid, logged_at = found
        if worker_alive(pid, logged_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        when = dt.datetime.fromtimestamp(logged_at, dt.UTC).isoformat(timespec="seconds")
        stopped = [p for p, at in step_pids(self._instance, run.run_id) if _kill_if_alive(p, at)]
        orphans = f"; stopped its orphaned step processes {stopped}" if stopped else ""
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"run worker process {pid} (started {when}) is gone{orphans}")


def _kill_if_alive(pid: int, logged_at: float) -> bool:
    """SIGKILL a logged step process that still runs; True when one was killed."""
    if not worker_alive(pid, logged_at):
        return False
    try:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(10)
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
        return False
