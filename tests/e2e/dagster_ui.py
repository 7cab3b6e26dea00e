"""Helpers of the browser test (test_ui_browser.py): Dagster's services (code server, webserver,
daemon) on free ports, the webserver's GraphQL endpoint, and headless Chromium from Debian's
packages driven by Playwright.

Nothing here downloads a browser: Playwright launches ``/usr/bin/chromium`` (installed by
``infra/browser/setup.sh``) through ``executable_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: headless as root, and quiet on a closed network: without the background-networking flags Chromium
#: opens many connections at once (updates, sync, field trials) that this sandbox refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


class DagsterServices:
    """The Dagster services of ``dagster dev``, started one by one on temporary ports: one code server
    for the project's code location (as ``workspace.yaml`` declares it), then ``dagster-webserver``
    and ``dagster-daemon run`` on a workspace pointing at that code server, so both share it (as
    ``dagster dev`` does) and the caller decides when the daemon starts.

    ``stop()`` ends every process of the three trees (run workers and step processes too) and says
    which ones needed SIGKILL.
    """

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        # on SIGTERM a code server waits for its calls in flight (a sensor tick the stopped daemon left
        # behind) up to this grace period, 60 s by default, and its proxy's child server then again: the
        # clients are stopped first here, so 10 s each is plenty (every code server started from here)
        self.env = {**env, "DAGSTER_GRPC_SHUTDOWN_GRACE_PERIOD": "10"}
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []
        self._seen: dict[int, psutil.Process] = {}
        self.workspace = folder / "workspace.yaml"

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.folder / f"{name}.log").open("w")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen([str(Path(sys.executable).parent / args[0]), *args[1:]],
                                            env={**self.env, **(env or {})}, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def start_code_server(self) -> None:
        """``dagster code-server start`` for the location of the project's workspace.yaml."""
        entry = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
        port = _free_port()
        self._start("code-server", ["dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
                                    "-m", entry["module_name"], "-a", entry["attribute"],
                                    "-d", str(ROOT / entry.get("working_directory", ".")),
                                    "--location-name", entry["location_name"]])
        self.location = entry["location_name"]
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": port, "location_name": self.location}}]}))

    def start_webserver(self) -> None:
        """``dagster-webserver`` on a free port of 127.0.0.1."""
        self._start("webserver", ["dagster-webserver", "-w", str(self.workspace), "-h", "127.0.0.1",
                                  "-p", str(self.port)])

    def start_daemon(self) -> None:
        """``dagster-daemon run``: sensors, the run queue, backfills, run monitoring."""
        self._start("daemon", ["dagster-daemon", "run", "-w", str(self.workspace)])

    def processes(self) -> list[psutil.Process]:
        """The live processes of the trees (remembered, so children reparented later are still stopped)."""
        for proc in self.procs.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    self._seen.setdefault(p.pid, p)
        return [p for p in self._seen.values() if _alive(p)]

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> dict:
        """POST a GraphQL document to the webserver; its ``data`` (fails on GraphQL errors)."""
        req = urllib.request.Request(f"{self.url}/graphql", data=json.dumps(
            {"query": query, "variables": variables or {}}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = json.loads(r.read())
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]

    def wait_ready(self, timeout: float) -> None:
        """Wait until the webserver answers and has loaded the code location."""
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError " \
                "{ __typename ... on PythonError { message } } } } } }"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}); its log:\n{self.tail(name)}")
            try:
                entries = self.graphql(query, timeout=10)["workspaceOrError"]["locationEntries"]
                entry = next((e for e in entries if e["name"] == self.location), None)
                if entry and entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]:
                    err = entry["locationOrLoadError"]
                    if err["__typename"] == "RepositoryLocation":
                        return
                    # the webserver asked before the code server had loaded the code: ask it to load again
                    self.graphql("mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) "
                                 "{ __typename } }", {"n": self.location}, timeout=60)
                last = f"location entries {entries}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as e:
                last = repr(e)
            time.sleep(0.5)
        raise AssertionError(f"the webserver was not ready after {timeout:.0f}s ({last}); logs:\n"
                             + "\n".join(self.tail(n) for n in self.procs))

    def tail(self, name: str, lines: int = 40) -> str:
        """The end of one service's log."""
        for log in self._logs:
            if not log.closed:
                log.flush()
        text = (self.folder / f"{name}.log").read_text(errors="replace")
        return f"--- {name}\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> list[str]:
        """SIGTERM the clients (daemon, webserver) and then the code server they call, each with its
        process group, then SIGKILL whatever is left of the trees. Returns the processes that had to be
        killed. (The code server waits up to its grace period, 10 s here, for calls in flight, then its
        child server as long again: it gets 70 s.)"""
        tree = self.processes()
        killed = []
        # the code server stops "once all current RPC calls terminate or 60 seconds pass" (its own log)
        order = [([n for n in self.procs if n != "code-server"], timeout),
                 ([n for n in self.procs if n == "code-server"], max(timeout, 70.0))]
        for names, wait in order:
            if not names:
                continue
            roots = {self.procs[n].pid for n in names}
            group = [p for p in tree if p.pid in roots or any(a.pid in roots for a in _ancestors(p))]
            for n in names:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.procs[n].pid, signal.SIGTERM)
            _gone, alive = psutil.wait_procs(group, timeout=wait)
            for p in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    killed.append(" ".join(p.cmdline()[:4]))
                    p.kill()
            psutil.wait_procs(alive, timeout=10)
        _gone, alive = psutil.wait_procs([p for p in tree if _alive(p)], timeout=5)  # reparented stragglers
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                killed.append(" ".join(p.cmdline()[:4]))
                p.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for log in self._logs:
            log.close()
        return killed


def _ancestors(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.parents()
    except psutil.NoSuchProcess:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def launch_chromium(playwright: Any, user_data_dir: Path) -> Any:
    """A headless Chromium (Debian's ``/usr/bin/chromium``) with a fresh profile; a BrowserContext."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1600, "height": 1000}, service_workers="block")
