"""The CDC connector in Dagster: a source asset with lineage source table → topic, and the sensor's cheap
check of the slot's pending WAL; heartbeats free WAL written by other tables."""

from __future__ import annotations

import dagster as dg

from assets.definitions import build_definitions
from integrations.sources.postgres_cdc_checks import cdc_fingerprint, slot_status
from tests.integration.cdc_helpers import Cdc, cdc_fixture  # noqa: F401 (fixture)


def test_definitions_lineage_and_sensor_check(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)", "CREATE TABLE other (id int PRIMARY KEY)")
    config = cdc.config(table_include=[r"public\.orders"])
    defs = build_definitions(configs=[config])
    graph = defs.resolve_asset_graph()
    topic_keys = [k for k in graph.get_all_asset_keys() if "kafka" in (graph.get(k).kinds or set())]
    assert len(topic_keys) == 1 and topic_keys[0].path[-1] == f"{cdc.prefix}_public_orders"
    assert graph.get(topic_keys[0]).metadata["topic"] == f"{cdc.prefix}.public.orders"
    parents = graph.get(topic_keys[0]).parent_keys
    assert [p.path[-1] for p in parents] == [f"{next(iter(parents)).path[1]}__public__orders"]
    assert isinstance(defs.get_sensor_def(f"{cdc.name}_sensor"), dg.SensorDefinition)
    assert cdc_fingerprint(config).startswith("no-slot:")  # the first run creates the slot
    cdc.run(table_include=[r"public\.orders"])
    # the server is shared: other databases write WAL too, so "caught up" is a position, not None
    after_run = cdc_fingerprint(config)
    cdc.sql("INSERT INTO orders VALUES (1, 'a')")
    pending = cdc_fingerprint(config)
    assert pending is not None and pending != after_run
    assert pending.split("..")[0] == (after_run or pending).split("..")[0]  # the slot has not moved
    cdc.run(table_include=[r"public\.orders"])
    assert (cdc_fingerprint(config) or "..").split("..")[0] != pending.split("..")[0]  # it moved past the insert

