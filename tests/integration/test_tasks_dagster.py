"""tasks_max: 2 through Dagster with the multiprocess executor (one step per task, then a gather step):
a PostgreSQL source and a Parquet sink move every record exactly once and store each task's offsets;
a task killed (SIGKILL) while the other succeeds fails the run, and re-executing it from failure runs
only the killed task and the gather, still exactly once."""

from __future__ import annotations

import collections
import json
import os

import dagster as dg
import pytest
import yaml

from assets.tasks import task_defs
from integrations.config import load_connector
from integrations.offsets import OffsetStore
from resources.kafka import KafkaResource
from tests.integration.sink_helpers import file_rows
from tests.integration.source_helpers import numbered_table, read_ids

ENV = "HEADRACE_TASKS_TEST_CONNECTOR"


def _defs() -> dg.Definitions:
    d = task_defs(load_connector(os.environ[ENV]))
    return dg.Definitions(assets=d.assets, jobs=d.jobs, resources={"kafka": KafkaResource()})


def tasks_job() -> dg.JobDefinition:
    """The connector's job (reconstructable: the multiprocess executor loads it in each step process)."""
    d = task_defs(load_connector(os.environ[ENV]))
    return _defs().resolve_job_def(d.jobs[0].name)


def _write(tmp_path, conf: dict, monkeypatch) -> None:
    path = tmp_path / f"{conf['name']}.yaml"
    path.write_text(yaml.safe_dump(conf))
    monkeypatch.setenv(ENV, str(path))


def _steps(result: dg.ExecutionResult | dg.JobExecutionResult, kind: str) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == kind}


def test_defs_shape(tmp_path, monkeypatch, unique):
    _write(tmp_path, {"type": "parquet_sink", "name": f"tdd-{unique}", "topics": ["a", "b"],
                      "path": str(tmp_path / "o"), "tasks_max": 3}, monkeypatch)
    defs = _defs()
    job = tasks_job()
    name = f"tdd_{unique}"
    ops = sorted(n.name for n in job.graph.node_dict[f"{name}_sink"].definition.node_dict.values())
    assert ops == [f"{name}_gather", *(f"{name}_task_{i}" for i in range(3))]
    graph = defs.resolve_asset_graph()
    sink_keys = [k for k in graph.get_all_asset_keys() if k.path[0] == "parquet"]
    assert sorted(k.path[-1] for k in sink_keys) == [f"{sink_keys[0].path[1]}__a", f"{sink_keys[0].path[1]}__b"]
    for k in sink_keys:  # lineage kept: each dataset depends on its own topic only
        assert graph.get(k).parent_keys == {dg.AssetKey(["kafka", k.path[-1].rsplit("__", 1)[1]])}
        assert graph.get(k).kinds == {"parquet"}
    assert len(list(graph.asset_check_keys)) == 2
    assert job.tags["headrace/connector"] == f"tdd-{unique}"


