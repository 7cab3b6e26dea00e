"""``make demo``: seed a SQLite shop, start local Kafka, materialize every demo asset through Dagster.

Run again with no new source rows, it moves nothing and the dataset is unchanged. Set
``HEADRACE_DEMO_MORE=N`` to add N new orders before the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import sqlite3
import sys
from collections.abc import Iterator
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


def data_locations(configs: list) -> dict:
    """``{asset key: where its data is}``: the Kafka topic, the Parquet dataset's folder (and file count),
    or the warehouse table (database, table and its row count)."""
    from assets.keys import sink_assets, topic_key
    from integrations.config import TableSinkConfig, redact_url, resolve_env

    out = {}
    for c in configs:
        if not hasattr(c, "topics"):  # a source: its topics (a file source has one)
            for name in getattr(c, "source_names", None) or [""]:
                out[topic_key(c.topic_for(name))] = f"Kafka topic {c.topic_for(name)}"
            continue
        for a in sink_assets(c):
            if isinstance(c, TableSinkConfig):
                table = c.table_for(a.targets[0]) if a.targets else c.table_name_format
                url = resolve_env(c.connection_url)
                db = f"DuckDB {url.removeprefix('duckdb:///')}" if url.startswith("duckdb:///") else redact_url(url)
                out[a.key] = f"{db}, table {table}{_table_rows(url, table)}"
            else:
                folder = resolve_path(c.path) / (a.targets[0] if a.targets else "")
                files = sorted(folder.rglob("*.parquet")) if folder.exists() else []
                out[a.key] = f"Parquet {folder} ({len(files)} file{'' if len(files) == 1 else 's'})"
    return out


def _table_rows(url: str, table: str) -> str:
    """`` (<n> rows in the table)`` for a DuckDB table; empty for other databases or on any error."""
    if not url.startswith("duckdb:///"):
        return ""
    try:
        import duckdb

        with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as con:
            count = con.execute('SELECT count(*) FROM "' + table.replace('"', '""') + '"').fetchone()[0]
        return f" ({count} rows in the table)"
    except Exception:  # noqa: BLE001 - the count is a courtesy
        return ""


@contextlib.contextmanager
def quiet_output(log_path: Path) -> Iterator[None]:
    """Send Dagster's event stream (its console logger writes to ``sys.stderr``), Python warnings,
    every log record, and whatever writes to file descriptor 2 (librdkafka clients made without the
    ``headrace.kafka.client`` logger, e.g. local Kafka's start-up probes, whose "coordinator load in
    progress" lines a fresh broker causes) to ``log_path`` instead of the terminal, for the block."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    console = [h for h in root.handlers if type(h) is logging.StreamHandler]
    with log_path.open("w", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for h in console:
            root.removeHandler(h)
        root.addHandler(handler)
        sys.stderr.flush()
        saved_fd = os.dup(2)
        os.dup2(stream.fileno(), 2)  # librdkafka clients made without our logger write to fd 2 directly
        try:
            with contextlib.redirect_stderr(stream):
                yield
        finally:
            stream.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            root.removeHandler(handler)
            for h in console:
                root.addHandler(h)


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
    log_path = home / "logs" / "demo.log"
    try:
        with quiet_output(log_path):
            if not KafkaSettings.from_env().is_external:
                print(LocalKafka().up(), flush=True)
            print("materializing every demo asset through Dagster ...", flush=True)
            import dagster as dg

            from assets.definitions import build_definitions

            folder = default_connectors_dir()
            defs = build_definitions(folder)
            configs = load_folder(folder)
            job = defs.resolve_implicit_global_asset_job_def()
            with dg.DagsterInstance.get() as instance:
                result = job.execute_in_process(  # a step's error is raised: the CLI reports it in one line
                    instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "DEBUG"}}}})
    except BaseException:
        print(f"Dagster's event log of this run: {log_path}")
        raise
    where = data_locations(configs)
    moved = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        moved[mat.asset_key] = mat.metadata["rows"].value
    print("\nrows moved, per asset (and where the data is):")
    # an asset with nothing new is only observed (or its step skipped): it moved 0 rows
    for key in sorted(set(where) | set(moved), key=lambda k: k.path):
        print(f"  {'/'.join(key.path):45s} {moved.get(key, 0):>8} rows  → {where.get(key, '?')}")
    print(f"\nDagster's event log of this run (DEBUG): {log_path}")
    print(f"Dagster UI with this history: run `make dev`, then open http://127.0.0.1:3000 "
          f"(DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return 0
