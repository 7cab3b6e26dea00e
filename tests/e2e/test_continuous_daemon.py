"""Issue 14 item 2 with a real daemon: continuous mode survives a termination mid-stream.

A SQL source and a Parquet sink with ``continuous``, sensors on: each sensor keeps one long-lived run
going. Rows are committed in a steady stream; while they flow, both runs are terminated (Dagster's
run termination, as the UI's "Terminate" does). Each stops at a batch boundary, its sensor starts a
new run, which picks up from the stored offsets. At the end every row is in the dataset exactly once,
the first runs were canceled after recording one materialization per micro-batch, and the new runs
carry on.
"""

from __future__ import annotations

import threading
import time

import dagster as dg
import pyarrow.dataset as ds
import sqlalchemy as sa

from assets.keys import clean, sink_assets, topic_key
from integrations.loading import load_connector
from tests.e2e.daemon_pipeline import insert, instance_of, make_table, mats_of_run, start_services, wait_for
from tests.helpers import write_connector

N = 400
CONT = {"max_run_seconds": 600, "idle_sleep_seconds": 0.2}


def test_terminated_continuous_runs_restart_and_deliver_every_row_once(kafka, pg_url, tmp_path, unique):
    topic = f"cont{unique}.items"
    offsets = f"headrace-offsets-test-{unique}"
    kafka.ensure_topic(topic)
    make_table(pg_url, "items")
    conn, lake = tmp_path / "connectors", tmp_path / "lake"
    src, pqs = f"cont-src-{unique}", f"cont-pq-{unique}"
    write_connector(conn, {"name": src, "type": "sql_source", "connection_url": pg_url, "mode": "incrementing",
                           "incrementing_column": "id", "tables": ["items"], "topic_prefix": f"cont{unique}.",
                           "key_columns": ["id"], "continuous": CONT})
    write_connector(conn, {"name": pqs, "type": "parquet_sink", "topics": [topic], "path": str(lake),
                           "value_schema": {"id": "int64", "v": "string"}, "continuous": CONT})
    services = start_services(tmp_path, conn, {"HEADRACE_HOME": str(tmp_path), "HEADRACE_OFFSETS_TOPIC": offsets})
    jobs = [f"{clean(src)}_continuous_job", f"{clean(pqs)}_continuous_job"]
    done = threading.Event()

    def ids() -> list[int]:  # the published files only (the folder exists before its first file)
        files = sorted(str(f) for f in (lake / topic).rglob("*.parquet"))
        return sorted(ds.dataset(files, format="parquet").to_table().column("id").to_pylist()) if files else []

    def stream() -> None:  # 400 rows, 4 per transaction, one transaction every 50 ms
        eng = sa.create_engine(pg_url)
        for lo in range(1, N + 1, 4):
            insert(pg_url, "items", range(lo, lo + 4), eng)
            time.sleep(0.05)
        eng.dispose()
        done.set()

    writer = threading.Thread(target=stream, daemon=True)
    instance = None
    try:
        instance = instance_of(services)

        def started(job: str) -> dg.DagsterRun | None:
            return next(iter(instance.get_runs(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.STARTED]))),
                        None)

        first = [wait_for(f"a run of {j}", lambda j=j: started(j), 240) for j in jobs]
        writer.start()
        wait_for("rows streaming into Parquet", lambda: True if len(ids()) >= 40 else None, 120)
        assert not done.is_set(), "the stream ended before the runs were terminated; make it longer"
        for run in first:  # mid-stream
            assert instance.run_launcher.terminate(run.run_id)
        for run in first:
            wait_for(f"{run.job_name} to stop", lambda r=run: True if instance.get_run_by_id(r.run_id).is_finished
                     else None, 120)
        second = [wait_for(f"a new run of {j}", lambda j=j, r=r: (s := started(j)) and s.run_id != r.run_id and s
                           or None, 120) for j, r in zip(jobs, first, strict=True)]
        writer.join(120)
        wait_for(f"all {N} rows in Parquet", lambda: True if len(ids()) >= N else None, 180)
        for run in first:
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
        topic_asset = topic_key(topic).to_user_string()
        sink_asset = sink_assets(load_connector(conn / f"{pqs}.yaml"))[0].key.to_user_string()
        src_mats = mats_of_run(instance, first[0].run_id)[topic_asset]
        sink_mats = mats_of_run(instance, first[1].run_id).get(sink_asset, [])
        assert len(src_mats) > 1 and all(m["rows"] > 0 for m in src_mats)  # one per micro-batch
        assert all(m["rows"] > 0 for m in sink_mats)
        assert all(instance.get_run_by_id(r.run_id).status == dg.DagsterRunStatus.STARTED for r in second)
        for r in second:
            assert r.tags["headrace/connector"] in (src, pqs) and r.tags["headrace/mode"] == "continuous"
    finally:
        done.wait(60)
        for j in jobs if instance is not None else []:
            for r in instance.get_runs(dg.RunsFilter(job_name=j, statuses=[dg.DagsterRunStatus.STARTED])):
                instance.run_launcher.terminate(r.run_id)
        services.stop()
        kafka.delete_topics([topic, offsets])
    assert ids() == list(range(1, N + 1))  # every row exactly once
