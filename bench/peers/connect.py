"""Kafka Connect in standalone mode, as a timed peer run: one worker process per run, one connector.

The worker is the stock ``ConnectStandalone`` from the jars under ``$HEADRACE_HOME/peers/connect``, with
``-Xmx`` (default 1g), a fresh offsets file per run and the plugin path holding the FileStream connectors and
Debezium's PostgreSQL and JDBC connectors. Settings beyond the connector's required ones are Connect's
and Debezium's defaults ("stock") unless a case passes a named tuned variant.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.peers.install import connect_libs, plugin_path
from bench.peers.proc import Timed, run_until

FAILED = b"unrecoverable exception"  # Connect's log line when a task dies and the worker stays up
XMX = os.environ.get("HEADRACE_PEERS_XMX", "1g")
LOG4J = """status=warn
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=F
appender.file.type=File
appender.file.name=F
appender.file.fileName=${sys:connect.log.file}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _props(d: dict[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in d.items())


def worker_props(workdir: Path, plugin: str, extra: dict[str, object] | None = None) -> dict[str, object]:
    """A standalone worker's properties: JSON converters without schemas, local Kafka, one plugin's folder."""
    return {
        "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.storage.file.filename": workdir / "connect.offsets",
        "offset.flush.interval.ms": 1000,
        "plugin.path": workdir / "plugins",  # holds a link to the one plugin this run needs
        # Connect's own advice in its log ("All plugins have ServiceLoader manifests, consider reconfiguring
        # plugin.discovery=service_load"): the default reflection scan costs ~12 s of every start here
        "plugin.discovery": "service_load",
        "listeners": f"http://127.0.0.1:{_free_port()}",
        **(extra or {}),
    }


def run_connector(plugin: str, connector: dict[str, object], done: Callable[[], bool], *,
                  worker_extra: dict[str, object] | None = None, timeout: float = 1800,
                  poll: float = 0.05) -> Timed:
    """Start a worker with ``connector``; time it (JVM start included) until ``done()`` (polled every
    ``poll`` seconds); stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="headrace-peers-connect-"))
    try:
        (workdir / "plugins").mkdir()
        (workdir / "plugins" / plugin).symlink_to(plugin_path() / plugin)
        (workdir / "worker.properties").write_text(_props(worker_props(workdir, plugin, worker_extra)))
        (workdir / "connector.properties").write_text(_props(connector))
        (workdir / "log4j2.properties").write_text(LOG4J)
        cmd = ["java", f"-Xmx{XMX}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
               f"-Dconnect.log.file={workdir / 'connect.log'}",
               "-cp", f"{connect_libs()}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
               str(workdir / "worker.properties"), str(workdir / "connector.properties")]
        log = workdir / "connect.log"

        def done_or_failed() -> bool:
            if log.exists() and FAILED in log.read_bytes():
                raise RuntimeError("the connector's task failed (see its log)")
            return done()

        res = run_until(cmd, done_or_failed, log_path=workdir / "stdout.log", timeout=timeout, poll=poll)
        if log.exists():
            res.log = res.log + log.read_text(errors="replace")[-20000:]
        return res
    finally:
        if not os.environ.get("HEADRACE_PEERS_KEEP"):  # set it to keep the worker's folder and log
            shutil.rmtree(workdir, ignore_errors=True)
