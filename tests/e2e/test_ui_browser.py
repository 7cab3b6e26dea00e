"""Issue 16 item 4: the Dagster UI in a real browser (headless Chromium from Debian's packages).

What ``dagster dev`` runs (one code server for workspace.yaml's location, ``dagster-webserver`` on a
free port, ``dagster-daemon``) runs on a temporary DAGSTER_HOME (the project's dagster.yaml), with
copies of the demo connectors (topics under a unique prefix) plus a time-partitioned Parquet sink of
the orders topic (daily partitions of ``created_at``). The demo's SQLite shop is seeded under a
temporary HEADRACE_HOME and its source job run once, so the topics hold the shop. Then:

- the lineage ``source table → topic → dataset`` is drawn: on the orders topic's lineage page the
  nodes (label and kind tag) are visible and the drawn edges (SVG paths) join the right nodes; the
  same graph, read through the UI's GraphQL endpoint from the page, has every demo edge;
- a backfill of two partitions launched through GraphQL (``launchPartitionBackfill``) completes, the
  two partitions are materialized (GraphQL partition status, the files on disk, and the asset's
  partitions page in the browser);
- the browser console shows no error during the whole session.

Screenshots go to ``$HEADRACE_HOME/screenshots/ui-test`` (git-ignored); the test prints where.
Every process it started is stopped and its topics are deleted. See docs/ui-test.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import yaml

from headrace.demo import seed_shop
from integrations.kafka.local import headrace_home
from tests.e2e.dagster_ui import CHROMIUM, ROOT, DagsterServices, launch_chromium

PARTITIONS = ["2025-01-02", "2025-01-03"]  # the demo's orders are one a minute from 2025-01-01 00:01
DAILY = "shop-orders-daily"
#: console errors Dagster logs by itself that the test cannot avoid: (pattern, why). None so far.
ALLOWED_CONSOLE_ERRORS: list[tuple[str, str]] = []

BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack }
  ... on InvalidSubsetError { message } ... on UnauthorizedError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status numPartitions runs(limit: 10) { runId status } }
  ... on PythonError { message } } }"""
PARTITION_STATUS = """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
  partitionStats { numMaterialized numFailed numMaterializing }
  assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } } } } }"""
#: the demo's source job, run once in the instance (execute_in_process: no run worker, no step process)
SOURCE_RUN = """import dagster as dg
from assets.definitions import defs
with dg.DagsterInstance.get() as instance:
    assert defs.resolve_job_def("shop_source_job").execute_in_process(instance=instance).success"""
GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } dependedByKeys { path } kinds } }"

# the drawn graph: each node's label, text and box, each edge's first and last point (SVG user units)
DRAWN = """() => {
  const nodes = [...document.querySelectorAll('svg foreignObject')]
    .filter(f => f.querySelector('[data-tooltip]'))
    .map(f => ({label: f.querySelector('[data-tooltip]').getAttribute('data-tooltip'),
                lines: f.firstElementChild.innerText.split('\\n').map(s => s.trim()),
                x: +f.getAttribute('x'), y: +f.getAttribute('y'),
                w: +f.getAttribute('width'), h: +f.getAttribute('height')}));
  const edges = [...document.querySelectorAll('svg path[marker-end^="url(#arrow"]')].map(p => {
    const pts = (p.getAttribute('d') || '').match(/-?[0-9.]+,-?[0-9.]+/g) || [];
    return [pts[0], pts[pts.length - 1]].map(s => s && s.split(',').map(Number));
  });
  return {nodes, edges};
}"""
PAGE_GRAPHQL = """async (query) => {
  const r = await fetch('/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                     body: JSON.stringify({query})});
  return await r.json();
}"""


