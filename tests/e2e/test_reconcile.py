"""Issue 14 item 6: a reconciliation check per pipeline. Rows in the SQLite source table (up to the
source's stored offset) = records in the topic = rows in the Parquet dataset and in the DuckDB table;
a row lost from the table fails the check with the three numbers. Evaluated by the checks sensor and
by executing the check in a Dagster run."""

from __future__ import annotations

import sqlite3
import time

import dagster as dg
import duckdb

from assets.checks import RECONCILE_CHECK, SETTLE_SECONDS, check_definitions
from assets.definitions import build_definitions
from integrations.loading import load_folder
from tests.helpers import write_connector


def _reconciled(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, tuple[bool, str]]:
    """What the sinks' checks sensors (``<sink>_checks_sensor``) record for the reconciliation checks."""
    out = {}
    for sensor in defs.sensors:
        if sensor.name.endswith("_checks_sensor"):
            result = sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))
            out.update({e.asset_key.to_user_string(): (e.passed, e.description) for e in result.asset_events
                        if e.check_name == RECONCILE_CHECK})
    return out


def _orders_db(tmp_path) -> tuple:  # noqa: ANN001
    """A SQLite ``shop.db`` whose ``orders`` table holds ids 1..10; its path and an open connection."""
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(1, 11)])
    con.commit()
    return db, con


def _sql_source(folder, name: str, db, prefix: str, **extra) -> None:  # noqa: ANN001
    """An incrementing SQL source of ``db``'s ``orders`` table, topics ``<prefix>orders``."""
    write_connector(folder, {"name": name, "type": "sql_source", "connection_url": f"sqlite:///{db}",
                             "mode": "incrementing", "incrementing_column": "id", "tables": ["orders"],
                             "topic_prefix": prefix, **extra})


def test_reconciliation_of_source_topic_and_outputs(kafka, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    db, con = _orders_db(tmp_path)
    topic = f"rec{unique}.orders"
    kafka.ensure_topic(topic, partitions=2)
    c = tmp_path / "c"
    _sql_source(c, f"src-{unique}", db, f"rec{unique}.")
    write_connector(c, {"name": f"lake-{unique}", "type": "parquet_sink", "topics": [topic], "path": "lake"})
    write_connector(c, {"name": f"wh-{unique}", "type": "table_sink", "topics": [topic], "auto_create": True,
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "table_name_format": "orders"})
    configs = load_folder(c)
    defs = build_definitions(configs=configs)
    if not any(s.name.endswith("_checks_sensor") for s in defs.sensors):  # until _build adds sink_checks
        defs = dg.Definitions.merge(defs, check_definitions(configs, lag=False))
    dataset, table = f"parquet/lake_{unique}/lake_{unique}__rec{unique}_orders", "warehouse/duckdb_wh/duckdb_wh__orders"
    jobs = [f"src_{unique}_job", f"lake_{unique}_job", f"wh_{unique}_job"]
    try:
        with dg.instance_for_test() as instance:
            for job in jobs:
                assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
            agree = f"source 10 rows, topic {topic!r} 10 records, {{}} 10 rows: agree"
            assert _reconciled(defs, instance) == {dataset: (True, agree.format("dataset")),
                                                   table: (True, agree.format("table"))}
            con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(11, 16)])
            con.commit()
            assert defs.resolve_job_def(jobs[0]).execute_in_process(instance=instance).success
            got = _reconciled(defs, instance)  # produced, not yet written by the lake: it read 10 of 15
            assert got[dataset] == (True, f"source 15 rows, topic {topic!r} 15 records (read by the sink: 10), "
                                          "dataset 10 rows: agree") or got[dataset][1].startswith("source 15 rows, "
                                          f"topic {topic!r} 15 records, dataset 15 rows")  # a source job may chain
            for job in jobs[1:]:
                assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
            with duckdb.connect(str(tmp_path / "wh.duckdb")) as wh:
                wh.execute("DELETE FROM orders WHERE id = 3")
            got = _reconciled(defs, instance)
            assert got[dataset] == (True, f"source 15 rows, topic {topic!r} 15 records, dataset 15 rows: agree")
            assert got[table] == (False, f"source 15 rows, topic {topic!r} 15 records, table 14 rows: DIFFER")
            check = dg.AssetCheckKey(dg.AssetKey.from_user_string(table), RECONCILE_CHECK)
            with_job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job(
                "reconcile", selection=dg.AssetSelection.checks(check))]))
            run = with_job.resolve_job_def("reconcile").execute_in_process(instance=instance)
            [ev] = run.get_asset_check_evaluations()
            assert (ev.passed, ev.description) == got[table]
            assert {k: v.value for k, v in ev.metadata.items()} == {
                "source_rows": 15, "topic_records": 15, "sink_read_records": 15, "table_rows": 14}
    finally:
        con.close()
        kafka.delete_topics([topic])


