"""Issue 14 items 4 and 5 through Dagster's instance APIs.

4. A source micro-batch that moved 0 rows records an observation of its topic, not a materialization,
   so the sinks reading it stay up to date ("Unsynced" is Dagster's stale status of a sink whose
   upstream has newer data); the chained sinks are skipped.
5. A range backfill of a daily time-partitioned Parquet sink records each partition's own rows,
   window, files and folders; a run Dagster builds for a backfill is tagged with its connector by the
   run coordinator (``assets.run_coordinator``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from assets.definitions import build_definitions
from assets.keys import clean, sink_assets, topic_key
from assets.run_coordinator import HeadraceRunCoordinator, connectors_of, tag_connector
from integrations.loading import load_connector
from tests.helpers import write_connector
from tests.integration.sink_helpers import produce


def _status(instance: dg.DagsterInstance, defs: dg.Definitions, key: dg.AssetKey) -> StaleStatus:
    return CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)
                                      ).get_status(key)


def test_quiet_source_run_leaves_sinks_up_to_date(kafka, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_OFFSETS_TOPIC", f"headrace-offsets-test-{unique}")
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 11)])
    con.commit()
    topic = f"q{unique}.items"
    kafka.ensure_topic(topic)
    c = tmp_path / "c"
    src, pqs = f"q-src-{unique}", f"q-pq-{unique}"
    write_connector(c, {"name": src, "type": "sql_source", "connection_url": f"sqlite:///{db}", "mode": "incrementing",
                        "incrementing_column": "id", "tables": ["items"], "topic_prefix": f"q{unique}."})
    write_connector(c, {"name": pqs, "type": "parquet_sink", "topics": [topic], "path": str(tmp_path / "lake")})
    try:
        defs = build_definitions(c)
        tkey, skey = topic_key(topic), sink_assets(load_connector(c / f"{pqs}.yaml"))[0].key
        job = defs.resolve_job_def(f"{clean(src)}_job")
        with dg.instance_for_test() as instance:
            first = job.execute_in_process(instance=instance)
            assert {e.asset_key: e.step_materialization_data.materialization.metadata["rows"].value
                    for e in first.get_asset_materialization_events()} == {tkey: 10, skey: 10}
            assert _status(instance, defs, skey) == StaleStatus.FRESH
            mat = instance.get_latest_materialization_event(tkey).run_id  # the first run's

            quiet = job.execute_in_process(instance=instance)  # nothing new
            assert quiet.success and quiet.get_asset_materialization_events() == []
            [obs] = [e.asset_observation_data.asset_observation for e in quiet.all_events
                     if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
            assert obs.asset_key == tkey and obs.metadata["rows"].value == 0
            skipped = {e.step_key for e in quiet.all_events if e.event_type == dg.DagsterEventType.STEP_SKIPPED}
            assert f"{clean(pqs)}_sink" in skipped
            assert instance.get_latest_materialization_event(tkey).run_id == mat  # no new materialization
            assert _status(instance, defs, skey) == StaleStatus.FRESH  # not "Unsynced"

            con.execute("INSERT INTO items VALUES (11, 'v11')")
            con.commit()
            third = job.execute_in_process(instance=instance)
            assert {e.asset_key: e.step_materialization_data.materialization.metadata["rows"].value
                    for e in third.get_asset_materialization_events()} == {tkey: 1, skey: 1}
            assert _status(instance, defs, skey) == StaleStatus.FRESH
    finally:
        con.close()
        kafka.delete_topics([topic, f"headrace-offsets-test-{unique}"])


DAY0 = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def test_range_backfill_records_each_partitions_figures_and_is_tagged(kafka, topic_factory, tmp_path, unique,
                                                                       monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("bf")
    per_day = [3, 1, 4, 2]  # records on 2024-05-01 .. 05-04
    recs, i = [], 0
    for d, n in enumerate(per_day):
        for _ in range(n):
            recs.append((0, None, {"id": i}, int((DAY0 + dt.timedelta(days=d)).timestamp() * 1000)))
            i += 1
    produce(kafka, topic, recs)
    name = f"bf-{unique}"
    write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                                     "partitioner": "time", "partition_start_date": "2024-05-01", "flush_size": 2})
    defs = build_definitions(tmp_path / "c")
    key = sink_assets(load_connector(tmp_path / "c" / f"{name}.yaml"))[0].key
    days = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
    with dg.instance_for_test() as instance:
        ranged = defs.resolve_job_def(f"{clean(name)}_backfill_job").execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
        assert ranged.success
        mats = {m.partition: {k: v.value for k, v in m.metadata.items()}
                for m in (e.step_materialization_data.materialization for e in ranged.get_asset_materialization_events())}
        assert sorted(mats) == days
        for day, n in zip(days, per_day, strict=True):
            y, m, d = day.split("-")
            assert mats[day]["rows"] == n, day
            assert mats[day]["files"] == (n + 1) // 2, day  # flush_size 2
            assert mats[day]["window"] == f"[{day}T00:00:00+00:00, {dt.date.fromisoformat(day) + dt.timedelta(days=1)}" \
                                          "T00:00:00+00:00)"
            assert mats[day]["paths_replaced"] == [f"{topic}/year={y}/month={m}/day={d}"]
            assert mats[day]["partitions_rewritten"] == [day]
        assert instance.get_materialized_partitions(key) == set(days)

        # a run Dagster builds for the backfill's assets (its implicit asset job) gets the connector's tag
        asset_job = defs.resolve_implicit_global_asset_job_def()
        run = instance.create_run_for_job(asset_job, asset_selection=frozenset({key}), tags={
            "dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
        assert "headrace/connector" not in run.tags
        assert connectors_of(instance, run) == {name}
        tagged = tag_connector(instance, run)  # what HeadraceRunCoordinator.submit_run does before queuing
        assert tagged.tags["headrace/connector"] == name
        assert instance.get_run_by_id(run.run_id).tags["headrace/connector"] == name
        assert tag_connector(instance, tagged) is tagged  # a tagged run is left as it is
    with dg.instance_for_test(overrides={"run_coordinator": {
            "module": "assets.run_coordinator", "class": "HeadraceRunCoordinator"}}) as instance:
        assert isinstance(instance.run_coordinator, HeadraceRunCoordinator)  # loads as dagster.yaml names it