def _connectors(folder: Path, prefix: str) -> str:
    """Copies of the demo connectors with topics under ``prefix``, plus the daily sink; its topic."""
    folder.mkdir(parents=True)
    for f in sorted((ROOT / "connectors").glob("*.yaml")):
        c = yaml.safe_load(f.read_text())
        if "topic_prefix" in c:
            c["topic_prefix"] = prefix
        if "topics" in c:
            c["topics"] = [prefix + t.removeprefix("shop.") for t in c["topics"]]
        (folder / f.name).write_text(yaml.safe_dump(c, sort_keys=False))
    orders = yaml.safe_load((ROOT / "connectors" / "shop_orders_lake.yaml").read_text())
    daily = {
        "name": DAILY, "type": "parquet_sink", "topics": [prefix + "orders"], "path": "demo/daily",
        "partitioner": "time", "timestamp_field": "created_at", "partition_duration": "daily", "timezone": "UTC",
        "partition_start_date": "2025-01-01",
        # the record times (2025) lag the Kafka timestamps (now): widen the rebuild's lookup to cover them
        "rebuild_slack": 20 * 365 * 86400,
        "value_schema": orders["value_schema"], "group_name": "shop",
    }
    (folder / "shop_orders_daily.yaml").write_text(yaml.safe_dump(daily, sort_keys=False))
    return prefix + "orders"


def _screenshots() -> Path:
    """``$HEADRACE_HOME/screenshots/ui-test`` (default ``.headrace/``, git-ignored), emptied."""
    folder = headrace_home() / "screenshots" / "ui-test"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _wait(what: str, fn, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := fn()) is not None:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _drawn_ident(node: dict, kinds: set[str]) -> tuple[str, tuple[str, ...]]:
    """A drawn node as (label, its kind tags): the kinds among ``kinds`` that it shows as a line."""
    shown = {line.lower() for line in node["lines"]}
    return node["label"], tuple(sorted(k for k in kinds if k.lower() in shown))


def _edges_drawn(drawn: dict, kinds: set[str]) -> list[tuple[tuple, tuple]]:
    """Each drawn edge as (the node it leaves, the node it enters), nodes as ``_drawn_ident`` gives them:
    an edge starts at the right side of one node box and ends (before its arrowhead) at the left of
    another."""

    def node_at(point: list[float] | None, side: str) -> tuple:
        if not point:
            return "?", ()
        x, y = point
        for n in drawn["nodes"]:
            edge_x = n["x"] + n["w"] if side == "right" else n["x"]
            if abs(x - edge_x) <= 12 and n["y"] <= y <= n["y"] + n["h"]:
                return _drawn_ident(n, kinds)
        return "?", (f"no node at {side} end {point}",)

    return sorted((node_at(a, "right"), node_at(b, "left")) for a, b in drawn["edges"])


