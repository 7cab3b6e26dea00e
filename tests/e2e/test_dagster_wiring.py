"""The Dagster layer for every connector type: lineage, file source → DuckDB table, the dead-letter
check, and a time-partitioned Parquet dataset backfilled (and re-run) through Dagster."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3

import dagster as dg
import duckdb
import orjson

from assets.definitions import build_definitions
from tests.helpers import read_dataset, write_connector

DAY_MS = 86_400_000
T0 = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)


def _events(result: dg.ExecuteInProcessResult) -> tuple[dict, dict]:
    mats, checks = {}, {}
    for ev in result.get_asset_materialization_events():
        m = ev.step_materialization_data.materialization
        mats["/".join(m.asset_key.path)] = {k: v.value for k, v in m.metadata.items()}
    for ev in result.get_asset_check_evaluations():
        checks[("/".join(ev.asset_key.path), ev.check_name)] = ev
    return mats, checks


def test_lineage_of_every_connector_type(tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    for t in ("sales_eu", "sales_us", "audit"):
        con.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    c = tmp_path / "c"
    write_connector(c, {"name": "sales", "type": "sql_source", "connection_url": f"sqlite:///{db}",
                        "mode": "incrementing", "incrementing_column": "id", "table_include": ["sales_.*"],
                        "topic_prefix": "db."})
    write_connector(c, {"name": "drops", "type": "file_source", "input_path": str(tmp_path / "in"),
                        "topic": "files.drops", "format": "csv"})
    write_connector(c, {"name": "wh", "type": "table_sink", "topics": ["db.sales_eu", "files.drops"],
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "auto_create": True})
    write_connector(c, {"name": "lake", "type": "parquet_sink", "topics": ["db.sales_us", "ext.clicks"],
                        "path": "lake", "partitioner": "time", "partition_start_date": "2024-01-01"})
    defs = build_definitions(c)
    specs = {"/".join(s.key.path): s for s in defs.resolve_all_asset_specs()}
    deps = {k: sorted("/".join(d.asset_key.path) for d in s.deps) for k, s in specs.items()}
    assert deps["kafka/db_sales_eu"] == ["source/sqlite_src/sqlite_src__sales_eu"]  # discovered by table_include
    assert deps["kafka/db_sales_us"] == ["source/sqlite_src/sqlite_src__sales_us"]
    assert "source/sqlite_src/sqlite_src__audit" not in specs
    assert deps["kafka/files_drops"] == ["files/drops"]
    assert deps["warehouse/duckdb_wh/duckdb_wh__db_sales_eu"] == ["kafka/db_sales_eu"]
    assert deps["warehouse/duckdb_wh/duckdb_wh__files_drops"] == ["kafka/files_drops"]
    assert deps["parquet/lake/lake__db_sales_us"] == ["kafka/db_sales_us"]
    assert deps["parquet/lake/lake__ext_clicks"] == ["kafka/ext_clicks"]
    assert specs["kafka/ext_clicks"].group_name == "external_topics"
    assert isinstance(specs["parquet/lake/lake__db_sales_us"].partitions_def, dg.DailyPartitionsDefinition)
    assert {s.name for s in defs.sensors} == {"sales_sensor", "drops_sensor", "wh_sensor", "lake_sensor",
                                              "wh_checks_sensor", "lake_checks_sensor"}
    assert {"sales_job", "drops_job", "wh_job", "lake_job", "lake_backfill_job"} <= {j.name for j in defs.jobs}


def test_file_source_to_duckdb_table_through_dagster(kafka, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("id,name\n1,Ada\n2,Grace\n")
    (inbox / "b.csv").write_text("id,name\n2,Grace Hopper\n3,Edsger\n")
    topic = f"drops-{unique}"
    c = tmp_path / "c"
    write_connector(c, {"name": f"drops-{unique}", "type": "file_source", "input_path": str(inbox),
                        "topic": topic, "format": "csv", "key_columns": ["id"]})
    write_connector(c, {"name": f"wh-{unique}", "type": "table_sink", "topics": [topic],
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "auto_create": True,
                        "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"],
                        "table_name_format": "people"})
    defs = build_definitions(c)
    try:
        with dg.instance_for_test() as instance:
            sensor = defs.get_sensor_def(f"drops_{unique}_sensor")
            req = sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))
            assert len(req.run_requests) == 1
            res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
            assert res.success
            mats, checks = _events(res)
            src = mats[f"kafka/drops_{unique}"]
            assert src["rows"] == 4 and sorted(src["files_ingested"]) == ['{"file":"a.csv"}', '{"file":"b.csv"}']
            assert mats["warehouse/duckdb_wh/duckdb_wh__people"]["rows"] == 4
            assert all(ev.passed for ev in checks.values())
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            assert con.sql("SELECT id, name FROM people ORDER BY id").fetchall() == [
                (1, "Ada"), (2, "Grace Hopper"), (3, "Edsger")]
    finally:
        kafka.delete_topics([topic])


def test_dead_letters_fail_the_check(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic, dlq = topic_factory("dlqcheck"), topic_factory("dlqcheck-dlq")
    p = kafka.producer()
    for v in (b'{"id": 1}', b'{"id": 2', b'{"id": 3}'):
        p.produce(topic, v)
    assert p.flush(30) == 0
    c = tmp_path / "c"
    write_connector(c, {"name": f"dl-{unique}", "type": "parquet_sink", "topics": [topic], "path": "lake",
                        "errors_tolerance": "all", "dlq_topic": dlq, "value_schema": {"id": "int64"}})
    defs = build_definitions(c)
    with dg.instance_for_test() as instance:
        res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance,
                                                                              raise_on_error=False)
        mats, checks = _events(res)
        key = f"parquet/dl_{unique}/dl_{unique}__{topic.replace('-', '_')}"
        assert mats[key]["rows"] == 2 and mats[key]["dead_lettered"] == 1
        ev = checks[(key, "dead_letters_within_threshold")]
        assert ev.passed is False and ev.metadata["dead_lettered"].value == 1


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.parquet"))}


def test_time_partitioned_backfill_through_dagster_is_deterministic(kafka, topic_factory, tmp_path, unique,
                                                                   monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("daily", partitions=2)
    p = kafka.producer()
    for i in range(60):  # 12 records a day over 5 days (2024-05-01 .. 05-05), both partitions
        ts = T0 + (i * DAY_MS) // 12
        p.produce(topic, orjson.dumps({"id": i, "ts": ts}), partition=i % 2, timestamp=ts)
    assert p.flush(30) == 0
    c = tmp_path / "c"
    name = f"daily-{unique}"
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                        "partitioner": "time", "partition_duration": "daily", "partition_start_date": "2024-05-01",
                        "value_schema": {"id": "int64", "ts": "int64"}})
    defs = build_definitions(c)
    job = defs.resolve_job_def(f"daily_{unique.replace('-', '_')}_backfill_job")
    lake = tmp_path / "lake" / topic
    with dg.instance_for_test() as instance:
        # a backfill of three past days in one run (BackfillPolicy.single_run)
        res = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "2024-05-02", "dagster/asset_partition_range_end": "2024-05-04"})
        assert res.success
        days = sorted(str(p.relative_to(lake)) for p in lake.glob("year=*/month=*/day=*"))
        assert days == ["year=2024/month=05/day=02", "year=2024/month=05/day=03", "year=2024/month=05/day=04"]
        ids = sorted(read_dataset(lake).column("id").to_pylist())
        assert ids == list(range(12, 48))
        for d, lo in (("02", 12), ("03", 24), ("04", 36)):
            assert sorted(read_dataset(lake / f"year=2024/month=05/day={d}").column("id").to_pylist()) == list(
                range(lo, lo + 12))
        before = _digest(lake)
        # re-run one day: identical files and rows; the other days are untouched
        again = job.execute_in_process(instance=instance, partition_key="2024-05-03")
        assert again.success
        assert _digest(lake) == before
        # the group offsets of the streaming sink were not touched by the backfill
        assert kafka.committed(f"headrace-{name}", topic) == {0: None, 1: None}
