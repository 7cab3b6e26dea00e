"""`headrace demo` (what `make demo` runs): moves the shop, and moves nothing when run again."""

from __future__ import annotations

import contextlib
import re
import uuid

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
        assert _moved(first.stdout) == {
            "kafka/shop_customers": 1000, "kafka/shop_orders": 20000,
            "parquet/shop_customers_lake/shop_customers": 1000, "parquet/shop_orders_lake/shop_orders": 20000}
        lake = tmp_path / "demo" / "lake"
        orders = read_dataset(lake / "shop.orders")
        assert orders.num_rows == 20000 and sorted(orders.column("id").to_pylist()) == list(range(1, 20001))
        assert str(orders.schema.field("amount").type) == "decimal128(12, 2)"
        files = {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")}

        second = run_cli("demo", env=env, check=True, timeout=300)
        assert _moved(second.stdout) == dict.fromkeys(_moved(first.stdout), 0)
        assert {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")} == files  # dataset unchanged
    finally:
        _forget(kafka, [*topics, offsets_topic], groups)


def _moved(stdout: str) -> dict[str, int]:
    """The demo's "rows moved per connector" table as {asset: rows}."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\S+)\s+(\d+) rows$", stdout, re.M)}


def _forget(kafka, topics, groups):
    kafka.delete_topics(topics)
    admin = kafka.admin()  # keep the client alive until its futures resolve
    for f in admin.delete_consumer_groups(groups, request_timeout=10).values():
        with contextlib.suppress(Exception):  # the group may not exist yet
            f.result(timeout=30)