def test_ui_lineage_backfill_and_clean_console(kafka, tmp_path, capsys, monkeypatch):
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: the browser test needs Debian's chromium. Run "
                               "`bash infra/browser/setup.sh` (make test does).")
    from playwright.sync_api import expect, sync_playwright

    unique = uuid.uuid4().hex[:8]
    prefix = f"ui-{unique}."
    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")  # as `headrace dagster-home` does
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(str(dagster_home)):  # its SQLite storage made once, before two
        pass  # processes (dagster dev and the source job) would race to create the same tables
    topic = _connectors(tmp_path / "connectors", prefix)
    label = topic.replace("-", "_").replace(".", "_")  # the topic's label, the end of the datasets'
    offsets_topic = f"headrace-offsets-ui-{unique}"
    env = {**os.environ, "HEADRACE_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "HEADRACE_CONNECTORS_DIR": str(tmp_path / "connectors"), "HEADRACE_OFFSETS_TOPIC": offsets_topic}
    shots = _screenshots()
    seed_shop(home / "demo" / "shop.db")
    console: list[str] = []
    started = time.monotonic()
    phases: list[str] = []

    def phase(name: str) -> None:
        phases.append(f"{name} {time.monotonic() - started:.0f}s")

    (tmp_path / "logs").mkdir()
    dev = DagsterServices(env, tmp_path / "logs")
    try:
        dev.start_code_server()
        dev.start_webserver()
        # the shop → Kafka (the demo's source job, in its own process while the webserver starts)
        source = subprocess.run([sys.executable, "-c", SOURCE_RUN], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=180)
        assert source.returncode == 0, f"the source job failed:\n{source.stdout[-3000:]}\n{source.stderr[-3000:]}"
        assert kafka.watermarks(topic)[0][1] == 20000
        phase("source")
        dev.wait_ready(timeout=180)
        phase("webserver")
        dev.graphql("mutation { setNuxSeen }")  # the first-visit newsletter dialog would cover the pages

        key = {"path": ["parquet", DAILY.replace("-", "_"), f"{DAILY.replace('-', '_')}__{label}"]}
        # one run for both days (BackfillPolicy.single_run). Its rebuild step and the lag check run in the
        # run worker (the in_process choice of the default executor): a process per step costs ~10 s
        # each on this machine, and the backfill is only marked complete by the daemon's next iteration
        # (every 30 s) after the run ends. The multiprocess path is covered by test_run_worker_crash.
        params = {"assetSelection": [key], "partitionNames": PARTITIONS, "title": "browser test",
                  "runConfigData": {"execution": {"config": {"in_process": {}}}}}
        launched = dev.graphql(BACKFILL, {"p": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        # the daemon starts now: its first backfill iteration takes the backfill at once (the next come
        # every 30 s), and it launches the backfill's run from the run queue
        dev.start_daemon()

        with sync_playwright() as pw:
            browser = launch_chromium(pw, Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
            browser.on("console", lambda m: console.append(f"{m.text} ({m.location.get('url')})")
                       if m.type == "error" else None)
            browser.on("weberror", lambda e: console.append(f"uncaught: {e.error}"))
            try:
                page = browser.new_page()

                # 1. the lineage around the orders topic. First the graph as the UI reads it, through its
                # GraphQL endpoint, from the page: every demo edge source table → topic → dataset
                page.goto(f"{dev.url}/assets/kafka/{label}?view=lineage")
                answer = page.evaluate(PAGE_GRAPHQL, GRAPH)
                assert not answer.get("errors"), answer
                assets = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}

                def links(key: str, field: str) -> list[str]:
                    return sorted("/".join(d["path"]) for d in assets[key][field])

                for table, lake in (("customers", "shop_customers_lake"), ("orders", "shop_orders_lake")):
                    t = prefix.replace("-", "_").replace(".", "_") + table
                    assert links(f"kafka/{t}", "dependencyKeys") == [f"source/sqlite_shop/sqlite_shop__{table}"]
                    assert f"parquet/{lake}/{lake}__{t}" in links(f"kafka/{t}", "dependedByKeys")
                topic_key = f"kafka/{label}"
                upstream, downstream = links(topic_key, "dependencyKeys"), links(topic_key, "dependedByKeys")
                assert {"warehouse/duckdb_warehouse/duckdb_warehouse__orders", f"parquet/shop_orders_daily/shop_orders_daily__{label}"} <= set(downstream)

                # then the drawing: the topic's neighbours are visible nodes (label and kind tags), and each
                # drawn edge joins the right two of them
                def ident(key: str) -> tuple[str, tuple[str, ...]]:
                    return assets[key]["assetKey"]["path"][-1], tuple(sorted(assets[key]["kinds"]))

                want_nodes = sorted(ident(k) for k in [topic_key, *upstream, *downstream])
                want_edges = sorted([(ident(u), ident(topic_key)) for u in upstream]
                                    + [(ident(topic_key), ident(d)) for d in downstream])
                page.wait_for_function(
                    "([n, e]) => document.querySelectorAll('svg foreignObject [data-tooltip]').length >= n && "
                    "document.querySelectorAll('svg path[marker-end^=\"url(#arrow\"]').length >= e",
                    arg=[len(want_nodes), len(want_edges)], timeout=60_000)
                expect(page.locator("svg foreignObject").filter(has_text="Loading")).to_have_count(0, timeout=30_000)
                drawn = page.evaluate(DRAWN)
                kinds = {k for n in assets.values() for k in n["kinds"]}
                nodes = sorted(_drawn_ident(n, kinds) for n in drawn["nodes"])
                assert nodes == want_nodes, drawn["nodes"]
                assert ("sqlite_shop__orders", ("sql",)) in nodes and (label, ("kafka",)) in nodes
                # the demo's lake and the daily dataset of one topic: two nodes, told apart by their labels
                assert {(f"shop_orders_lake__{label}", ("parquet",)), (f"shop_orders_daily__{label}", ("parquet",))} \
                    <= set(nodes)
                assert len({n[0] for n in nodes}) == len(nodes)  # no two nodes share a label
                for name in {n[0] for n in nodes}:
                    for el in page.locator(f'svg foreignObject [data-tooltip="{name}"]').all():
                        expect(el).to_be_visible()
                assert _edges_drawn(drawn, kinds) == want_edges, drawn
                page.screenshot(path=str(shots / "lineage.png"))
                phase("lineage")

                # 2. the backfill completes; its partitions are materialized
                def finished() -> dict | None:
                    got = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
                    assert got["__typename"] == "PartitionBackfill", got
                    assert got["status"] not in ("FAILED", "COMPLETED_FAILED", "CANCELED", "FAILING"), (
                        f"backfill {got}; daemon log:\n{dev.tail('daemon')}")
                    return got if got["status"] in ("COMPLETED_SUCCESS", "COMPLETED") else None

                done = _wait(f"backfill {backfill_id}", finished, timeout=150, every=2)
                phase("backfill")
                assert done["numPartitions"] == 2 and done["runs"]
                assert all(r["status"] == "SUCCESS" for r in done["runs"]), done
                status = dev.graphql(PARTITION_STATUS, {"k": key})["assetNodeOrError"]
                assert status["partitionStats"] == {"numMaterialized": 2, "numFailed": 0, "numMaterializing": 0}
                assert status["assetPartitionStatuses"]["ranges"] == [
                    {"status": "MATERIALIZED", "startKey": PARTITIONS[0], "endKey": PARTITIONS[1]}]
                lake = home / "demo" / "daily" / topic
                days = sorted(str(p.relative_to(lake)) for p in lake.glob("year=*/month=*/day=*"))
                assert days == ["year=2025/month=01/day=02", "year=2025/month=01/day=03"]
                ids = sorted(ds.dataset(lake / days[0]).to_table().column("id").to_pylist())
                assert ids == list(range(1440, 2880))  # the orders of 2025-01-02, minute by minute

                # the backfill's page: succeeded; its asset row reads 2 targeted, 0 in progress, 2
                # succeeded, 0 failed
                page.goto(f"{dev.url}/runs/b/{backfill_id}")
                expect(page.locator("body")).to_contain_text(re.compile(r"Status\s+Succeeded"), timeout=30_000,
                                                             use_inner_text=True)
                expect(page.locator(f'a[href="/assets/{"/".join(key["path"])}"]')).to_be_visible()
                expect(page.locator("body")).to_contain_text(re.compile(r"100% completed\s+2\s+0\s+2\s+0"),
                                                             timeout=30_000, use_inner_text=True)
                page.screenshot(path=str(shots / "backfill.png"))

                # the asset's partitions page: two materialized; each shows its run's metadata
                page.goto(f"{dev.url}/assets/parquet/shop_orders_daily/shop_orders_daily__{label}?view=partitions")
                expect(page.get_by_text("Materialized (2)")).to_be_visible(timeout=30_000)
                page.screenshot(path=str(shots / "partitions.png"))
                for partition in PARTITIONS:
                    page.goto(f"{dev.url}/assets/parquet/shop_orders_daily/shop_orders_daily__{label}?view=partitions"
                              f"&partition={partition}")
                    # the detail panel: "<partition> [Materialized] Latest materialization …", and the
                    # partition's own figures (one run rebuilt both days; each day has its 1440 rows)
                    expect(page.locator("body")).to_contain_text(
                        re.compile(rf"{partition}\s+Materialized\s+Latest materialization"), timeout=30_000,
                        use_inner_text=True)
                    expect(page.locator("body")).to_contain_text(re.compile(r"\brows\s+1440\b"), use_inner_text=True)
                    page.screenshot(path=str(shots / f"partition-{partition}.png"))
                phase("partition pages")
            finally:
                browser.close()
    finally:
        leftover = dev.stop()
        phase("stopped")
        kafka.delete_topics([prefix + "customers", prefix + "orders", offsets_topic])
        with capsys.disabled():
            print(f"\nbrowser test: screenshots in {shots} (at {', '.join(phases)}); "
                  f"{len(console)} console error(s)")
    assert not leftover, (f"processes that ignored SIGTERM and were killed: {leftover}; logs:\n"
                          + "\n".join(dev.tail(n, 25) for n in ("code-server", "daemon", "webserver")))
    real = [m for m in console if not any(re.search(p, m) for p, _why in ALLOWED_CONSOLE_ERRORS)]
    assert not real, "the browser console had errors:\n" + "\n".join(real)