def test_source_and_sink_tasks_multiprocess(kafka, pg_url, unique, tmp_path, monkeypatch):
    tables = ["ma", "mb", "mc"]
    for t in tables:
        numbered_table(pg_url, t, 1000)
    prefix = f"tdm{unique}-"
    topics = [f"{prefix}{t}" for t in tables]
    for t in topics:
        kafka.ensure_topic(t, partitions=2)
    offsets = f"tdm-offsets-{unique}"
    monkeypatch.setenv("HEADRACE_OFFSETS_TOPIC", offsets)
    src = {"type": "sql_source", "name": f"tdm-src-{unique}", "connection_url": pg_url, "mode": "incrementing",
           "incrementing_column": "id", "tables": tables, "topic_prefix": prefix, "key_columns": ["id"],
           "tasks_max": 2, "exactly_once": True, "topic_partitions": 2}
    root = tmp_path / "out"
    sink = {"type": "parquet_sink", "name": f"tdm-snk-{unique}", "topics": topics, "path": str(root),
            "flush_size": 400, "tasks_max": 2}
    try:
        with dg.instance_for_test() as instance:
            _write(tmp_path, src, monkeypatch)
            res = dg.execute_job(dg.reconstructable(tasks_job), instance=instance)
            assert res.success
            assert _steps(res, "STEP_SUCCESS") == {f"tdm_src_{unique}_source.tdm_src_{unique}_{s}"
                                                   for s in ("task_0", "task_1", "gather")}
            # the steps ran in separate processes
            pids = {e.pid for e in res.all_events if e.event_type_value == "STEP_START"}
            assert len(pids) == 3
            stored = OffsetStore(kafka, offsets).read(src["name"])
            assert {json.loads(k)["table"]: v["incrementing"] for k, v in stored.items()} == {t: 1000 for t in tables}
            mats = [e.event_specific_data.materialization for e in res.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION"]
            assert sorted(m.metadata["rows"].value for m in mats) == [1000, 1000, 1000]
            for t in topics:
                assert collections.Counter(read_ids(kafka, t)) == collections.Counter(range(1, 1001))

            _write(tmp_path, sink, monkeypatch)
            # task 0 is killed after publishing a file, before committing its offset; task 1 succeeds
            monkeypatch.setenv("HEADRACE_FAULT", "sink_after_write")
            monkeypatch.setenv("HEADRACE_FAULT_ONCE", str(tmp_path / "fault-once"))
            first = dg.execute_job(dg.reconstructable(tasks_job), instance=instance, raise_on_error=False)
            name = f"tdm_snk_{unique}"
            killed = int((tmp_path / "fault-once").read_text())
            kinds = collections.defaultdict(list)
            for e in first.all_events:
                kinds[e.event_type_value].append(e.step_key)
            # the killed task's step was retried by its retry policy; the other ran once
            assert first.success, killed
            assert kinds["STEP_RESTARTED"] in ([f"{name}_sink.{name}_task_0"], [f"{name}_sink.{name}_task_1"])
            assert sorted(kinds["STEP_SUCCESS"]) == [f"{name}_sink.{name}_{s}" for s in ("gather", "task_0", "task_1")]
            monkeypatch.delenv("HEADRACE_FAULT")
            group = f"headrace-{sink['name']}"
            for t in topics:
                assert kafka.committed(group, t) == {p: hi for p, (_lo, hi) in kafka.watermarks(t).items()}
                rows = [i for ids in file_rows(str(root), t).values() for i in ids]
                assert sorted(rows) == list(range(1, 1001))
            # tasks_max 3 next run: more rows, still exactly once, offsets per partition
            for t in tables:
                numbered_table(pg_url, t, 100, start=1001)
            _write(tmp_path, {**src, "tasks_max": 3}, monkeypatch)
            res = dg.execute_job(dg.reconstructable(tasks_job), instance=instance)
            mats = [e.event_specific_data.materialization for e in res.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION"]
            assert res.success and sorted(m.metadata["rows"].value for m in mats) == [100, 100, 100]
            _write(tmp_path, {**sink, "tasks_max": 3}, monkeypatch)
            assert dg.execute_job(dg.reconstructable(tasks_job), instance=instance).success
            for t in topics:
                rows = [i for ids in file_rows(str(root), t).values() for i in ids]
                assert sorted(rows) == list(range(1, 1101))
                assert kafka.committed(group, t) == {p: hi for p, (_lo, hi) in kafka.watermarks(t).items()}
    finally:
        kafka.delete_topics([*topics, offsets])


def test_task_executor_choice(monkeypatch):
    from assets.tasks import task_executor
    from integrations.errors import ConfigError

    assert task_executor() is dg.multiprocess_executor
    monkeypatch.setenv("HEADRACE_TASK_EXECUTOR", "in_process")
    assert task_executor() is dg.in_process_executor
    monkeypatch.setenv("HEADRACE_TASK_EXECUTOR", "k8s")  # dagster-k8s is not installed here
    with pytest.raises(ConfigError, match="install dagster-k8s"):
        task_executor()
    monkeypatch.setenv("HEADRACE_TASK_EXECUTOR", "yarn")
    with pytest.raises(ConfigError, match="is not one of"):
        task_executor()
