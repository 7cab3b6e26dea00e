"""dagster_latency: commit in PostgreSQL → visible in a Parquet dataset and a DuckDB table, through a
real Dagster daemon (no webserver; a temporary ``DAGSTER_HOME`` with the project's dagster.yaml).

Two pipelines run side by side, each ``sql_source → topic → parquet_sink + table_sink (DuckDB)``:

- **micro-batch**: the connectors' sensors request runs (the source's run also runs its sinks);
- **continuous**: the same connectors with ``continuous:``, one long-lived run each.

``engine()`` commits ``rows`` rows into each pipeline's table, one transaction per row at random
moments (gaps uniform in ``GAP`` seconds), and records for every row the time from its commit to its
first appearance: in Parquet, the moment a watcher (polling every 0.1 s) sees a new file holding it;
in DuckDB, the timestamp of the table sink's materialization event whose offsets cover it. Its
figures (p50/p95 per mode and target) go to ``<state dir>/latency.jsonl`` and, in teardown, to
``bench/results/dagster_latency.json``.

``ceiling()`` is the floor: the engine's own time for the same batch without Dagster: commit one row,
then ``run_source`` and both sinks' ``run_sink`` in this process (modules already imported), per row.

``python -m bench.cases.dagster_latency --levers`` measures the micro-batch levers one at a time
(cumulative), each with a fresh daemon: before (multiprocess executor, no chaining, 30 s sensors,
5 s run queue), + in-process executor, + source run also runs its sinks, + 5 s sensors, + 1 s queue.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa
import yaml

from bench.common import PG_URL, admin_engine, delete_topics, drop_db

NAME = "dagster_latency"
DEFAULT_ROWS = 20
GAP = (0.2, 3.0)
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RESULT = ROOT / "bench" / "results" / "dagster_latency.json"
SCHEMA = {"id": "int64", "v": "string"}
#: the levers, cumulative: (label, env, dagster.yaml dequeue interval, explicit poll_interval or None)
LEVERS = [
    ("before (multiprocess, no chaining, 30 s sensors, 5 s queue)",
     {"HEADRACE_EXECUTOR": "multiprocess", "HEADRACE_CHAIN_SINKS": "0"}, 5, 30),
    ("+ in-process executor", {"HEADRACE_CHAIN_SINKS": "0"}, 5, 30),
    ("+ source run also runs its sinks", {}, 5, 30),
    ("+ 5 s sensors (default poll_interval)", {}, 5, None),
    ("+ run queue checked every 1 s (all levers: the defaults)", {}, 1, None),
]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))], 2)


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": _pct(values, 0.5), "p95": _pct(values, 0.95),
            "max": round(max(values), 2) if values else None}


def _connectors(folder: Path, u: str, url: str, lake: Path, mode: str, poll: int | None) -> dict:
    """The three connectors of one pipeline; returns their names and topic."""
    names = {k: f"lat-{mode}-{k}-{u}" for k in ("src", "pq", "db")}
    topic = f"lat-{u}.events_{mode}"
    extra: dict = {"poll_interval": poll} if poll else {}
    if mode == "ct":
        extra["continuous"] = {"max_run_seconds": 600, "idle_sleep_seconds": 0.2}
    docs = [
        {"name": names["src"], "type": "sql_source", "connection_url": url, "mode": "incrementing",
         "incrementing_column": "id", "tables": [f"events_{mode}"], "topic_prefix": f"lat-{u}.", "key_columns": ["id"],
         **extra},
        {"name": names["pq"], "type": "parquet_sink", "topics": [topic], "path": str(lake), "value_schema": SCHEMA,
         **extra},
        {"name": names["db"], "type": "table_sink", "topics": [topic], "connection_url": f"duckdb:///{lake}/{mode}.duckdb",
         "table_name_format": "events", "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"],
         "auto_create": True, "value_schema": SCHEMA, **extra},
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['name']}.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    return {"names": names, "topic": topic}


def setup(rows: int, modes: tuple[str, ...] = ("mb", "ct"), env_extra: dict | None = None, dequeue: int = 1,
          poll: int | None = None) -> dict:
    """PostgreSQL tables, topics, connectors, a DAGSTER_HOME, sensors on, and a daemon running."""
    from integrations.kafka.cluster import KafkaSettings

    u = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-dlat-"))
    urls = {}
    for mode in (*modes, "floor"):  # one database each: a pipeline's reads never wait on another's
        name = f"hr_bench_lat_{u}_{mode}"
        with admin_engine().connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        urls[mode] = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        eng = sa.create_engine(urls[mode])
        with eng.begin() as c:
            c.execute(sa.text(f'CREATE TABLE "events_{mode}" (id bigint PRIMARY KEY, v text)'))
        eng.dispose()
    kafka = KafkaSettings.from_env()
    lake, conn, home, dhome = tmp / "lake", tmp / "connectors", tmp / "home", tmp / "dagster"
    for d in (lake, home, dhome):
        d.mkdir(parents=True)
    pipes = {m: _connectors(conn, u, urls[m], lake, m, poll) for m in modes}
    _connectors(tmp / "floor", u, urls["floor"], lake, "floor", None)
    topics = [f"lat-{u}.events_{m}" for m in (*modes, "floor")]
    for t in topics:
        kafka.ensure_topic(t, partitions=1)
    conf = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    conf["run_coordinator"]["config"]["dequeue_interval_seconds"] = dequeue
    (dhome / "dagster.yaml").write_text(yaml.safe_dump(conf))
    offsets = f"headrace-offsets-bench-{u}"
    env = {**os.environ, "DAGSTER_HOME": str(dhome), "HEADRACE_CONNECTORS_DIR": str(conn),
           "HEADRACE_HOME": str(home), "HEADRACE_OFFSETS_TOPIC": offsets, **(env_extra or {})}
    ws = ["-w", str(ROOT / "workspace.yaml")]
    subprocess.run([str(BIN / "dagster"), "sensor", "start", "--start-all", *ws], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    log = (tmp / "daemon.log").open("w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *ws], env=env, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    state = {"dir": str(tmp), "urls": urls, "topics": [*topics, offsets], "pipes": pipes, "offsets": offsets,
             "daemon": daemon.pid, "dagster_home": str(dhome), "lake": str(lake), "u": u}
    if "ct" in modes:
        _wait_continuous(state, timeout=240)
    else:
        time.sleep(10)  # the daemon's first sensor ticks
    return state


def _instance(state: dict):
    import dagster as dg

    os.environ["DAGSTER_HOME"] = state["dagster_home"]
    return dg.DagsterInstance.get()


def _wait_continuous(state: dict, timeout: float) -> None:
    import dagster as dg

    from assets.keys import clean

    instance = _instance(state)
    deadline = time.monotonic() + timeout
    jobs = [f"{clean(n)}_continuous_job" for n in state["pipes"]["ct"]["names"].values()]
    while time.monotonic() < deadline:
        if all(instance.get_runs(dg.RunsFilter(job_name=j, statuses=[dg.DagsterRunStatus.STARTED]), limit=1)
               for j in jobs):
            time.sleep(3)  # the loops are polling
            return
        time.sleep(1)
    raise RuntimeError(f"continuous runs not started after {timeout:.0f}s; see {state['dir']}/daemon.log")


class _ParquetWatcher(threading.Thread):
    """Records when each id first appears in a Parquet file under ``folder`` (polls every 0.1 s)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.seen, self.files, self.stop = folder, {}, set(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for f in self.folder.rglob("*.parquet") if self.folder.exists() else []:
                if f in self.files:
                    continue
                with contextlib.suppress(Exception):  # a file mid-rename: next poll
                    for i in pq.read_table(f, columns=["id"]).column("id").to_pylist():
                        self.seen.setdefault(i, now)
                    self.files.add(f)
            self.stop.wait(0.1)


def _offsets_to_ids(topic: str) -> dict[int, int]:
    from integrations.kafka.cluster import KafkaSettings

    kafka = KafkaSettings.from_env()
    c = kafka.consumer(group_id=f"bench-lat-{uuid.uuid4().hex[:8]}")
    from confluent_kafka import TopicPartition

    _low, high = kafka.watermarks(topic)[0]
    c.assign([TopicPartition(topic, 0, 0)])
    out: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while high and (not out or max(out) < high - 1) and time.monotonic() < deadline:
        for m in c.consume(500, timeout=0.5):
            if m.error() is None and m.value() is not None:
                out[m.offset()] = json.loads(m.value())["id"]
    c.close()
    return out


def _table_seen(state: dict, mode: str) -> dict[int, float]:
    """id → timestamp of the first DuckDB sink materialization whose offsets cover it."""
    import dagster as dg

    from assets.keys import sink_assets
    from integrations.loading import load_connector

    cfg = load_connector(Path(state["dir"]) / "connectors" / f"{state['pipes'][mode]['names']['db']}.yaml")
    key = sink_assets(cfg)[0].key
    instance = _instance(state)
    ids = _offsets_to_ids(state["pipes"][mode]["topic"])
    seen: dict[int, float] = {}
    recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10_000).records
    for r in sorted(recs, key=lambda r: r.timestamp):
        rng = r.asset_materialization.metadata.get("offsets")
        if rng is None:
            continue
        for s, e in rng.value.values():
            for off in range(s, e):
                if off in ids:
                    seen.setdefault(ids[off], r.timestamp)
    return seen


