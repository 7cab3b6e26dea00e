"""Reliability matrix row 18: a run fails for good after the sensor requested it.

The sink sensor asks for exact offset ranges under a run_key. When that run fails (here its dataset
path is a file, so every step retry fails too), the next evaluation asks for the same ranges again
under ``<key>#retry1``; once that run succeeds the sensor has nothing left to ask for, and the
failed key is never requested twice.
"""

from __future__ import annotations

import json

import dagster as dg

from assets.definitions import build_definitions
from assets.sensors import REQUEST_TAG
from tests.helpers import produce_all, read_dataset, write_connector


def _evaluate(defs: dg.Definitions, sensor: dg.SensorDefinition, instance: dg.DagsterInstance):
    return sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))


def test_failed_run_is_requested_again_with_the_same_ranges(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("retry-sensor", partitions=2)
    produce_all(kafka, topic, ({"value": json.dumps({"id": i}).encode(), "partition": i % 2} for i in range(10)))
    lake = tmp_path / "lake"
    lake.write_text("not a folder")  # every attempt of the first run fails
    write_connector(tmp_path / "c", {"name": f"rs-{unique}", "type": "parquet_sink", "topics": [topic],
                                     "path": str(lake)})
    defs = build_definitions(tmp_path / "c")
    sensor = defs.get_sensor_def(f"rs_{unique}_sensor")
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        first = _evaluate(defs, sensor, instance).run_requests[0]
        failed = job.execute_in_process(instance=instance, tags={**first.tags, "dagster/run_key": first.run_key},
                                        raise_on_error=False)
        assert not failed.success
        assert kafka.committed(f"headrace-rs-{unique}", topic) == {0: None, 1: None}  # nothing moved

        lake.unlink()
        again = _evaluate(defs, sensor, instance).run_requests[0]
        assert again.run_key == first.run_key + "#retry1"
        assert again.tags["headrace/ranges"] == first.tags["headrace/ranges"]
        assert again.tags[REQUEST_TAG] == first.tags[REQUEST_TAG]
        ok = job.execute_in_process(instance=instance, tags={**again.tags, "dagster/run_key": again.run_key})
        assert ok.success
        assert sorted(read_dataset(lake / topic).column("id").to_pylist()) == list(range(10))
        idle = _evaluate(defs, sensor, instance)
        assert isinstance(idle, dg.SkipReason) and idle.skip_message == "no lag"
