"""``make bench-peers``: Headrace against Kafka Connect, Debezium, dlt and Quix Streams on the same data.

Each case sets up its data once, then runs every side (Headrace first, then each peer) ``--repeat`` times,
alternating, each run a fresh process timed from spawn (start-up included) until its output is complete,
with its peak RSS and the load average during the run. Every run's output is checked (rows and the sum of a
numeric column); a side with a wrong output is reported WRONG, not fast. Results go to
bench/results/peers.json and the "Against the peers" section of BENCHMARKS.md.

Usage: python -m bench.peers.run [cases …] [--rows N] [--repeat 3] [--only-sides substring]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.peers.common import log
from bench.peers.install import PeerInstallError, install
from bench.peers.report import write_section

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "peers.json"
CASES = ["case_sql_to_kafka", "case_kafka_to_parquet", "case_kafka_to_postgres", "case_sql_to_parquet",
         "case_file_to_kafka", "case_incremental", "case_cdc"]


def summarize(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """Min and median wall time of one side's runs, its peak RSS and load averages; WRONG if any run was."""
    secs = [r["seconds"] for r in runs]
    med = statistics.median(secs)
    bad = [r["error"] for r in runs if not r["ok"]]
    return {
        "runs": len(runs), "ok": not bad, "error": bad[0] if bad else "",
        "min_s": round(min(secs), 3), "median_s": round(med, 3), "rows_per_s": round(rows / med) if med else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "load_avg": [r["load_avg"] for r in runs], "load_max": max(r["load_max"] for r in runs),
        "seconds_all": [round(s, 3) for s in secs],
    }


def run_case(module: str, rows: int | None, repeat: int, only: str | None) -> dict[str, Any]:
    """Set up, run every side ``repeat`` times alternating, tear down; the case's result."""
    case = importlib.import_module(f"bench.peers.{module}")
    rows = rows or case.DEFAULT_ROWS
    sides = [s for s in case.SIDES if not only or only in s.__name__ or s.__name__.startswith("headrace")]
    log(f"peers {case.NAME}: setup ({rows:,} rows)")
    state = case.setup(rows)
    per_side: dict[str, list[dict[str, Any]]] = {}
    try:
        for i in range(repeat):
            for fn in sides:
                r = fn(state).as_dict()
                log(f"  run {i + 1}/{repeat} {r['side']}: {r['seconds']:.2f} s, {r['peak_rss_mb']:.0f} MB, "
                    f"load {r['load_avg']:.1f}{'' if r['ok'] else ' ' + r['error']}")
                per_side.setdefault(r["side"], []).append(r)
    finally:
        case.teardown(state)
    n = state.get("work_rows", state["expected"][0] if "expected" in state else rows)
    sides_out = {name: summarize(runs, n) for name, runs in per_side.items()}
    hr = sides_out.get(case.HEADRACE_SIDE)
    for name, s in sides_out.items():
        if hr and hr["ok"] and s["ok"] and not name.startswith("Headrace"):
            s["headrace_speedup"] = round(s["median_s"] / hr["median_s"], 2)
        s["goal"] = case.GOALS.get(name)
    return {"name": case.NAME, "title": case.TITLE, "measured": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "rows": rows, "work_rows": n,
            "expected": state.get("expected"), "headrace_side": case.HEADRACE_SIDE, "sides": sides_out,
            "notes": getattr(case, "NOTES", ""), "settings": case.__doc__.split("\n\n", 1)[-1].strip()}


def main() -> int:
    """Install the peers, run the cases, write peers.json and the BENCHMARKS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help=f"cases (default: all): {', '.join(CASES)}")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only-sides", default=None, help="run only the sides whose function name holds this")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the BENCHMARKS.md section from bench/results/peers.json, run nothing")
    args = ap.parse_args()
    if args.report_only:
        write_section(json.loads(RESULTS.read_text()), ROOT / "BENCHMARKS.md")
        return 0
    try:
        versions = install()
    except PeerInstallError as e:
        print(f"bench-peers: {e}", file=sys.stderr)
        return 1
    results = []
    for module in args.cases or CASES:
        module = module if module.startswith("case_") else f"case_{module}"
        try:
            results.append(run_case(module, args.rows, args.repeat, args.only_sides))
        except Exception as e:  # noqa: BLE001 - a failing case is reported; the others still run
            traceback.print_exc()
            name = importlib.import_module(f"bench.peers.{module}").NAME
            results.append({"name": name, "error": f"{type(e).__name__}: {e}"[:500]})
        print(json.dumps(results[-1]), flush=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged = {r["name"]: r for r in old.get("cases", [])}
    for r in results:  # a case that failed this time keeps its earlier figures, with the failure noted
        prev = merged.get(r["name"])
        merged[r["name"]] = ({**prev, "last_attempt_error": r["error"]} if "error" in r and prev and "error" not in prev
                             else r)
    order = [importlib.import_module(f"bench.peers.{c}").NAME for c in CASES]
    out = {
        "written": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "cores": os.cpu_count(),
        "python": platform.python_version(), "versions": versions, "repeat": args.repeat,
        "cases": [merged[n] for n in [*order, *sorted(set(merged) - set(order))] if n in merged],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    write_section(out, ROOT / "BENCHMARKS.md")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
