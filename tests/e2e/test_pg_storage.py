"""The multi-node Dagster instance: infra/dagster/dagster-postgres.yaml (the file docs/deploy.md shows),
loaded as it is, with its run, event-log and schedule storage on the test PostgreSQL.

A code server, the webserver and the daemon share the instance through PostgreSQL only. Then:

- a sink's sensor (started through the CLI, as an operator would) requests a run; the daemon launches
  it and its run worker writes every record exactly once; the sink has ``tasks_max: 2`` and runs with
  the multiprocess executor;
- a backfill of two daily partitions of a time-partitioned sink, launched through GraphQL, completes;
  each day's folder holds exactly that day's records;
- the runs, their events and the sensor's ticks are rows in PostgreSQL, and $DAGSTER_HOME holds no
  SQLite storage.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import sqlalchemy as sa
import yaml

from tests.e2e.dagster_ui import ROOT, DagsterServices
from tests.helpers import produce_all, write_connector

CONFIG = ROOT / "infra" / "dagster" / "dagster-postgres.yaml"
DAYS = ["2025-03-01", "2025-03-02"]
PER_DAY = 600
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status runs(limit: 10) { runId status } } ... on PythonError { message } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }"""


def _gql(dev: DagsterServices, query: str, variables: dict | None = None) -> dict:
    """``dev.graphql``, with the webserver's answer in the failure when it is an HTTP error."""
    try:
        return dev.graphql(query, variables)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"GraphQL HTTP {e.code}: {e.read()[-6000:]!r}") from None


def _wait(what: str, fn, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := fn()) is not None:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_postgres_storage_sensor_and_backfill(kafka, topic_factory, pg_url, tmp_path, unique):
    topic = topic_factory("pgst", partitions=2)
    start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    records = []
    for i in range(2 * PER_DAY):
        t = start + dt.timedelta(seconds=i * 86_400 // PER_DAY)
        records.append({"partition": i % 2, "value": orjson.dumps({"id": i, "created_at": t.isoformat()})})
    produce_all(kafka, topic, records)
    dagster_home, connectors, lake = tmp_path / "dagster", tmp_path / "connectors", tmp_path / "lake"
    dagster_home.mkdir()
    shutil.copyfile(CONFIG, dagster_home / "dagster.yaml")  # the file as it is, nothing changed
    stream, daily = f"pgs-{unique}", f"pgd-{unique}"
    write_connector(connectors, {"name": stream, "type": "parquet_sink", "topics": [topic],
                                 "path": str(lake / "stream"), "flush_size": 250, "poll_interval": 1,
                                 "tasks_max": 2})
    write_connector(connectors, {"name": daily, "type": "parquet_sink", "topics": [topic],
                                 "path": str(lake / "daily"), "partitioner": "time", "timestamp_field": "created_at",
                                 "partition_duration": "daily", "timezone": "UTC", "partition_start_date": "2025-03-01",
                                 # the record times (2025) lag the Kafka timestamps (now): widen the lookup
                                 "rebuild_slack": 20 * 365 * 86400,
                                 "value_schema": {"id": "int64", "created_at": "timestamp[us, tz=UTC]"}})
    # psycopg2, as docs/deploy.md says: SQLAlchemy 2.1 picks psycopg 3 for postgresql://, and the webserver's
    # backfill launch then failed here with "the connection is closed" (dagster-postgres 0.29)
    storage_url = pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_URL": storage_url,
           "HEADRACE_HOME": str(tmp_path / "home"), "HEADRACE_CONNECTORS_DIR": str(connectors),
           "HEADRACE_EXECUTOR": "multiprocess"}
    (tmp_path / "logs").mkdir()
    dev = DagsterServices(env, tmp_path / "logs")
    try:
        dev.start_code_server()
        dev.start_webserver()
        dev.wait_ready(timeout=180)
        sensor = f"{stream.replace('-', '_')}_sensor"
        started = subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "start", sensor,
                                  "-w", str(dev.workspace)], env=env, cwd=ROOT, capture_output=True, text=True,
                                 timeout=180)
        assert started.returncode == 0, started.stderr[-2000:]
        key = {"path": ["parquet", daily.replace("-", "_"), f"{daily.replace('-', '_')}__{topic.replace('-', '_')}"]}
        params = {"assetSelection": [key], "partitionNames": DAYS, "title": "pg storage test"}
        launched = _gql(dev, BACKFILL, {"p": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        dev.start_daemon()

        def backfill_done():
            got = _gql(dev, BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            assert got["status"] not in ("FAILED", "COMPLETED_FAILED", "CANCELED", "FAILING"), (got, dev.tail("daemon"))
            return got if got["status"] in ("COMPLETED_SUCCESS", "COMPLETED") else None

        def sensor_run_done():
            runs = _gql(dev, RUNS)["runsOrError"]["results"]
            mine = [r for r in runs if r["jobName"] == f"{stream.replace('-', '_')}_job"]
            assert all(r["status"] not in ("FAILURE", "CANCELED") for r in mine), (mine, dev.tail("daemon"))
            busy = any(r["status"] not in ("SUCCESS", "FAILURE", "CANCELED") for r in mine)
            return mine if any(r["status"] == "SUCCESS" for r in mine) and not busy else None

        done = _wait("the backfill", backfill_done, 300, every=2)
        assert done["runs"] and all(r["status"] == "SUCCESS" for r in done["runs"]), done
        runs = _wait("the sensor's run", sensor_run_done, 300, every=2)
        # one run moved everything (seen once: a second request of the same ranges while the first run
        # was starting; it read nothing new, see the report of issue 15): every run succeeded
        assert all(r["status"] == "SUCCESS" for r in runs), runs
    finally:
        dev.stop()
    # every record exactly once in the streamed dataset; each day's folder holds that day's records
    ids = ds.dataset(lake / "stream" / topic, format="parquet").to_table().column("id").to_pylist()
    assert sorted(ids) == list(range(2 * PER_DAY))
    for n, day in enumerate(DAYS):
        y, m, d = day.split("-")
        folder = lake / "daily" / topic / f"year={y}" / f"month={m}" / f"day={d}"
        got = ds.dataset(folder, format="parquet").to_table().column("id").to_pylist()
        assert sorted(got) == list(range(n * PER_DAY, (n + 1) * PER_DAY)), day
    assert kafka.committed(f"headrace-{stream}", topic) == {0: PER_DAY, 1: PER_DAY}
    # the instance lives in PostgreSQL: runs, their events, the sensor's ticks; no SQLite storage
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        n_runs = c.execute(sa.text("SELECT count(*) FROM runs")).scalar()
        n_events = c.execute(sa.text("SELECT count(*) FROM event_logs")).scalar()
        n_ticks = c.execute(sa.text("SELECT count(*) FROM job_ticks")).scalar()
        n_backfills = c.execute(sa.text("SELECT count(*) FROM bulk_actions")).scalar()
    eng.dispose()
    assert n_runs >= 2 and n_events > 50 and n_ticks >= 1 and n_backfills == 1
    assert not list(dagster_home.rglob("*.db")), list(dagster_home.rglob("*.db"))
    assert yaml.safe_load(CONFIG.read_text())["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}


def test_deploy_doc_shows_the_tested_config():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert f"```yaml\n{CONFIG.read_text()}```" in doc, "docs/deploy.md must show infra/dagster/dagster-postgres.yaml as it is"
