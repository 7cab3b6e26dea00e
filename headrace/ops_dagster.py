"""Operations on the Dagster instance: a connector's runs in flight, its last run, its sensor's state,
and pausing or resuming the sensor (``DagsterInstance.start_sensor`` / ``stop_sensor``, as
``dagster sensor start|stop`` does).

The instance is the one at ``$DAGSTER_HOME`` (``make dev`` uses ``$HEADRACE_HOME/dagster``, the
default here too). Pausing needs the sensor as the code location defines it: the CLI loads the code
location of a ``workspace.yaml`` (the repository's own by default) in this process, under the same
location name, so the state it writes is the one the daemon and the UI read (states are keyed by
location, repository and sensor name). A Dagster job loads its own code location the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from assets.factory import CONNECTOR_TAG
from assets.keys import clean
from integrations.errors import ConfigError, HeadraceError
from integrations.kafka.local import REPO_ROOT, headrace_home

#: run statuses that mean a run of the connector is (or is about to be) writing
IN_FLIGHT = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
             dg.DagsterRunStatus.CANCELING)
REPOSITORY = "__repository__"  # the repository name of a Definitions object


class RunInFlight(HeadraceError):
    """A run of the connector is queued or running: its offsets must not move under it."""


def sensor_name(connector: str) -> str:
    """The name of a connector's sensor (``assets.sensors``)."""
    return f"{clean(connector)}_sensor"


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, or ``$HEADRACE_HOME/dagster`` (what ``make dev`` uses) when it is not set."""
    return Path(os.environ.get("DAGSTER_HOME") or headrace_home() / "dagster")


@contextlib.contextmanager
def open_instance() -> Iterator[dg.DagsterInstance | None]:
    """The Dagster instance at :func:`dagster_home`, or None when that folder does not exist (Dagster
    never ran here: no runs, every sensor never started)."""
    home = dagster_home()
    if not home.is_dir():
        yield None
        return
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        yield instance


def runs_in_flight(instance: dg.DagsterInstance | None, connector: str, exclude: str | None = None) -> list[Any]:
    """Runs tagged ``headrace/connector=<connector>`` that are queued, starting, started or canceling."""
    if instance is None:
        return []
    runs = instance.get_runs(filters=dg.RunsFilter(tags={CONNECTOR_TAG: connector}, statuses=list(IN_FLIGHT)))
    return [r for r in runs if r.run_id != exclude]


def refuse_in_flight(instance: dg.DagsterInstance | None, connector: str, exclude: str | None = None) -> None:
    """Raise :class:`RunInFlight` (one line) while a run of ``connector`` is in flight."""
    runs = runs_in_flight(instance, connector, exclude)
    if runs:
        r = runs[0]
        raise RunInFlight(f"connector {connector}: run {r.run_id[:8]} ({r.job_name}) is {r.status.value}; "
                          "offsets are not changed while a run is in flight (wait for it, or terminate it, "
                          "and pause the sensor first)")


@dataclass
class LastRun:
    """A connector's latest run."""

    run_id: str
    job: str
    status: str
    started: str | None  # ISO 8601, UTC
    ended: str | None
    succeeded: bool


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def last_run(instance: dg.DagsterInstance | None, connector: str) -> LastRun | None:
    """The connector's most recent run (by creation), or None."""
    if instance is None:
        return None
    records = instance.get_run_records(filters=dg.RunsFilter(tags={CONNECTOR_TAG: connector}), limit=1)
    if not records:
        return None
    rec = records[0]
    run = rec.dagster_run
    return LastRun(run.run_id, run.job_name, run.status.value, _iso(rec.start_time or rec.create_timestamp.timestamp()),
                   _iso(rec.end_time), run.status == dg.DagsterRunStatus.SUCCESS)


def sensor_state(instance: dg.DagsterInstance | None, connector: str) -> str:
    """``running``, ``stopped`` or ``never started``: the stored state of the connector's sensor (in any
    code location; connector sensors default to stopped)."""
    if instance is None:
        return "never started"
    from dagster._core.definitions.run_request import InstigatorType

    name = sensor_name(connector)
    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
              if s.origin.instigator_name == name]
    if not states:
        return "never started"
    return "running" if any(s.is_running for s in states) else "stopped"


# --- pausing and resuming: the sensor as its code location defines it ---------------------------------

def workspace_origins(workspace: str | Path | None = None) -> list[Any]:
    """The code location origins of a ``workspace.yaml`` (default: the repository's own)."""
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    path = Path(workspace) if workspace else REPO_ROOT / "workspace.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such workspace file (pass --workspace)")
    return list(location_origins_from_yaml_paths([str(path)]))


@contextlib.contextmanager
def _locations(origins: list[Any], instance: dg.DagsterInstance) -> Iterator[list[Any]]:
    """The code locations of ``origins``, loaded as ``dagster sensor start -w`` loads them (a Python
    module or file gets a gRPC server process), so a sensor's origin and selector are the ones the
    webserver, the daemon and ``dagster sensor list`` use."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceLoadTarget

    class _Origins(WorkspaceLoadTarget):
        def create_origins(self) -> list[Any]:
            return list(origins)

    with WorkspaceProcessContext(instance, _Origins(), code_server_log_level="WARNING") as ctx:
        request = ctx.create_request_context()
        out = []
        for origin in origins:
            try:
                out.append(request.get_code_location(origin.location_name))
            except Exception as e:  # noqa: BLE001 (a location that does not load: say which, in one line)
                first = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
                raise HeadraceError(f"code location {origin.location_name} did not load: {first}") from e
        yield out


def _find_sensor(locations: list[Any], name: str) -> Any | None:
    for location in locations:
        for repo in location.get_repositories().values():
            if repo.has_sensor(name):
                return repo.get_sensor(name)
    return None


def set_sensor(instance: dg.DagsterInstance, connector: str, running: bool, origins: list[Any]) -> tuple[str, str]:
    """Start (``running``) or stop the connector's sensor in the first code location that defines it;
    return its state before and after."""
    name = sensor_name(connector)
    with _locations(origins, instance) as locations:
        sensor = _find_sensor(locations, name)
        if sensor is not None:
            stored = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
            before = sensor.get_current_instigator_state(stored)
            before_s = ("never started" if stored is None else "running" if before.is_running else "stopped")
            if running:
                instance.start_sensor(sensor)
            else:
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
            return before_s, "running" if running else "stopped"
    where = ", ".join(sorted({o.location_name for o in origins})) or "no code location"
    raise ConfigError(f"connector {connector}: no sensor {name!r} in {where}")


def run_origins(run: Any) -> list[Any]:
    """The code location origin of a run launched from a workspace (for jobs that pause sensors), or
    the repository's workspace when the run was executed in process."""
    origin = getattr(run, "remote_job_origin", None)
    if origin is not None:
        return [origin.repository_origin.code_location_origin]
    return workspace_origins()
