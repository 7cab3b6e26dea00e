"""``make demo``: seed a SQLite shop, start local Kafka, materialize every demo asset through Dagster.

Run again with no new source rows, it moves nothing and the dataset is unchanged. Set
``HEADRACE_DEMO_MORE=N`` to add N new orders before the run.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
from pathlib import Path

from integrations.config import default_connectors_dir, load_folder, resolve_path
from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka, headrace_home

COUNTRIES = ["DE", "FR", "JP", "BR", "US", "IN", "NG", "SE"]


def seed_shop(path: Path, customers: int = 1000, orders: int = 20000) -> tuple[int, int]:
    """Create the shop database once; add ``HEADRACE_DEMO_MORE`` orders on later runs. Returns row counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    with con:
        con.execute("""CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                       email TEXT, country TEXT, created_at TIMESTAMP NOT NULL)""")
        con.execute("""CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL
                       REFERENCES customers(id), amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL,
                       created_at TIMESTAMP NOT NULL)""")
        rnd = random.Random(42)
        t0 = dt.datetime(2025, 1, 1)
        if con.execute("SELECT count(*) FROM customers").fetchone()[0] == 0:
            con.executemany("INSERT INTO customers VALUES (?,?,?,?,?)", [
                (i, f"Customer {i} – Zoë 東京", f"c{i}@example.com" if i % 7 else None, rnd.choice(COUNTRIES),
                 (t0 + dt.timedelta(hours=i)).isoformat(" ")) for i in range(1, customers + 1)])
        have = con.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0]
        more = orders if have == 0 else int(os.environ.get("HEADRACE_DEMO_MORE", "0"))
        con.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", [
            (i, rnd.randint(1, customers), f"{rnd.randint(100, 99999) / 100:.2f}",
             rnd.choice(["new", "paid", "shipped"]), (t0 + dt.timedelta(minutes=i)).isoformat(" "))
            for i in range(have + 1, have + more + 1)])
        counts = (con.execute("SELECT count(*) FROM customers").fetchone()[0],
                  con.execute("SELECT count(*) FROM orders").fetchone()[0])
    con.close()
    return counts


def run_demo() -> int:
    """Seed, start Kafka, materialize everything, print what moved and where the files are."""
    home = headrace_home()
    os.environ.setdefault("HEADRACE_HOME", str(home))
    os.environ.setdefault("DAGSTER_HOME", str(home / "dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    from integrations.kafka.local import REPO_ROOT

    (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    customers, orders = seed_shop(home / "demo" / "shop.db")
    print(f"shop database: {home / 'demo' / 'shop.db'} ({customers} customers, {orders} orders)")
    if not KafkaSettings.from_env().is_external:
        print(LocalKafka().up())

    import dagster as dg

    from assets.definitions import build_definitions

    folder = default_connectors_dir()
    defs = build_definitions(folder)
    configs = load_folder(folder)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance)
    if not result.success:
        print("demo run failed; see the Dagster logs above")
        return 1
    print("\nrows moved per connector:")
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        rows = mat.metadata["rows"].value
        print(f"  {'/'.join(mat.asset_key.path):45s} {rows:>8} rows")
    print("\nParquet datasets:")
    for c in configs:
        if getattr(c, "type", "") == "parquet_sink":
            for topic in c.topics:
                folder = resolve_path(c.path) / topic
                files = sorted(folder.rglob("*.parquet")) if folder.exists() else []
                print(f"  {folder}  ({len(files)} files)")
    print(f"\nDagster UI with this history: make dev  (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return 0
