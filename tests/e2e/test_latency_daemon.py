"""Issue 14 item 1 with a real daemon: a row committed in PostgreSQL reaches Parquet and DuckDB within
one sensor cycle plus one run (micro-batch mode, sensors on).

Code server and ``dagster-daemon run`` on the project's dagster.yaml; a SQL source, a Parquet sink
and a DuckDB table sink, every sensor started. After the initial rows are through, one more row is
committed. The first run the source's sensor requests after that commit (its job runs the sinks too)
writes the row to the topic, the dataset and the table: no run of a sink's own job is ever needed.
Asserted on the instance's runs and materializations and on the data (every row exactly once), not
on time.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb

from assets.keys import clean, sink_assets, topic_key
from integrations.loading import load_connector
from tests.e2e.daemon_pipeline import insert, instance_of, make_table, mats_of_run, start_services, wait_for
from tests.helpers import read_dataset, write_connector

SCHEMA = {"id": "int64", "v": "string"}


def test_committed_row_reaches_parquet_and_duckdb_in_one_run(kafka, pg_url, tmp_path, unique):
    topic = f"lat{unique}.items"
    offsets = f"headrace-offsets-test-{unique}"
    kafka.ensure_topic(topic)
    make_table(pg_url, "items")
    insert(pg_url, "items", range(1, 51))
    conn, lake = tmp_path / "connectors", tmp_path / "lake"
    src, pqs, dbs = f"lat-src-{unique}", f"lat-pq-{unique}", f"lat-db-{unique}"
    write_connector(conn, {"name": src, "type": "sql_source", "connection_url": pg_url, "mode": "incrementing",
                           "incrementing_column": "id", "tables": ["items"], "topic_prefix": f"lat{unique}.",
                           "key_columns": ["id"]})
    write_connector(conn, {"name": pqs, "type": "parquet_sink", "topics": [topic], "path": str(lake),
                           "value_schema": SCHEMA})
    write_connector(conn, {"name": dbs, "type": "table_sink", "topics": [topic],
                           "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "table_name_format": "items",
                           "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"],
                           "auto_create": True, "value_schema": SCHEMA})
    services = start_services(tmp_path, conn, {"HEADRACE_HOME": str(tmp_path), "HEADRACE_OFFSETS_TOPIC": offsets})

    def ids() -> list[int]:
        return sorted(read_dataset(lake / topic).column("id").to_pylist()) if (lake / topic).exists() else []

    try:
        instance = instance_of(services)
        wait_for("the first 50 rows in Parquet", lambda: True if len(ids()) == 50 else None, 240)
        src_job = f"{clean(src)}_job"
        wait_for("the first source run to end", lambda: True if all(
            r.is_finished for r in instance.get_runs(dg.RunsFilter(job_name=src_job))) else None, 120)
        committed = dt.datetime.now(dt.UTC)
        insert(pg_url, "items", [51])
        wait_for("row 51 in Parquet", lambda: True if 51 in ids() else None, 180)

        after = [r for r in instance.get_run_records(dg.RunsFilter(job_name=src_job, created_after=committed))]
        first = min(after, key=lambda r: r.create_timestamp).dagster_run  # the first run requested after it
        wait_for("the run to end", lambda: True if instance.get_run_by_id(first.run_id).is_finished else None, 120)
        assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.SUCCESS
        mats = mats_of_run(instance, first.run_id)
        rows = {k: [m["rows"] for m in v] for k, v in mats.items()}
        pq_key, db_key = (sink_assets(load_connector(conn / f"{n}.yaml"))[0].key.to_user_string() for n in (pqs, dbs))
        assert rows == {topic_key(topic).to_user_string(): [1], pq_key: [1], db_key: [1]}, rows
        assert mats[pq_key][0]["offsets"] == mats[db_key][0]["offsets"] == {"0": [50, 51]}
        assert first.tags["headrace/connector"] == src
        for sink in (pqs, dbs):  # the source's runs wrote the sinks: their own jobs never ran
            assert instance.get_runs(dg.RunsFilter(job_name=f"{clean(sink)}_job")) == []
    finally:
        services.stop()
        kafka.delete_topics([topic, offsets])
    assert ids() == list(range(1, 52))  # every row exactly once
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM items").fetchone() == (
            51, 51, 1, 51)