def test_heartbeat_frees_wal_of_other_tables(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE orders (id int PRIMARY KEY)", "CREATE TABLE busy (id int PRIMARY KEY, v text)")
    cdc.overrides.update(table_include=[r"public\.orders"], snapshot_mode="never")
    cdc.run()
    config = cdc.config()
    start = slot_status(config)["confirmed_lsn"]
    cdc.sql("INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
    busy_end = cdc.query("SELECT pg_current_wal_flush_lsn()::text")[0][0]
    assert slot_status(config)["lag_bytes"] > 4_000_000
    assert cdc.run().rows == 0  # heartbeat off (Debezium's default): the slot keeps that WAL
    assert slot_status(config)["confirmed_lsn"] == start
    assert cdc.run(heartbeat_interval=1).rows == 0  # a heartbeat stores the position and advances the slot
    moved = slot_status(config)["confirmed_lsn"]
    assert cdc.query(f"SELECT '{moved}'::pg_lsn >= '{busy_end}'::pg_lsn")[0][0]  # past all of the busy WAL
    cdc.sql("INSERT INTO orders VALUES (7)")
    cdc.run(heartbeat_interval=1)
    assert [v["op"] for _k, v in __import__("tests.integration.cdc_helpers", fromlist=["x"]).envelopes(
        cdc.kafka, cdc.topic("orders"))] == ["c"]


def test_materialization_metadata(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)", "INSERT INTO orders VALUES (1, 'a'), (2, 'b')")
    config = cdc.config(table_include=[r"public\.orders"])
    cdc.topics.update(f"{cdc.prefix}.public.{t}" for t in ("orders", "snapshot", "heartbeat"))
    defs = build_definitions(configs=[config])
    job = defs.resolve_implicit_global_asset_job_def()

    def metadata() -> dict:
        with dg.instance_for_test() as instance:
            res = job.execute_in_process(instance=instance)
            assert res.success
            mats = [e.event_specific_data.materialization for e in res.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION"]
            assert len(mats) == 1
            return {k: v.value for k, v in mats[0].metadata.items()}

    first = metadata()  # the snapshot
    assert first["events_per_op"] == {"r": 2} and first["rows"] == 2
    cdc.sql("UPDATE orders SET v = 'c' WHERE id = 1", "DELETE FROM orders WHERE id = 2",
            "INSERT INTO orders VALUES (3, 'd')")
    second = metadata()
    assert second["events_per_op"] == {"c": 1, "d": 1, "u": 1}
    assert second["rows"] == 4  # + the tombstone
    lo, hi = second["lsn_range"]
    assert lo == first["lsn_range"][1] and hi != lo
    assert isinstance(second["slot_lag_bytes"], int) and second["slot_retained_bytes"] >= second["slot_lag_bytes"]


def test_slot_lag_check_fails_past_its_threshold_and_passes_once_caught_up(cdc: Cdc) -> None:
    from assets.cdc_checks import SLOT_LAG_CHECK, slot_lag_checks

    cdc.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)")
    key = dg.AssetKey(["topic"])

    def evaluate(**extra: object) -> dg.AssetCheckEvaluation:
        config = cdc.config(table_include=[r"public\.orders"], **extra)
        defs = dg.Definitions(assets=[dg.AssetSpec(key)], asset_checks=slot_lag_checks(config, [key]),
                              jobs=[dg.define_asset_job("checks", selection=dg.AssetSelection.checks_for_assets(key))])
        result = defs.resolve_job_def("checks").execute_in_process()
        assert result.success
        (ev,) = result.get_asset_check_evaluations()
        assert ev.check_name == SLOT_LAG_CHECK
        return ev

    before = evaluate()
    assert before.passed and "does not exist yet" in before.metadata["description"].value
    cdc.run(table_include=[r"public\.orders"])
    cdc.sql("INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g")
    (inserted,) = cdc.query("SELECT pg_current_wal_flush_lsn()::text")[0]  # the insert is flushed by now
    behind = evaluate(slot_lag_max_bytes=10_000_000)
    lag = behind.metadata["lag_bytes"].value
    assert not behind.passed and lag > 10_000_000
    assert "past the threshold of 10,000,000" in behind.metadata["description"].value
    cdc.run(table_include=[r"public\.orders"])
    # the server is shared (other tests write WAL too, and the slot holds it all): caught up means the
    # slot moved past where the WAL was when it was behind
    caught_up = evaluate(slot_lag_max_bytes=1 << 40)
    assert caught_up.passed, caught_up.metadata["description"].value

    def lsn(text: str) -> int:
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) + int(lo, 16)

    assert lsn(caught_up.metadata["confirmed_lsn"].value) >= lsn(inserted)


def test_each_topic_shows_its_own_tables_events(cdc: Cdc) -> None:
    """A connector capturing two tables: each topic's materialization counts the events of its table,
    not the connector's."""
    cdc.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)", "CREATE TABLE items (id int PRIMARY KEY)",
            "INSERT INTO orders VALUES (1, 'a'), (2, 'b')", "INSERT INTO items SELECT generate_series(1, 5)")
    config = cdc.config(table_include=[r"public\.orders", r"public\.items"])
    cdc.topics.update(f"{cdc.prefix}.public.{t}" for t in ("orders", "items", "snapshot", "heartbeat"))
    defs = build_definitions(configs=[config])
    job = defs.resolve_implicit_global_asset_job_def()

    def metadata() -> dict[str, dict]:
        with dg.instance_for_test() as instance:
            res = job.execute_in_process(instance=instance)
            assert res.success
            mats = [e.event_specific_data.materialization for e in res.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION"]
            return {m.asset_key.path[-1].rsplit("_", 1)[-1]: {k: v.value for k, v in m.metadata.items()} for m in mats}

    first = metadata()  # the snapshot
    assert {t: m["events_per_op"] for t, m in first.items()} == {"orders": {"r": 2}, "items": {"r": 5}}
    cdc.sql("UPDATE orders SET v = 'c' WHERE id = 1", "DELETE FROM items WHERE id = 2",
            "INSERT INTO items VALUES (6)", "INSERT INTO items VALUES (7)")
    second = metadata()
    assert {t: m["events_per_op"] for t, m in second.items()} == {"orders": {"u": 1}, "items": {"c": 2, "d": 1}}
