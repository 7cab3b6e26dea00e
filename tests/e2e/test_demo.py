"""`headrace demo` (what `make demo` runs): moves the shop, and moves nothing when run again."""

from __future__ import annotations

import contextlib
import re
import uuid
from decimal import Decimal

import duckdb

from tests.conftest import run_cli
from tests.helpers import read_dataset


def test_demo_moves_shop_then_nothing_on_rerun(kafka, tmp_path):
    offsets_topic = f"headrace-offsets-test-{uuid.uuid4().hex[:8]}"
    env = {"HEADRACE_HOME": str(tmp_path), "HEADRACE_OFFSETS_TOPIC": offsets_topic,
           "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    topics = ["shop.customers", "shop.orders"]
    groups = ["headrace-shop-orders-lake", "headrace-shop-customers-lake"]
    _forget(kafka, topics, groups)
    try:
        first = run_cli("demo", env=env, check=True, timeout=300)
        moved = _moved(first.stdout)
        assert {k: rows for k, (rows, _where) in moved.items()} == {
            "kafka/shop_customers": 1000, "kafka/shop_orders": 20000,
            "parquet/shop_customers_lake/shop_customers_lake__shop_customers": 1000, "parquet/shop_orders_lake/shop_orders_lake__shop_orders": 20000,
            "warehouse/duckdb_warehouse/duckdb_warehouse__orders": 20000}
        lake = tmp_path / "demo" / "lake"
        warehouse = tmp_path / "demo" / "warehouse.duckdb"
        assert moved["kafka/shop_orders"][1] == "Kafka topic shop.orders"
        assert moved["parquet/shop_orders_lake/shop_orders_lake__shop_orders"][1] == f"Parquet {lake / 'shop.orders'} (1 file)"
        assert moved["warehouse/duckdb_warehouse/duckdb_warehouse__orders"][1] == (
            f"DuckDB {warehouse}, table orders (20000 rows in the table)")
        orders = read_dataset(lake / "shop.orders")
        assert orders.num_rows == 20000 and sorted(orders.column("id").to_pylist()) == list(range(1, 20001))
        assert str(orders.schema.field("amount").type) == "decimal128(12, 2)"
        files = {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")}
        table = _warehouse(warehouse)
        assert table["count"] == 20000 and table["ids"] == (1, 20000) and table["distinct"] == 20000
        assert table["amount_type"] == "DECIMAL(12,2)"
        assert table["total"] == sum(orders.column("amount").to_pylist(), Decimal(0))  # the same amounts

        second = run_cli("demo", env=env, check=True, timeout=300)
        assert {k: rows for k, (rows, _w) in _moved(second.stdout).items()} == dict.fromkeys(moved, 0)
        assert {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")} == files  # dataset unchanged
        assert _warehouse(warehouse) == table  # table unchanged
    finally:
        _forget(kafka, [*topics, offsets_topic], groups)


def _moved(stdout: str) -> dict[str, tuple[int, str]]:
    """The demo's "rows moved, per asset" lines as {asset: (rows, where the data is)}."""
    return {m.group(1): (int(m.group(2)), m.group(3))
            for m in re.finditer(r"^  (\S+)\s+(\d+) rows  → (.+)$", stdout, re.M)}


def _warehouse(path) -> dict:
    """Row count, id range, distinct ids, amount type and total of the demo's DuckDB orders table."""
    with duckdb.connect(str(path), read_only=True) as con:
        count, lo, hi, distinct, total = con.execute(
            "SELECT count(*), min(id), max(id), count(DISTINCT id), sum(amount) FROM orders").fetchone()
        typ = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' "
                          "AND column_name = 'amount'").fetchone()[0]
    return {"count": count, "ids": (lo, hi), "distinct": distinct, "amount_type": typ, "total": total}


def _forget(kafka, topics, groups):
    kafka.delete_topics(topics)
    admin = kafka.admin()  # keep the client alive until its futures resolve
    for f in admin.delete_consumer_groups(groups, request_timeout=10).values():
        with contextlib.suppress(Exception):  # the group may not exist yet
            f.result(timeout=30)
