"""Benchmark harness: ``make bench`` → bench/results/latest.json and BENCHMARKS.md.

Each case runs its engine path and its ceiling (the bare library loop doing the same work) in
separate child processes, alternating, ``--repeat`` times each; we quote medians and the ratio
engine/ceiling, since the machines are shared and noisy. Peak RSS is the engine child's maximum.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.notes import NOTES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ORDER = [
    "sql_to_kafka", "sql_to_kafka_exactly_once", "kafka_to_parquet", "sql_to_kafka_fast", "csv_to_kafka",
    "kafka_to_duckdb_upsert", "kafka_to_postgres_upsert", "kafka_to_parquet_daily",
    "transform_chain", "avro_roundtrip", "cdc_to_kafka", "cdc_snapshot", "kafka_to_parquet_4p",
    "sql_to_kafka_parallel", "pg_to_parquet_e2e", "dagster_latency",
]


def _child(module: str, part: str, state: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run_case", module, part, state, *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {part} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_case(module: str, rows: int | None, repeat: int) -> dict:
    """Set up, alternate engine and ceiling runs, tear down; return the result row."""
    case = importlib.import_module(f"bench.cases.{module}")
    rows = rows or case.DEFAULT_ROWS
    with tempfile.TemporaryDirectory(prefix=f"bench-{module}-") as tmp:
        state = os.path.join(tmp, "state.json")
        _child(module, "setup", state, str(rows))
        eng, ceil = [], []
        try:
            for _ in range(repeat):
                eng.append(_child(module, "engine", state))
                ceil.append(_child(module, "ceiling", state))
        finally:
            _child(module, "teardown", state)
    moved = eng[0]["rows"]
    e_s = statistics.median(r["seconds"] for r in eng)
    c_s = statistics.median(r["seconds"] for r in ceil)
    return {
        "name": case.NAME,
        "rows": moved,
        "seconds": round(e_s, 3),
        "rows_per_s": round(moved / e_s),
        "ceiling_rows_per_s": round(ceil[0]["rows"] / c_s),
        "ratio": round((moved / e_s) / (ceil[0]["rows"] / c_s), 3),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in eng),
        "ceiling_peak_rss_mb": max(r["peak_rss_mb"] for r in ceil),
        "repeats": repeat,
        "engine_seconds_all": [round(r["seconds"], 3) for r in eng],
        "ceiling_seconds_all": [round(r["seconds"], 3) for r in ceil],
    }


def available() -> list[str]:
    """Case modules present, in the canonical order first."""
    found = {m.name for m in pkgutil.iter_modules([str(ROOT / "bench" / "cases")])}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def write_markdown(results: list[dict], path: Path, partial: bool = False) -> None:
    """BENCHMARKS.md: one row per case, each figure beside its in-run ceiling (``partial``: only some
    cases were rerun; the others keep their earlier figures)."""
    kept = " (rows not rerun then keep their earlier figures)" if partial else ""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{kept}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. Medians of alternating runs; the ceiling is "
        "the bare library loop doing the same work, measured in the same run (see each case's `ceiling()` in "
        "`bench/cases/`). Ratio = engine rate / ceiling rate.",
        "",
        "| benchmark | rows | engine rows/s | ceiling rows/s | ratio | engine peak RSS (MB) | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {r['rows']:,} | {r['rows_per_s']:,} | {r['ceiling_rows_per_s']:,} | "
            f"{r['ratio']:.2f} | {r['peak_rss_mb']:.0f} | {r['repeats']} |"
        )
    lines += _latency_lines(RESULTS / "dagster_latency.json")
    notes = [(r["name"], NOTES[r["name"]]) for r in results if r["name"] in NOTES]
    if notes:
        lines += ["", "## What limits each benchmark", ""]
        for name, note in notes:
            lines += [f"**{name}.** {note}", ""]
    text = "\n".join(lines).rstrip("\n") + "\n"
    old = path.read_text() if path.exists() else ""
    begin, end = old.find("<!-- peers:begin"), old.find("<!-- peers:end -->")
    if begin != -1 and end > begin:  # "Against the peers" is written by make bench-peers (bench/peers/report.py)
        text += "\n" + old[begin:end + len("<!-- peers:end -->")] + "\n"
    path.write_text(text)


def _latency_lines(path: Path) -> list[str]:
    """The dagster_latency case's figures (written by its teardown): commit → visible, p50/p95."""
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    out = ["", "## Latency through Dagster (dagster_latency)", "",
           "Commit in PostgreSQL → visible in the target, seconds: p50 = median of the runs' p50s, p95 = the "
           "highest run p95. The floor is the engine alone (run_source, then run_sink, per one-row batch).", "",
           "| mode | target | p50 (s) | p95 (s) | rows |", "|---|---|---:|---:|---:|"]
    for mode, label in (("mb", "micro-batch, sensors on"), ("ct", "continuous"), ("floor", "floor (no Dagster)")):
        for target in ("parquet", "duckdb"):
            r = d.get(mode, {}).get(target)
            if r:
                out.append(f"| {label} | {target} | {r['p50_of_runs']:.1f} | {r['p95_max_of_runs']:.1f} | {r['rows']} |")
    return out


def main() -> int:
    """Run the selected cases and write the results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("cases", nargs="*", help="case modules (default: all)")
    ap.add_argument("--rows", type=int, default=None, help="override each case's DEFAULT_ROWS")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = []
    for module in args.cases or available():
        print(f"bench {module} ...", flush=True)
        try:
            r = run_case(module, args.rows, args.repeat)
        except Exception as e:  # noqa: BLE001 - a failing case is reported, the rest still run
            r = {"name": module, "error": str(e)}
        print(json.dumps(r), flush=True)
        results.append(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.cases and (RESULTS / "latest.json").exists():  # partial run: merge into the last results
        old = {r["name"]: r for r in json.loads((RESULTS / "latest.json").read_text())}
        old.update({r["name"]: r for r in results})
        results = [old[n] for n in [*ORDER, *sorted(set(old) - set(ORDER))] if n in old]
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, ROOT / "BENCHMARKS.md", partial=bool(args.cases))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
