"""Continuous mode of a time-partitioned Parquet sink, in-process: the run ends cleanly at its time
budget (SUCCESS), records the time partitions each micro-batch wrote, and a second run picks up from
the committed offsets (the records produced between the runs, exactly once)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.definitions import build_definitions
from assets.keys import clean, sink_assets
from integrations.loading import load_connector
from tests.helpers import read_dataset, write_connector
from tests.integration.sink_helpers import produce

DAY = dt.datetime(2024, 6, 1, 8, tzinfo=dt.UTC)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def test_continuous_partitioned_sink_records_partitions_and_resumes(kafka, topic_factory, tmp_path, unique,
                                                                     monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("cpart")
    produce(kafka, topic, [(0, None, {"id": i}, _ms(DAY + dt.timedelta(days=i % 2))) for i in range(10)])
    name = f"cpart-{unique}"
    write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                                     "partitioner": "time", "partition_start_date": "2024-06-01",
                                     "continuous": {"max_run_seconds": 3, "idle_sleep_seconds": 0.2}})
    defs = build_definitions(tmp_path / "c")
    key = sink_assets(load_connector(tmp_path / "c" / f"{name}.yaml"))[0].key
    job = defs.resolve_job_def(f"{clean(name)}_continuous_job")
    assert job.tags["headrace/mode"] == "continuous" and job.tags["headrace/connector"] == name
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success  # ended at its time budget
        parts = sorted(e.step_materialization_data.materialization.partition
                       for e in first.get_asset_materialization_events())
        assert parts == ["2024-06-01", "2024-06-02"]
        produce(kafka, topic, [(0, None, {"id": i}, _ms(DAY + dt.timedelta(days=2))) for i in range(10, 15)])
        second = job.execute_in_process(instance=instance)
        assert second.success
        assert [e.step_materialization_data.materialization.partition
                for e in second.get_asset_materialization_events()] == ["2024-06-03"]
        assert instance.get_materialized_partitions(key) == {"2024-06-01", "2024-06-02", "2024-06-03"}
    ids = sorted(read_dataset(tmp_path / "lake" / topic).column("id").to_pylist())
    assert ids == list(range(15))  # exactly once
    assert kafka.committed(f"headrace-{name}", topic) == {0: 15}
