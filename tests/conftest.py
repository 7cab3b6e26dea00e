"""Shared fixtures: the real local Kafka broker and the real PostgreSQL server.

Both are started by ``make test`` (``headrace kafka up``, ``infra/postgres/setup.sh``). A test that
needs one fails loudly with the reason when it is unreachable; nothing is skipped. Every fixture
cleans up the topics, databases and folders it made.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from integrations.kafka.cluster import KafkaSettings, forget_clients
from integrations.kafka.local import LocalKafka

REPO = Path(__file__).resolve().parents[1]

def _terminal_signals() -> None:
    """Give this process, and so the processes a test starts, the SIGINT and SIGTERM a terminal gives.

    An ignored signal survives ``exec``, and two things leave them ignored: a shell starts a background
    job (``make test &``, a CI runner's script) with SIGINT ignored, and an in-process ``headrace`` CLI
    call ignores both once its run is over (``headrace.cli._ignore_stop_signals``, right for a process
    about to exit). Dagster's code server maps SIGTERM to its SIGINT handler, so a code server started
    after either ignored SIGTERM and had to be killed (the browser test's stop check, in full suites
    only: it depended on which tests had run before on the same worker)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_terminal_signals()


@pytest.fixture(autouse=True)
def terminal_signals() -> None:
    """Every test starts with a terminal's SIGINT and SIGTERM (see :func:`_terminal_signals`)."""
    _terminal_signals()
PG_URL = os.environ.get("HEADRACE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:54329/postgres")


#: test modules that use fixed names on the shared broker (the demo's ``shop.*`` topics, connectors named
#: ``lake``/``wh``/``src`` with their consumer groups and source offsets): never run at the same time
SHARED_NAMES = {"test_demo.py", "test_catalog_metadata.py", "test_component.py", "test_dagster_wiring.py",
                "test_dagster_routing.py", "test_broken_connector.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Under ``pytest -n N --dist loadgroup`` (``make test``) a module's tests stay on one worker, in
    order (as in a serial run: module fixtures, shared state), and the ``SHARED_NAMES`` modules share one
    worker. Runs before xdist reads the ``xdist_group`` marks."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = Path(str(item.fspath))
            group = "shared-names" if path.name in SHARED_NAMES else path.relative_to(REPO).as_posix()
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_setup(item) -> None:
    """Fail a test that ``--dist loadgroup`` did not group (pytest-xdist marks a grouped test's nodeid
    with ``@group``; pytest 9.2 moved the nodeid where xdist 3.8 cannot set it, and the modules then
    split over workers and race on shared names)."""
    if getattr(item.config.option, "loadgroup", False) and "@" not in item.nodeid:
        pytest.fail(f"pytest-xdist did not group {item.nodeid}: install the pytest version pyproject.toml "
                    "pins (make install)", pytrace=False)


@pytest.fixture(scope="session")
def kafka() -> KafkaSettings:
    """Settings for the running broker; fails (never skips) when it does not answer."""
    settings = KafkaSettings.from_env()
    try:
        settings.wait_available()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"Kafka is required for this test and is unreachable: {e}. Run `make test` or "
                    "`headrace kafka up`.", pytrace=False)
    return settings


@pytest.fixture
def topic_factory(kafka: KafkaSettings) -> Iterator:
    """Make unique topic names (``prefix-<hex>``); every topic made is deleted afterwards."""
    made: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, create: bool = True) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if create:
            kafka.ensure_topic(name, partitions=partitions)
        made.append(name)
        return name

    yield make
    kafka.delete_topics(made)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names of connectors, groups and tables."""
    return uuid.uuid4().hex[:10]


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of the PostgreSQL server; fails loudly when unreachable."""
    try:
        with _pg_engine(PG_URL).connect() as c:
            c.execute(sa.text("select 1"))
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is required for this test and is unreachable at {PG_URL}: {e}. "
                    "Run `make test` or `bash infra/postgres/setup.sh`.", pytrace=False)
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"hr_test_{uuid.uuid4().hex[:10]}"
    admin = _pg_engine(pg_server)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``headrace ...`` in a child process (real crashes, real exit codes)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "headrace.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"headrace {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_broker(broker: LocalKafka) -> None:
    """Stop a test's throwaway broker and remove its data, properties (they may hold passwords), log
    and the process's clients of it. Its data is thrown away, so a clean shutdown that lingers (up to a
    minute was seen with the test's clients still connected) is cut short after 5 s."""
    broker.down(wait=5)
    shutil.rmtree(broker.data, ignore_errors=True)
    broker.home.joinpath(f"server-{broker.port}.properties").unlink(missing_ok=True)
    broker.home.joinpath("logs", f"stdout-{broker.port}.log").unlink(missing_ok=True)
    forget_clients(broker.bootstrap)


def start_moto_s3(*buckets: str) -> Iterator[dict[str, str]]:
    """Run moto's standalone S3 server on 127.0.0.1 with ``buckets``; yield pyarrow S3 options; stop it."""
    import pyarrow.fs as pafs

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto S3 server did not start", pytrace=False)
                time.sleep(0.2)
        opts = {"endpoint_override": f"127.0.0.1:{port}", "scheme": "http", "access_key": "testing",
                "secret_key": "testing", "region": "us-east-1"}
        fs = pafs.S3FileSystem(**opts, allow_bucket_creation=True)
        for bucket in buckets:
            fs.create_dir(bucket)
        yield opts
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["duckdb", "postgres"])
def db_url(request, tmp_path: Path) -> str:
    """(Table sink tests) A warehouse URL per backend: a DuckDB file under tmp_path, or the test PostgreSQL server."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/wh.duckdb"
    return request.getfixturevalue("pg_url")


_CHAOS: list[tuple] = []


def pytest_runtest_logreport(report) -> None:
    """Collect the chaos scenarios' counts from their reports (under xdist, on the controller)."""
    if report.when == "teardown":
        _CHAOS.extend(row for name, rows in report.user_properties if name == "chaos" for row in rows)


def pytest_terminal_summary(terminalreporter) -> None:
    """Every chaos scenario's counts in one table (the figures of the README's delivery guarantees)."""
    if not _CHAOS:
        return
    tr = terminalreporter
    tr.section(f"chaos summary ({'full' if os.environ.get('HEADRACE_CHAOS') == 'full' else 'short'} variant)")
    tr.write_line(f"{'scenario':<52} {'stage':<26} {'records':>9} {'kills':>5} {'missing':>8} {'dups':>8}")
    for name, kills, stage, expected, missing, dups in sorted(_CHAOS, key=lambda r: r[0]):
        tr.write_line(f"{name:<52} {stage:<26} {expected:>9} {kills:>5} {missing:>8} {dups:>8}")
