"""Operations through a real Dagster instance (temporary DAGSTER_HOME): ``headrace status --json`` after
known runs, ``pause`` / ``resume`` changing the sensor state the workspace's code location reads (as
``dagster sensor list`` shows it), and the same operations as Dagster jobs, including an offsets reset
that the next run reads from and a refusal while a run is in flight."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.storage.dagster_run import DagsterRun

from assets.definitions import build_definitions
from assets.ops_jobs import ops_definitions
from integrations.config import load_folder
from tests.conftest import REPO, run_cli
from tests.helpers import produce_all, read_dataset, write_connector


def _sensor_status(instance: dg.DagsterInstance, name: str) -> list[str]:
    return [s.status.value for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if s.origin.instigator_name == name]


def test_status_pause_resume_and_operation_jobs(kafka, topic_factory, tmp_path, unique, monkeypatch, request):
    home, dagster_home, connectors = tmp_path / "hr", tmp_path / "dagster", tmp_path / "connectors"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"HEADRACE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "HEADRACE_CONNECTORS_DIR": str(connectors)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(1, 6)])
    con.commit()
    con.close()
    topic, dlq = f"ops-st-{unique}-orders", topic_factory("ops-st-dlq", create=False)
    request.addfinalizer(lambda: kafka.delete_topics([topic]))
    src, sink = f"ops-src-{unique}", f"ops-lake-{unique}"
    write_connector(connectors, {"name": src, "type": "sql_source", "connection_url": f"sqlite:///{db}",
                                 "mode": "incrementing", "incrementing_column": "id", "tables": ["orders"],
                                 "topic_prefix": f"ops-st-{unique}-"})
    write_connector(connectors, {"name": sink, "type": "parquet_sink", "topics": [topic], "path": str(tmp_path / "lake"),
                                 "errors_tolerance": "all", "dlq_topic": dlq})
    configs = load_folder(connectors)
    defs = dg.Definitions.merge(build_definitions(configs=configs), ops_definitions(configs))
    src_job, sink_job = f"ops_src_{unique}_job", f"ops_lake_{unique}_job"

    with dg.DagsterInstance.get() as instance:
        src_run = defs.resolve_job_def(src_job).execute_in_process(instance=instance)
        assert src_run.success
        produce_all(kafka, topic, [{"value": b"not json"}])  # offset 5: a poison pill for the sink's DLQ
        sink_run = defs.resolve_job_def(sink_job).execute_in_process(instance=instance)
        assert sink_run.success

        proc = run_cli("status", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        rows = {r["connector"]: r for r in json.loads(proc.stdout)}
        assert set(rows) == {src, sink}
        s, k = rows[src], rows[sink]
        assert (s["kind"], s["sensor"], s["offsets"], s["lag"], s["lag_unit"], s["dead_letters"], s["problems"]) == (
            "source", "never started", {'{"table":"orders"}': {"incrementing": 5}}, 0, "tables with new rows", None, [])
        assert (s["last_run"]["run_id"], s["last_run"]["status"], s["last_run"]["succeeded"],
                s["last_run"]["job"]) == (src_run.run_id, "SUCCESS", True, src_job)
        assert s["last_run"]["started"] <= s["last_run"]["ended"]
        assert (k["kind"], k["offsets"], k["lag"], k["lag_unit"], k["dead_letters"], k["dlq_topic"]) == (
            "parquet_sink", {f"{topic}[0]": 6}, 0, "records", 1, dlq)
        assert k["last_run"]["run_id"] == sink_run.run_id and k["last_run"]["succeeded"] is True
        table = run_cli("status", sink, env=env)
        assert table.returncode == 0, table.stderr
        assert "dead letters" in table.stdout and f"{topic}[0]=6" in table.stdout and f"1 ({dlq})" in table.stdout

        # pause / resume through the instance; `dagster sensor list` (the workspace's own loading) agrees
        sensor = f"ops_lake_{unique}_sensor"
        out = run_cli("resume", sink, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"resumed {sink}: sensor never started -> running")
        assert _sensor_status(instance, sensor) == ["RUNNING"]
        listed = subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "list", "-w",
                                 str(REPO / "workspace.yaml")], env={**os.environ, **env}, cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert f"Sensor: {sensor} [RUNNING]" in listed.stdout, listed.stdout + listed.stderr
        assert f"Sensor: ops_src_{unique}_sensor [STOPPED]" in listed.stdout
        out = run_cli("pause", sink, env=env)
        assert out.stdout.startswith(f"paused {sink}: sensor running -> stopped"), out.stderr
        assert _sensor_status(instance, sensor) == ["STOPPED"]
        assert json.loads(run_cli("status", sink, "--json", env=env).stdout)[0]["sensor"] == "stopped"

        # the operations as Dagster jobs
        status = defs.resolve_job_def("headrace_status").execute_in_process(
            instance=instance, run_config={"ops": {"headrace_status_op": {"config": {"connector": sink}}}})
        assert status.success
        data = status.output_for_node("headrace_status_op")
        assert [(r["connector"], r["offsets"], r["dead_letters"], r["sensor"]) for r in data] == [
            (sink, {f"{topic}[0]": 6}, 1, "stopped")]
        resumed = defs.resolve_job_def("headrace_resume").execute_in_process(
            instance=instance, run_config={"ops": {"headrace_resume_op": {"config": {"connector": sink}}}})
        assert resumed.output_for_node("headrace_resume_op") == {"before": "stopped", "after": "running"}
        assert _sensor_status(instance, sensor) == ["RUNNING"]
        paused = defs.resolve_job_def("headrace_pause").execute_in_process(
            instance=instance, run_config={"ops": {"headrace_pause_op": {"config": {"connector": sink}}}})
        assert paused.output_for_node("headrace_pause_op") == {"before": "running", "after": "stopped"}

        reset_cfg = {"ops": {"headrace_offsets_reset_op": {"config": {"connector": sink, "to": "earliest"}}}}
        busy = DagsterRun(job_name=sink_job, status=dg.DagsterRunStatus.STARTED, tags={"headrace/connector": sink})
        instance.add_run(busy)
        refused = defs.resolve_job_def("headrace_offsets_reset").execute_in_process(
            instance=instance, run_config=reset_cfg, raise_on_error=False)
        assert not refused.success
        failure = refused.failure_data_for_node("headrace_offsets_reset_op").error
        assert f"run {busy.run_id[:8]} ({sink_job}) is STARTED; offsets are not changed" in failure.message
        assert kafka.committed(f"headrace-{sink}", topic) == {0: 6}
        instance.report_run_failed(busy)

        reset = defs.resolve_job_def("headrace_offsets_reset").execute_in_process(instance=instance, run_config=reset_cfg)
        assert reset.output_for_node("headrace_offsets_reset_op")["after"] == {f"{topic}[0]": 0}
        again = defs.resolve_job_def(sink_job).execute_in_process(instance=instance)
        assert again.success
        assert sorted(read_dataset(tmp_path / "lake" / topic).column("id").to_pylist()) == [1, 2, 3, 4, 5]
        assert kafka.committed(f"headrace-{sink}", topic) == {0: 6}
        rows = {r["connector"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
        assert rows[sink]["dead_letters"] == 2  # the poison pill was read again from offset 0
        assert rows[sink]["last_run"]["run_id"] == again.run_id

        set_cfg = {"ops": {"headrace_offsets_set_op": {"config": {"connector": sink, "offsets": [
            {"partition": "0", "offset": "4"}]}}}}
        moved = defs.resolve_job_def("headrace_offsets_set").execute_in_process(instance=instance, run_config=set_cfg)
        assert moved.output_for_node("headrace_offsets_set_op")["after"] == {f"{topic}[0]": 4}
        assert kafka.committed(f"headrace-{sink}", topic) == {0: 4}