def test_lag_of_a_partitioned_dataset_is_what_streaming_left(kafka, topic_factory, tmp_path, unique, monkeypatch):
    """A backfill rebuilds a day from Kafka with a throw-away group: the lag check in its run reports the
    24 records streaming has not written (not the backfill's own reading); after one streaming run the
    sink's checks sensor records lag 0."""
    import datetime as dt

    import orjson

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("plag", partitions=2)
    t0 = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
    p = kafka.producer()
    for i in range(24):  # 12 records a day on 2024-05-01 and 05-02
        ts = t0 + i * 7_200_000
        p.produce(topic, orjson.dumps({"id": i, "ts": ts}), partition=i % 2, timestamp=ts)
    assert p.flush(30) == 0
    c = tmp_path / "c"
    name = f"plag-{unique}"
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                        "partitioner": "time", "partition_duration": "daily", "partition_start_date": "2024-05-01",
                        "value_schema": {"id": "int64", "ts": "int64"}})
    configs = load_folder(c)
    defs = build_definitions(configs=configs)
    if not any(s.name.endswith("_checks_sensor") for s in defs.sensors):  # until _build adds sink_checks
        defs = dg.Definitions.merge(defs, check_definitions(configs, lag=False))
    key = f"parquet/{name.replace('-', '_')}/{name.replace('-', '_')}__{topic.replace('-', '_')}"
    with dg.instance_for_test() as instance:
        res = defs.resolve_job_def(f"{name.replace('-', '_')}_backfill_job").execute_in_process(
            instance=instance, partition_key="2024-05-01")
        assert res.success
        [lag] = [e for e in res.get_asset_check_evaluations() if e.check_name == "lag_within_threshold"]
        assert (lag.asset_key.to_user_string(), lag.metadata["lag"].value) == (key, 24)
        assert defs.resolve_job_def(f"{name.replace('-', '_')}_job").execute_in_process(instance=instance).success
        sensor = defs.resolve_sensor_def(f"{name.replace('-', '_')}_checks_sensor")
        result = sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))
        [ev] = [e for e in result.asset_events if e.check_name == "lag_within_threshold"]
        assert (ev.passed, ev.metadata["lag"].value) == (True, 0)


def test_reconciliation_of_an_upsert_table_and_record_keeping_transforms(kafka, tmp_path, unique, monkeypatch):
    """An upsert table keyed by the source's incrementing id, behind a source with a record-keeping
    transform (InsertField): the table holds one row per source row even when the topic holds the
    source's rows twice (its offset moved back, as after an at-least-once replay). A Filter makes the
    table's count a bound (see the next test); a row lost from the table fails the check."""
    from integrations.offsets import OffsetStore
    from integrations.reconcile import comparable
    from integrations.transforms.config import FilterConfig

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    db, con = _orders_db(tmp_path)
    topic = f"recu{unique}.orders"
    kafka.ensure_topic(topic, partitions=1)
    c = tmp_path / "c"
    src = f"srcu-{unique}"
    _sql_source(c, src, db, f"recu{unique}.", key_columns=["id"],
                transforms=[{"type": "InsertField.Value", "static_field": "origin", "static_value": "shop"}])
    write_connector(c, {"name": f"whu-{unique}", "type": "table_sink", "topics": [topic], "auto_create": True,
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "table_name_format": "orders",
                        "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"]})
    configs = load_folder(c)
    source, sink = configs
    assert comparable(source, sink, (topic,)) is None
    keeping = sink.model_copy(update={"transforms": [*source.transforms]})
    assert comparable(source, keeping, (topic,)) is None  # InsertField keeps every record
    assert comparable(source, sink.model_copy(update={"transforms": [FilterConfig(type="Filter")]}), (topic,)) == \
        "the sink's transform Filter may drop or route records"
    defs = build_definitions(configs=configs)
    table = "warehouse/duckdb_wh/duckdb_wh__orders"
    jobs = [f"srcu_{unique}_job", f"whu_{unique}_job"]
    try:
        with dg.instance_for_test() as instance:
            for job in jobs:
                assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
            OffsetStore(kafka).write(src, {'{"table":"orders"}': {"incrementing": 4}})  # replay ids 5..10
            for job in jobs:
                assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
            assert kafka.watermarks(topic) == {0: (0, 16)}
            assert _reconciled(defs, instance)[table] == (
                True, f"source 10 rows, topic {topic!r} 16 records, table 10 rows (one per key): agree")
            with duckdb.connect(str(tmp_path / "wh.duckdb")) as wh:
                assert wh.execute("SELECT count(*), count(DISTINCT id), min(origin) FROM orders").fetchone() == \
                    (10, 10, "shop")
                wh.execute("DELETE FROM orders WHERE id = 3")
            assert _reconciled(defs, instance)[table] == (
                False, f"source 10 rows, topic {topic!r} 16 records, table 9 rows (one per key): DIFFER")
    finally:
        con.close()
        kafka.delete_topics([topic])


