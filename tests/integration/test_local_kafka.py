"""`headrace kafka up | down | status` on a second, throwaway broker (the shared one keeps running)."""

from __future__ import annotations

import shutil
import socket

from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka
from tests.conftest import free_port, run_cli


def test_up_is_idempotent_status_reports_version_and_down_stops(kafka, tmp_path):
    port = free_port()
    env = {"HEADRACE_KAFKA_PORT": str(port), "HEADRACE_KAFKA_CONTROLLER_PORT": str(free_port()),
           "HEADRACE_KAFKA_HEAP": "256m"}
    # reuse the jars already fetched for the shared broker, but a fresh data folder for this port
    try:
        first = run_cli("kafka", "up", env=env, check=True, timeout=180)
        assert first.stdout.startswith("Kafka 4.") and f"started on 127.0.0.1:{port}" in first.stdout
        again = run_cli("kafka", "up", env=env, check=True)
        assert "already running" in again.stdout
        status = run_cli("kafka", "status", env=env, check=True)
        assert status.stdout.startswith("running: Kafka 4.") and f"127.0.0.1:{port}" in status.stdout
        settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
        settings.ensure_topic("probe")
        assert "probe" in settings.admin().list_topics(timeout=10).topics
    finally:
        down = run_cli("kafka", "down", env=env, check=True, timeout=120)
    assert down.stdout.startswith("Kafka stopped")
    assert run_cli("kafka", "status", env=env, check=True).stdout.startswith("stopped")
    assert run_cli("kafka", "down", env=env, check=True).stdout.strip() == "Kafka is not running"
    # the throwaway broker's data folder and files go (the shared broker's stay)
    local = LocalKafka(port=port)
    shutil.rmtree(local.data)
    (local.home / f"server-{port}.properties").unlink()
    (local.home / "logs" / f"stdout-{port}.log").unlink(missing_ok=True)


def test_a_taken_controller_port_is_one_line_naming_it(kafka):
    """The controller listens on HEADRACE_KAFKA_PORT + 1 unless HEADRACE_KAFKA_CONTROLLER_PORT says
    otherwise; a port taken by another process is named before anything starts."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ctrl = taken.getsockname()[1]
        port = free_port()
        proc = run_cli("kafka", "up", env={"HEADRACE_KAFKA_PORT": str(port), "HEADRACE_KAFKA_CONTROLLER_PORT": str(ctrl)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"error: the controller port {ctrl} is taken by another process; set "
                                   "HEADRACE_KAFKA_CONTROLLER_PORT (default: HEADRACE_KAFKA_PORT + 1) to a free port")
    assert not LocalKafka(port=port).data.exists()


def test_external_cluster_starts_nothing(kafka):
    out = run_cli("kafka", "up", env={"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}, check=True)
    assert "nothing local is up" in out.stdout
