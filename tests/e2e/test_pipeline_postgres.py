"""End to end through Dagster: PostgreSQL table → Kafka topic → Parquet dataset, exact rows."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import dagster as dg
import sqlalchemy as sa

from assets.definitions import build_definitions
from assets.sensors import REQUEST_TAG
from integrations.offsets import OffsetStore
from tests.helpers import read_dataset, read_topic, write_connector

N = 10_000
T0 = dt.datetime(2024, 3, 30, 23, 0, tzinfo=dt.UTC)  # spans the EU DST switch of 2024-03-31


def _seed(url: str) -> None:
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("""CREATE TABLE items (id bigint PRIMARY KEY, qty integer, price numeric(12,2),
                              label text, updated_at timestamptz NOT NULL)"""))
        c.execute(sa.text("""INSERT INTO items
            SELECT g, CASE WHEN g % 17 = 0 THEN NULL ELSE g % 1000 END,
                   CASE WHEN g % 19 = 0 THEN NULL ELSE ((g * 37) % 10000000) / 100.0 END,
                   CASE WHEN g % 23 = 0 THEN NULL WHEN g % 2 = 0 THEN 'Zoë 東京 🚀 ' || g ELSE 'e\u0301-' || g END,
                   timestamptz '2024-03-30 23:00:00+00' + (g || ' seconds')::interval
            FROM generate_series(1, CAST(:n AS bigint)) g"""), {"n": N})
    eng.dispose()


def _table_rows(url: str) -> dict[int, dict]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(sa.text("SELECT id, qty, price, label, updated_at FROM items")).mappings().all()
    eng.dispose()
    return {r["id"]: dict(r) for r in rows}


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict | None = None
                 ) -> dict[str, dict]:
    job = defs.resolve_implicit_global_asset_job_def()
    res = job.execute_in_process(instance=instance, tags=tags or {})
    assert res.success
    out = {}
    for ev in res.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        out["/".join(mat.asset_key.path)] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_postgres_to_parquet_through_dagster(pg_url, kafka, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    _seed(pg_url)
    topic = f"e2e-{unique}.items"
    lake = tmp_path / "lake"
    connectors = tmp_path / "connectors"
    write_connector(connectors, {
        "name": f"e2e-src-{unique}", "type": "sql_source", "connection_url": pg_url,
        "mode": "timestamp+incrementing", "timestamp_column": "updated_at", "incrementing_column": "id",
        "tables": ["items"], "topic_prefix": f"e2e-{unique}.", "key_columns": ["id"], "batch_max_rows": 3000,
    })
    write_connector(connectors, {
        "name": f"e2e-sink-{unique}", "type": "parquet_sink", "topics": [topic], "path": str(lake),
        "flush_size": 4000,
        "value_schema": {"id": "int64", "qty": "int32", "price": "decimal(12,2)", "label": "string",
                         "updated_at": "timestamp[us, tz=UTC]"},
    })
    defs = build_definitions(connectors)
    try:
        with dg.instance_for_test() as instance:
            meta = _materialize(defs, instance)
            topic_key = "kafka/" + topic.replace(".", "_").replace("-", "_")
            assert meta[topic_key]["rows"] == N
            sink_key = [k for k in meta if k.startswith("parquet/")][0]
            assert meta[sink_key]["rows"] == N
            assert meta[sink_key]["offsets"] == {"0": [0, N]}
            assert meta[sink_key]["lag"] == 0

            # Exact equality, column by column, row by row.
            expected = _table_rows(pg_url)
            got = read_dataset(lake / topic).to_pylist()
            assert len(got) == N
            got_by_id = {r["id"]: r for r in got}
            diff = [(got_by_id[i], expected[i]) for i in expected if got_by_id.get(i) != expected[i]][:3]
            assert not diff, [{k: (a[k], b[k]) for k in b if a[k] != b[k]} for a, b in diff]
            assert isinstance(got[0]["price"], decimal.Decimal | None)
            assert sorted(f.name for f in (lake / topic / "partition=0").iterdir()) == [
                f"{topic}+0+{o:020d}.parquet" for o in (0, 4000, 8000)]

            # Keys are the id as JSON.
            records = read_topic(kafka, topic)
            assert sorted(int(k) for k, _v, _p, _o in records) == list(range(1, N + 1))

            # 500 inserts + 500 updates; the sensor sees them; the next micro-batch moves exactly those.
            eng = sa.create_engine(pg_url)
            with eng.begin() as c:
                c.execute(sa.text("""INSERT INTO items SELECT g, 1, 9.99, 'new ' || g, now()
                                     FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g"""), {"a": N + 1, "b": N + 500})
                c.execute(sa.text("""UPDATE items SET qty = -qty, label = 'upd', updated_at = now()
                                     WHERE id % 20 = 0"""))
            eng.dispose()
            changed = {i for i in range(N + 1, N + 501)} | {i for i in range(20, N + 1, 20)}
            assert len(changed) == 1000

            src_sensor = defs.get_sensor_def(f"e2e_src_{unique}_sensor")
            ctx = dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]})
            req = src_sensor(ctx)
            assert len(req.run_requests) == 1
            assert req.run_requests[0].tags[REQUEST_TAG].startswith(f"e2e-src-{unique}:")

            meta2 = _materialize(defs, instance)
            assert meta2[topic_key]["rows"] == 1000
            assert meta2[sink_key]["rows"] == 1000
            assert meta2[sink_key]["offsets"] == {"0": [N, N + 1000]}
            new_records = read_topic(kafka, topic)[N:]
            assert sorted(int(k) for k, *_ in new_records) == sorted(changed)
            after = _table_rows(pg_url)
            full = read_dataset(lake / topic)
            assert full.num_rows == N + 1000
            latest = {}
            for r in full.to_pylist():  # the dataset is an append log: the last version per id wins
                latest[r["id"]] = r
            assert latest == after

            # Nothing new: the source sensor skips and a run moves nothing.
            assert isinstance(src_sensor(ctx), dg.SkipReason)
            meta3 = _materialize(defs, instance)
            assert meta3 == {}  # nothing moved: the topic is only observed, so the sink's step is skipped
            assert read_dataset(lake / topic).num_rows == N + 1000
    finally:
        kafka.delete_topics([topic])
        OffsetStore(kafka).reset(f"e2e-src-{unique}")


def test_sink_sensor_requests_exact_ranges(kafka, topic_factory, tmp_path, unique, monkeypatch):
    """The sink sensor tags the run with [start, end) per partition and never commits."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("sensor", partitions=2)
    p = kafka.producer()
    for i in range(10):
        p.produce(topic, json.dumps({"id": i}), partition=i % 2)
    assert p.flush(30) == 0
    connectors = tmp_path / "c"
    write_connector(connectors, {"name": f"sink-{unique}", "type": "parquet_sink", "topics": [topic],
                                 "path": str(tmp_path / "lake")})
    defs = build_definitions(connectors)
    sensor = defs.get_sensor_def(f"sink_{unique}_sensor")
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]})
        res = sensor(ctx)
        assert len(res.run_requests) == 1
        assert json.loads(res.run_requests[0].tags["headrace/ranges"]) == [[topic, 0, 0, 5], [topic, 1, 0, 5]]
        # The sensor committed nothing: a second evaluation asks for the same ranges under the same key.
        again = sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))
        assert again.run_requests[0].run_key == res.run_requests[0].run_key
        # Run with those tags: exactly 10 rows, then the sensor has nothing to request.
        job = defs.resolve_implicit_global_asset_job_def()
        out = job.execute_in_process(instance=instance, tags=res.run_requests[0].tags)
        assert out.success
        rows = read_dataset(tmp_path / "lake" / topic).column("id").to_pylist()
        assert sorted(rows) == list(range(10))
        idle = sensor(dg.build_sensor_context(instance=instance, resources={"kafka": defs.resources["kafka"]}))
        assert isinstance(idle, dg.SkipReason) and idle.skip_message == "no lag"
