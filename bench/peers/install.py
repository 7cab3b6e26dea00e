"""Install the peers into their own places under ``$HEADRACE_HOME/peers`` (idempotent, cached).

- Kafka Connect 4.1.1 (runtime, JSON converter, transforms) → ``connect/libs``; the FileStream connectors and
  Debezium's PostgreSQL and JDBC connectors → ``connect/plugins/<name>`` (the worker's plugin.path). All from
  Maven Central with ``bench/peers/maven/settings.xml``, which mirrors every repository to Central.
- dlt (sql_database source, pyarrow and connectorx backends), Quix Streams, pandas, psycopg and
  confluent-kafka → the virtualenv ``venv`` (never the project's .venv).

Usage: ``python -m bench.peers.install`` prints the versions as JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAVEN = Path(__file__).resolve().parent / "maven"
KAFKA_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.4.0.Final"  # 3.4.1-3.4.3's JDBC connector (debezium-sink) is not on the Central served here
PY_REQUIREMENTS = [  # pinned: the smoke test asserts the peer problems these versions have (bench/peers/notes.py)
    "dlt[parquet,filesystem]==1.31.0", "sqlalchemy==2.1.9", "connectorx==0.4.6", "quixstreams==3.28.1",
    "pandas==3.1.1", "pyarrow==26.0.1", "psycopg[binary]==3.3.9", "psycopg2-binary==2.9.13",
    "confluent-kafka==2.12.2",
]
PY_VERSIONS = ["dlt", "connectorx", "quixstreams", "pandas", "pyarrow", "psycopg", "psycopg2-binary",
               "confluent-kafka", "sqlalchemy"]
#: plugin directory → (pom, exclude Kafka's own jars: the worker provides them)
PLUGINS = {"connect-file": "connect-file.pom.xml", "debezium-connector-postgres": "debezium-postgres.pom.xml",
           "debezium-connector-jdbc": "debezium-jdbc.pom.xml"}


class PeerInstallError(RuntimeError):
    """A peer could not be installed (the message is one line saying what and where)."""


def home() -> Path:
    """``$HEADRACE_HOME/peers`` (default ``.headrace/peers`` in the repository)."""
    base = Path(os.environ.get("HEADRACE_HOME") or ROOT / ".headrace")
    return base / "peers"


def connect_libs() -> Path:
    """The Connect worker's classpath folder."""
    return home() / "connect" / "libs"


def plugin_path() -> Path:
    """The Connect worker's plugin.path."""
    return home() / "connect" / "plugins"


def venv_python() -> Path:
    """The peers' virtualenv interpreter."""
    return home() / "venv" / "bin" / "python"


def _mvn(pom: str, out: Path, exclude_kafka: bool) -> None:
    if any(out.glob("*.jar")):
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-s", str(MAVEN / "settings.xml"), "-f", str(MAVEN / pom),
           "dependency:copy-dependencies", f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
           f"-Ddebezium.version={DEBEZIUM_VERSION}", f"-Dkafka.version={KAFKA_VERSION}"]
    if exclude_kafka:
        cmd.append("-DexcludeGroupIds=org.apache.kafka")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    except FileNotFoundError as e:
        raise PeerInstallError("Maven (mvn) is not installed; it fetches Kafka Connect and Debezium") from e
    if proc.returncode != 0:
        err = [ln for ln in proc.stdout.splitlines() if "ERROR" in ln][:1] or [proc.stdout[-300:]]
        raise PeerInstallError(f"mvn -f bench/peers/maven/{pom} failed: {err[0].strip()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)


def install_connect() -> None:
    """Fetch the Connect worker and the connector plugins (once; Maven caches in ~/.m2)."""
    _mvn("connect-runtime.pom.xml", connect_libs(), exclude_kafka=False)
    for name, pom in PLUGINS.items():
        _mvn(pom, plugin_path() / name, exclude_kafka=name != "connect-file")
    # connect-file's own pom pulls connect-api and kafka-clients: keep only the connector's jar
    for jar in (plugin_path() / "connect-file").glob("*.jar"):
        if not jar.name.startswith("connect-file-"):
            jar.unlink()
    # Jackson comes from the worker (as in Debezium's own plugin archives): a second copy in the plugin's
    # loader fails with "Jdk8Module not a subtype" when the JDBC sink's converter starts
    for name in PLUGINS:
        for jar in (plugin_path() / name).glob("jackson-*.jar"):
            jar.unlink()


def install_python() -> None:
    """Create the peers' virtualenv and install the Python peers (once per requirement list)."""
    venv = home() / "venv"
    stamp = venv / ".peers-installed"
    want = "\n".join(PY_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == want:
        return
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *PY_REQUIREMENTS],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise PeerInstallError(f"pip install of the Python peers into {venv} failed: "
                               f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    stamp.write_text(want)


def versions() -> dict[str, str]:
    """Every peer's version, as installed."""
    out = {"kafka-connect": KAFKA_VERSION, "debezium": DEBEZIUM_VERSION}
    code = (f"import json, importlib.metadata as m; print(json.dumps({{n: m.version(n) for n in {PY_VERSIONS!r}}}))")
    proc = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True, check=True)
    out.update(json.loads(proc.stdout))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    out["java"] = (java.stderr.splitlines() or ["?"])[0]
    return out


def install() -> dict[str, str]:
    """Install everything (fast when cached) and return the versions. One install at a time: a second
    process (a parallel test worker, ``make bench-peers`` beside ``make test``) waits for the first."""
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        install_connect()
        install_python()
        return versions()


def main() -> int:
    """CLI: install and print the versions; one line on failure."""
    try:
        print(json.dumps(install(), indent=2))
    except PeerInstallError as e:
        print(f"peers: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
