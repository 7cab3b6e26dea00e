"""`make demo` is quiet: on a fresh broker that the demo starts itself, the terminal gets the seed line,
the broker line, one line per asset and where the log and the UI are; Dagster's DEBUG event stream
and librdkafka's start-up lines ("coordinator load in progress") go to $HEADRACE_HOME/logs/demo.log."""

from __future__ import annotations

import re

from integrations.kafka.local import LocalKafka, headrace_home
from tests.conftest import free_port, remove_broker, run_cli


def test_demo_prints_a_short_summary_on_a_fresh_broker(tmp_path, monkeypatch):
    repo_libs = LocalKafka().libs  # the jars `make test` fetched (this process's HEADRACE_HOME)
    assert repo_libs.is_dir(), f"Kafka's jars are missing at {repo_libs}; run `headrace kafka up` once"
    home = tmp_path / "hr"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(repo_libs)
    port = free_port()
    env = {"HEADRACE_HOME": str(home), "HEADRACE_KAFKA_PORT": str(port),
           "HEADRACE_KAFKA_CONTROLLER_PORT": str(free_port()), "HEADRACE_KAFKA_HEAP": "320m"}
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)  # the demo starts its own broker
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    try:
        proc = run_cli("demo", env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stderr == ""
        lines = proc.stdout.splitlines()
        assert lines[0] == f"shop database: {home / 'demo' / 'shop.db'} (1000 customers, 20000 orders)"
        assert re.fullmatch(rf"Kafka \S+ started on 127\.0\.0\.1:{port} \(pid \d+\)", lines[1]), lines[1]
        assert lines[2:5] == ["materializing every demo asset through Dagster ...", "",
                              "rows moved, per asset (and where the data is):"]
        assert sorted(re.match(r"  (\S+)\s+(\d+) rows  → ", x).group(1, 2) for x in lines[5:10]) == [
            ("kafka/shop_customers", "1000"), ("kafka/shop_orders", "20000"),
            ("parquet/shop_customers_lake/shop_customers_lake__shop_customers", "1000"), ("parquet/shop_orders_lake/shop_orders_lake__shop_orders", "20000"),
            ("warehouse/duckdb_warehouse/duckdb_warehouse__orders", "20000")]
        log = home / "logs" / "demo.log"
        assert lines[10:] == ["", f"Dagster's event log of this run (DEBUG): {log}",
                              "Dagster UI with this history: run `make dev`, then open http://127.0.0.1:3000 "
                              f"(DAGSTER_HOME={home / 'dagster'})"]
        text = log.read_text()
        assert "DEBUG" in text and "RUN_SUCCESS" in text and "STEP_SUCCESS" in text
        assert "coordinator" not in proc.stdout.lower() and " - DEBUG - " not in proc.stdout
    finally:
        monkeypatch.setenv("HEADRACE_HOME", str(home))
        broker = LocalKafka(port=port)
        assert broker.home == headrace_home() / "kafka"
        (home / "kafka" / "libs").unlink()  # never let the cleanup touch the shared jars
        remove_broker(broker)
