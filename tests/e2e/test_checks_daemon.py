"""Issue 14 items 6 and 7 with a real Dagster daemon: checks that are evaluated between runs.

A code server (the location of ``tolerant_location.py``), webserver and daemon run on a folder with a
Parquet sink whose topic holds 5 records the sink has not written, and a broken connector file. With
no connector sensor on and no run launched by hand, the daemon's default-on sensors record

- the sink's ``lag_within_threshold`` check as failed with lag 5 (threshold 3), by the checks sensor,
  without launching a run; after a sink run drains the topic it records it passed with lag 0;
- the broken file's ``connector_file_valid`` check as failed with the file's one-line error (the broken
  files' sensor launches one run of it).

Each is read back through the webserver's GraphQL API. The dataset carries its freshness policy, which
the daemon finds HEALTHY once the sink has written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from tests.e2e.dagster_ui import ROOT, DagsterServices
from tests.helpers import produce_all, write_connector

CHECKS = """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
  freshnessStatusInfo { freshnessStatus }
  internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } }
  assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization {
    runId status evaluation { description severity
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } } } } } } }"""


class _Services(DagsterServices):
    """The services on ``tolerant_location.py`` (the wiring proposed for assets/definitions.py)."""

    def start_code_server(self) -> None:
        import yaml

        from tests.conftest import free_port

        port = free_port()
        self._start("code-server", ["dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
                                    "-f", str(ROOT / "tests" / "e2e" / "tolerant_location.py"), "-d", str(ROOT),
                                    "--location-name", "tolerant"])
        self.location = "tolerant"
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": port, "location_name": self.location}}]}))


def _check(dev: DagsterServices, key: list[str], name: str) -> dict | None:
    node = dev.graphql(CHECKS, {"k": {"path": key}})["assetNodeOrError"]
    found = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == name]
    return found[0]["executionForLatestMaterialization"] if found else None


def _wait(dev: DagsterServices, key: list[str], name: str, want: str, timeout: float) -> dict:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = _check(dev, key, name)
        if last and last["status"] == want:
            return last
        time.sleep(1)
    raise AssertionError(f"check {name} on {'/'.join(key)} not {want} after {timeout:.0f}s (last {last}); logs:\n"
                         + dev.tail("daemon") + "\n" + dev.tail("code-server"))


def test_daemon_evaluates_lag_and_broken_file_checks(kafka, topic_factory, tmp_path, unique, monkeypatch):
    topic = topic_factory("lagd")
    produce_all(kafka, topic, [{"value": f'{{"id": {i}}}'.encode()} for i in range(5)])
    home, dagster_home, c = tmp_path / "hr", tmp_path / "dagster", tmp_path / "connectors"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nfreshness:\n  enabled: true\n")
    sink = f"lagd-{unique}"
    write_connector(c, {"name": sink, "type": "parquet_sink", "topics": [topic], "path": "lake"})
    (c / "broken.yaml").write_text("name: broken\ntype: parquet_sink\ntopics: [x\n")
    env = {**os.environ, "HEADRACE_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "HEADRACE_CONNECTORS_DIR": str(c), "HEADRACE_CHECK_INTERVAL": "5", "HEADRACE_MAX_LAG": "3",
           "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5"}
    for k in ("HEADRACE_HOME", "DAGSTER_HOME", "HEADRACE_CONNECTORS_DIR"):
        monkeypatch.setenv(k, env[k])
    with dg.DagsterInstance.from_config(str(dagster_home)):  # storage made once, before three processes race
        pass
    (tmp_path / "logs").mkdir()
    dev = _Services(env, tmp_path / "logs")
    dataset = ["parquet", sink.replace("-", "_"), f"{sink.replace('-', '_')}__{topic.replace('-', '_')}"]
    try:
        dev.start_code_server()
        dev.start_webserver()
        dev.wait_ready(timeout=180)
        dev.start_daemon()
        lag = _wait(dev, dataset, "lag_within_threshold", "FAILED", timeout=180)
        assert lag["runId"] == ""  # recorded by the sensor: no run
        assert lag["evaluation"]["description"] == "5 record(s) not yet written (threshold 3)"
        assert {e["label"]: e.get("intValue") for e in lag["evaluation"]["metadataEntries"]}["lag"] == 5
        broken = _wait(dev, ["broken_connector", "broken"], "connector_file_valid", "FAILED", timeout=180)
        assert broken["evaluation"] == {"description": f"{c / 'broken.yaml'}: not valid YAML at line 4, column 1: "
                                        "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
                                        "severity": "ERROR", "metadataEntries": broken["evaluation"]["metadataEntries"]}
        node = dev.graphql(CHECKS, {"k": {"path": dataset}})["assetNodeOrError"]
        assert node["internalFreshnessPolicy"] == {"failWindowSeconds": 600, "warnWindowSeconds": 300}

        from tests.e2e.tolerant_location import defs  # the same definitions, in this process

        with dg.DagsterInstance.get() as instance:
            res = defs.resolve_job_def(f"{sink.replace('-', '_')}_job").execute_in_process(instance=instance)
            assert res.success
        drained = _wait(dev, dataset, "lag_within_threshold", "SUCCEEDED", timeout=120)
        assert {e["label"]: e.get("intValue") for e in drained["evaluation"]["metadataEntries"]}["lag"] == 0
        deadline, status = time.monotonic() + 120, None  # the daemon evaluates the freshness policy
        while time.monotonic() < deadline and status != "HEALTHY":
            time.sleep(2)
            node = dev.graphql(CHECKS, {"k": {"path": dataset}})["assetNodeOrError"]
            status = (node["freshnessStatusInfo"] or {}).get("freshnessStatus")
        assert status == "HEALTHY", f"freshness {status} 120 s after the write"
    finally:
        leftover = dev.stop()
    assert not leftover, (f"processes needed SIGKILL: {leftover}; logs:\n"
                          + "\n".join(dev.tail(n, 25) for n in ("code-server", "daemon", "webserver")))
    assert sorted(p.name for p in Path(home / "lake" / topic).rglob("*.parquet"))  # the run wrote the records