def _insert(url: str, table: str, i: int) -> float:
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with eng.begin() as c:
        c.execute(sa.text(f'INSERT INTO "{table}" VALUES (:i, :v)'), {"i": i, "v": f"row {i}"})
    t = time.time()
    eng.dispose()
    return t


def engine(state: dict) -> int:
    """Commit ``rows`` rows per pipeline at random moments; record commit → visible per target."""
    rows = state["rows"]
    modes = list(state["pipes"])
    eng = sa.create_engine(state["urls"][modes[0]])
    with eng.connect() as c:
        start = int(c.execute(sa.text(f'SELECT coalesce(max(id), 0) FROM "events_{modes[0]}"')).scalar()) + 1
    eng.dispose()
    lake = Path(state["lake"])
    watchers = {m: _ParquetWatcher(lake / state["pipes"][m]["topic"]) for m in modes}
    for w in watchers.values():
        w.start()
    committed: dict[str, dict[int, float]] = {m: {} for m in modes}
    rng = random.Random()
    for i in range(start, start + rows):
        time.sleep(rng.uniform(*GAP))
        for m in modes:
            committed[m][i] = _insert(state["urls"][m], f"events_{m}", i)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(set(committed[m]) <= set(watchers[m].seen) for m in modes):
        time.sleep(0.5)
    tables: dict[str, dict[int, float]] = {}
    while time.monotonic() < deadline:  # the table sinks' runs may come later (unchained runs)
        tables = {m: _table_seen(state, m) for m in modes}
        if all(set(committed[m]) <= set(tables[m]) for m in modes):
            break
        time.sleep(2)
    out = {"rows": rows, "at": time.time()}
    for m in modes:
        watchers[m].stop.set()
        table = tables.get(m, {})
        out[m] = {
            "parquet": _summary([watchers[m].seen[i] - t for i, t in committed[m].items() if i in watchers[m].seen]),
            "duckdb": _summary([table[i] - t for i, t in committed[m].items() if i in table]),
            "missing_parquet": sorted(set(committed[m]) - set(watchers[m].seen)),
            "missing_duckdb": sorted(set(committed[m]) - set(table)),
        }
    with open(Path(state["dir"]) / "latency.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out), file=sys.stderr)
    return rows


def ceiling(state: dict) -> int:
    """The floor: per row, commit, then run_source and both run_sinks in this process."""
    from integrations.loading import load_folder
    from integrations.runtime.sink_runner import run_sink
    from integrations.runtime.source_runner import run_source

    os.environ["HEADRACE_OFFSETS_TOPIC"] = state["offsets"]
    from integrations.kafka.cluster import KafkaSettings

    kafka = KafkaSettings.from_env()
    configs = {c.type: c for c in load_folder(Path(state["dir"]) / "floor")}
    eng = sa.create_engine(state["urls"]["floor"])
    with eng.connect() as c:
        start = int(c.execute(sa.text('SELECT coalesce(max(id), 0) FROM "events_floor"')).scalar()) + 1
    eng.dispose()
    pq_s, db_s = [], []
    for i in range(start, start + state["rows"]):
        t0 = _insert(state["urls"]["floor"], "events_floor", i)
        moved = run_source(configs["sql_source"], kafka).rows
        assert moved == 1, f"floor: the source moved {moved} rows, not 1"
        assert run_sink(configs["parquet_sink"], kafka).rows == 1
        pq_s.append(time.time() - t0)
        assert run_sink(configs["table_sink"], kafka).rows == 1
        db_s.append(time.time() - t0)
    out = {"floor": {"parquet": _summary(pq_s), "duckdb": _summary(db_s)}, "at": time.time()}
    with open(Path(state["dir"]) / "latency.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    return state["rows"]


def _stop_daemon(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def aggregate(state: dict) -> dict:
    """Every engine and floor run of this setup, pooled: p50/p95 per mode and target."""
    path = Path(state["dir"]) / "latency.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    out: dict = {}
    for mode in [*state["pipes"], "floor"]:
        for target in ("parquet", "duckdb"):
            runs = [x[mode][target] for x in lines if mode in x and x[mode][target]["p50"] is not None]
            if runs:
                out.setdefault(mode, {})[target] = {
                    "p50_of_runs": statistics.median(r["p50"] for r in runs),
                    "p95_max_of_runs": max(r["p95"] for r in runs),
                    "rows": sum(r["n"] for r in runs), "runs": [r for r in runs]}
    return out


def teardown(state: dict) -> None:
    """Stop the daemon (and its runs), drop the database, delete the topics and folders."""
    _stop_daemon(state["daemon"])
    agg = aggregate(state)
    if agg and state.get("record", True):
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps({"name": NAME, "cores": os.cpu_count(), **agg}, indent=2) + "\n")
    for url in state["urls"].values():
        drop_db(url)
    delete_topics(*state["topics"])
    shutil.rmtree(state["dir"], ignore_errors=True)


def levers(rows: int) -> list[dict]:
    """Each micro-batch lever, cumulative, with a fresh daemon: p50/p95 commit → Parquet/DuckDB."""
    out = []
    for label, env, dequeue, poll in LEVERS:
        state = setup(rows, modes=("mb",), env_extra=env, dequeue=dequeue, poll=poll)
        state["rows"], state["record"] = rows, False
        try:
            engine(state)
            r = json.loads((Path(state["dir"]) / "latency.jsonl").read_text().splitlines()[-1])
        finally:
            teardown(state)
        out.append({"lever": label, **r["mb"]})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    """``--levers``: the lever table (bench/results/dagster_latency_levers.json)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levers", action="store_true")
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    if args.levers:
        res = levers(args.rows)
        path = RESULT.with_name("dagster_latency_levers.json")
        path.write_text(json.dumps(res, indent=2) + "\n")
        for r in res:
            print(f"| {r['lever']} | {r['parquet']['p50']} | {r['parquet']['p95']} | {r['duckdb']['p50']} | "
                  f"{r['duckdb']['p95']} |")


if __name__ == "__main__":
    main()