def test_lag_check_is_recorded_again_after_a_newer_materialization(kafka, topic_factory, tmp_path, unique,
                                                                   monkeypatch):
    """The race the daemon test met under load: the checks sensor recorded lag 0 as soon as the sink had
    committed, before the run's materialization was stored; with the lag unchanged it recorded nothing
    after it, so the latest materialization showed no lag evaluation. A newer materialization is now
    always followed by an evaluation."""
    from integrations.runtime.sink_runner import run_sink
    from tests.helpers import produce_all

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("lagm")
    produce_all(kafka, topic, [{"value": f'{{"id": {i}}}'.encode()} for i in range(5)])
    c = tmp_path / "c"
    name = f"lagm-{unique}"
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake"})
    configs = load_folder(c)
    defs = build_definitions(configs=configs)
    sensor = defs.resolve_sensor_def(f"{name.replace('-', '_')}_checks_sensor")
    key = dg.AssetKey(["parquet", name.replace("-", "_"), f"{name.replace('-', '_')}__{topic.replace('-', '_')}"])
    with dg.instance_for_test() as instance:
        cursor = None

        def tick() -> list[tuple[bool, int]]:
            nonlocal cursor
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": defs.resources["kafka"]})
            result = sensor(ctx)
            cursor = result.cursor
            return [(e.passed, e.metadata["lag"].value) for e in result.asset_events
                    if e.check_name == "lag_within_threshold"]

        assert tick() == [(True, 5)]
        assert tick() == []  # unchanged: nothing recorded
        assert run_sink(configs[0], kafka).rows == 5  # committed; its materialization not stored yet
        assert tick() == [(True, 0)]
        assert tick() == []
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))  # the run's, stored late
        assert tick() == [(True, 0)]  # evaluated again for the latest materialization
        # again once a tick starts SETTLE_SECONDS after it (SQLite stores the evaluation's time in whole
        # seconds, and Dagster matches it to the latest materialization only when it is later); then not
        time.sleep(SETTLE_SECONDS)
        assert tick() in ([(True, 0)], [])  # [] when the tick above already started that late
        assert tick() == []


def test_reconciliation_bounds_of_a_filtered_dataset_and_an_upsert_on_another_key(kafka, tmp_path, unique,
                                                                                   monkeypatch):
    """Where records may be dropped (a sink's Filter) or merged (an upsert keyed by another column) the
    check compares the output with the records read as a bound, says why, and still fails when the output
    holds more rows than were read (a dataset file copied by hand)."""
    import pyarrow.parquet as pq

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    db, con = _orders_db(tmp_path)
    topic = f"recb{unique}.orders"
    kafka.ensure_topic(topic, partitions=1)
    c = tmp_path / "c"
    _sql_source(c, f"srcb-{unique}", db, f"recb{unique}.")
    write_connector(c, {"name": f"lakeb-{unique}", "type": "parquet_sink", "topics": [topic], "path": "lake",
                        "transforms": [{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}}]})
    write_connector(c, {"name": f"whb-{unique}", "type": "table_sink", "topics": [topic], "auto_create": True,
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "table_name_format": "orders",
                        "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["amount"],
                        "transforms": [{"type": "Cast.Value", "spec": "amount:int8"}]})
    con.execute("UPDATE orders SET amount = id % 3")
    con.commit()
    configs = load_folder(c)
    defs = build_definitions(configs=configs)
    dataset, table = f"parquet/lakeb_{unique}/lakeb_{unique}__recb{unique}_orders", "warehouse/duckdb_wh/duckdb_wh__orders"
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert {(dataset, RECONCILE_CHECK), (table, RECONCILE_CHECK)} <= checks
    try:
        with dg.instance_for_test() as instance:
            for job in (f"srcb_{unique}_job", f"lakeb_{unique}_job", f"whb_{unique}_job"):
                assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
            got = _reconciled(defs, instance)
            assert got[dataset] == (True, f"source 10 rows, topic {topic!r} 10 records, dataset 10 rows (at most the "
                                          "records read): agree; the sink's transform Filter may drop or route records")
            assert got[table] == (True, f"source 10 rows, topic {topic!r} 10 records, table 3 rows (at most the "
                                        "records read): agree; insert_mode upsert merges records by key")
            [written] = list((tmp_path / "lake" / topic).rglob("*.parquet"))
            pq.write_table(pq.read_table(written), written.with_name("copy-" + written.name))
            assert _reconciled(defs, instance)[dataset] == (
                False, f"source 10 rows, topic {topic!r} 10 records, dataset 20 rows (at most the records read): "
                       "DIFFER; the sink's transform Filter may drop or route records")
    finally:
        con.close()
        kafka.delete_topics([topic])
