"""Helpers of the daemon tests (test_latency_daemon.py, test_continuous_daemon.py): a project's code
server and ``dagster-daemon run`` (no webserver) on a temporary ``DAGSTER_HOME`` with the project's
dagster.yaml, every connector sensor started, and a PostgreSQL table to commit rows into."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import sqlalchemy as sa
import yaml

from tests.e2e.dagster_ui import ROOT, DagsterServices

T = TypeVar("T")


def start_services(tmp_path: Path, connectors: Path, env_extra: dict[str, str]) -> DagsterServices:
    """Code server and daemon for ``connectors``, every sensor started; stop() them afterwards."""
    home = tmp_path / "dagster"
    home.mkdir()
    conf = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    conf["storage"]["sqlite"]["base_dir"] = str(home)  # so the test opens the instance without DAGSTER_HOME
    (home / "dagster.yaml").write_text(yaml.safe_dump(conf))
    env = {**os.environ, "DAGSTER_HOME": str(home), "HEADRACE_CONNECTORS_DIR": str(connectors), **env_extra}
    services = DagsterServices(env, tmp_path)
    services.start_code_server()
    try:
        wait_for("the code server to serve the sensors", lambda: _start_sensors(services), 180)
        services.start_daemon()
    except BaseException:
        services.stop()
        raise
    return services


def _start_sensors(services: DagsterServices) -> bool | None:
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "start", "--start-all",
                           "-w", str(services.workspace)], env=services.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return True if proc.returncode == 0 else None


def wait_for(what: str, fn: Callable[[], T | None], timeout: float) -> T:
    """``fn()`` once it is not None; fails with one line after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := fn()) is not None:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def instance_of(services: DagsterServices) -> dg.DagsterInstance:
    """The services' instance (from their DAGSTER_HOME)."""
    return dg.DagsterInstance.from_config(services.env["DAGSTER_HOME"])


def make_table(pg_url: str, table: str) -> None:
    """``table (id bigint primary key, v text)``."""
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, v text)'))
    eng.dispose()


def insert(pg_url: str, table: str, ids: range | list[int], engine: Any = None) -> None:
    """Commit ``ids`` into ``table`` in one transaction."""
    eng = engine or sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text(f'INSERT INTO "{table}" VALUES (:i, :v)'), [{"i": i, "v": f"row {i}"} for i in ids])
    if engine is None:
        eng.dispose()


def mats_of_run(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[dict]]:
    """Materializations a run recorded: {asset key: [metadata values, ...]}."""
    out: dict[str, list[dict]] = {}
    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        m = e.asset_materialization
        out.setdefault(m.asset_key.to_user_string(), []).append({k: v.value for k, v in m.metadata.items()})
    return out
