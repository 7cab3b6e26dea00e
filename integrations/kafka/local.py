"""A local, single-node Apache Kafka (KRaft) for development, the demo and the tests.

The broker's jars come from Maven Central through Maven (``infra/kafka/pom.xml``); storage is
formatted on first start; data and logs live under ``$HEADRACE_HOME/kafka`` (git-ignored).
Nothing here runs when the user points ``KAFKA_BOOTSTRAP_SERVERS`` at an existing cluster.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from integrations.errors import HeadraceError

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J = REPO_ROOT / "infra" / "kafka" / "log4j2.properties"


def headrace_home() -> Path:
    """The folder for local state (``$HEADRACE_HOME``, default ``<repo>/.headrace``)."""
    return Path(os.environ.get("HEADRACE_HOME", REPO_ROOT / ".headrace")).resolve()


def _bindable(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now (with SO_REUSEADDR, as the JVM binds, so a
    port whose old connections are in TIME_WAIT after a restart counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class LocalKafka:
    """Paths and ports of the local broker."""

    port: int = int(os.environ.get("HEADRACE_KAFKA_PORT", "9092"))
    controller_port: int | None = (int(os.environ["HEADRACE_KAFKA_CONTROLLER_PORT"])
                                   if os.environ.get("HEADRACE_KAFKA_CONTROLLER_PORT") else None)
    heap: str = os.environ.get("HEADRACE_KAFKA_HEAP", "768m")
    #: security protocol of the client listener (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)
    protocol: str = "PLAINTEXT"
    #: extra ``key=value`` lines for server.properties (SSL stores, SASL JAAS config, ...)
    extra_properties: tuple[str, ...] = ()
    #: client settings for the readiness check when the listener needs them (``(key, value)`` pairs)
    client_config: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def home(self) -> Path:
        return headrace_home() / "kafka"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def data(self) -> Path:
        return self.home / f"data-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / f"broker-{self.port}.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ctrl_port(self) -> int:
        return self.controller_port or self.port + 1

    # -- jars ---------------------------------------------------------------------------------
    def version(self) -> str | None:
        """The Kafka version of the fetched jars, or None when not fetched yet."""
        if not self.libs.exists():
            return None
        for jar in self.libs.glob("kafka-clients-*.jar"):
            return jar.stem.removeprefix("kafka-clients-")
        return None

    def fetch_jars(self) -> None:
        """Copy the broker's jars from Maven Central into ``libs`` (once)."""
        if self.version():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.home / "libs.tmp"
        cmd = [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
        ]
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except FileNotFoundError as e:
            raise HeadraceError("Maven (mvn) is not installed; it is needed to fetch Kafka's jars") from e
        except subprocess.CalledProcessError as e:
            raise HeadraceError(f"fetching Kafka's jars with Maven failed:\n{e.stdout[-2000:]}") from e
        tmp.rename(self.libs)

    # -- process ------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """PID of the running broker started by us, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        return pid if b"kafka.Kafka" in cmdline else None

    def answers(self, timeout: float = 1.0) -> bool:
        """True when something accepts TCP connections on the broker port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        cp = f"{self.libs}/*"
        mem = [f"-Xmx{heap}", f"-Xms{min_heap(heap)}"] if heap else ["-Xmx256m"]
        return [
            "java", *mem, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp", cp, *args,
        ]

    def _write_properties(self) -> Path:
        props = self.home / f"server-{self.port}.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.ctrl_port}",
                    f"listeners={self.protocol}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.ctrl_port}",
                    f"advertised.listeners={self.protocol}://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={self.protocol}:{self.protocol},CONTROLLER:PLAINTEXT",
                    f"inter.broker.listener.name={self.protocol}",
                    f"log.dirs={self.data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",  # topics are made on purpose, with their partition count
                    "delete.topic.enable=true",
                    # keep records whatever their timestamps: time retention deletes a segment whose
                    # newest record is older than a week, so historical data (backfills, tests producing
                    # 2024 timestamps) vanished ~30 s after start; bound by size per partition instead
                    "log.retention.ms=-1",
                    "log.retention.bytes=2147483648",
                    "log.segment.bytes=268435456",
                    "message.max.bytes=4194304",
                    *self.extra_properties,
                    "",
                ]
            )
        )
        return props

    def up(self, wait: float = 90.0) -> str:
        """Start the broker (fetching jars and formatting storage first if needed). Idempotent."""
        if self.pid() and self.answers():
            return f"Kafka {self.version()} already running on {self.bootstrap} (pid {self.pid()})"
        if self.answers():
            raise HeadraceError(
                f"port {self.port} is taken by another process; set HEADRACE_KAFKA_PORT to another port "
                "or KAFKA_BOOTSTRAP_SERVERS to use that cluster"
            )
        if not _bindable(self.ctrl_port):
            raise HeadraceError(
                f"the controller port {self.ctrl_port} is taken by another process; set "
                "HEADRACE_KAFKA_CONTROLLER_PORT (default: HEADRACE_KAFKA_PORT + 1) to a free port"
            )
        self.fetch_jars()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        props = self._write_properties()
        if not (self.data / "meta.properties").exists():
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(props)),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            if formatted.returncode != 0:
                tail = " ".join(formatted.stderr.split()[-40:])
                raise HeadraceError(f"formatting Kafka's storage in {self.data} failed (exit {formatted.returncode}): "
                                    f"{tail}")
        out = open(self.home / "logs" / f"stdout-{self.port}.log", "ab")  # noqa: SIM115 (owned by child)
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=self.heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HeadraceError(
                    f"Kafka exited with code {proc.returncode}; see {self.home / 'logs'}"
                )
            if (self.answers() and _broker_ready(self.bootstrap, dict(self.client_config))
                    and _coordinator_ready(self.bootstrap, dict(self.client_config))):
                return f"Kafka {self.version()} started on {self.bootstrap} (pid {proc.pid})"
            time.sleep(0.5)
        raise HeadraceError(f"Kafka did not answer on {self.bootstrap} within {wait:.0f}s")

    def down(self, wait: float = 60.0) -> str:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``wait`` seconds)."""
        pid = self.pid()
        if not pid:
            return "Kafka is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and self.pid():
            time.sleep(0.3)
        if self.pid():
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"

    def status(self) -> str:
        """One line: running or not, and the version."""
        pid = self.pid()
        if pid and self.answers():
            return f"running: Kafka {self.version()} on {self.bootstrap} (pid {pid})"
        return f"stopped (jars: {self.version() or 'not fetched'})"


def cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, never starting with '-' (which the storage
    tool would read as an option, failing one format in 64, as Kafka's own ``Uuid`` avoids too)."""
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cid


def min_heap(heap: str) -> str:
    """Initial heap: a quarter of the maximum (``768m`` → ``192m``)."""
    num, unit = int(heap[:-1]), heap[-1]
    return f"{max(num // 4, 1)}{unit}"


def _broker_ready(bootstrap: str, client_config: dict[str, str] | None = None) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False, **(client_config or {})}).list_topics(timeout=2)
        return bool(md.brokers)
    except Exception:
        return False


def _coordinator_ready(bootstrap: str, client_config: dict[str, str] | None = None) -> bool:
    """Whether the group coordinator answers an offset fetch: a fresh broker creates and loads
    ``__consumer_offsets`` first, answering NOT_COORDINATOR meanwhile."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "headrace-startup-probe", "allow.auto.create.topics": False,
                  **(client_config or {})})
    try:
        c.committed([TopicPartition("headrace-startup-probe", 0)], timeout=5)
        return True
    except Exception:
        return False
    finally:
        c.close()
