"""The "Against the peers" section of BENCHMARKS.md, between its markers (the rest of the file is left alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.notes import LIMITS, PROBLEMS

BEGIN = "<!-- peers:begin (written by make bench-peers; bench/peers/report.py) -->"
END = "<!-- peers:end -->"


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "" if x is None else fmt.format(x)


def section(data: dict[str, Any]) -> str:
    """The section's markdown."""
    v = data["versions"]
    lines = [
        BEGIN,
        "## Against the peers",
        "",
        f"Written by `make bench-peers` on {data['written']} (cases not rerun then keep their earlier figures), "
        f"{data['cores']} cores, Python {data['python']}; "
        f"Kafka Connect {v['kafka-connect']} (standalone, {v.get('java', 'java')}, -Xmx1g), Debezium "
        f"{v['debezium']}, dlt {v.get('dlt')}, connectorx {v.get('connectorx')}, Quix Streams "
        f"{v.get('quixstreams')}, pandas {v.get('pandas')}, pyarrow {v.get('pyarrow')}, confluent-kafka "
        f"{v.get('confluent-kafka')}, psycopg {v.get('psycopg')}. Every figure is a whole process, timed from "
        "its start (JVM or interpreter start-up, imports and connections included) until its output is "
        "complete; a Connect worker does not exit by itself, so it is timed until its output is complete and "
        "then stopped. Sides alternate run by run on the same data; min and median of the runs, peak RSS "
        "of the process, and the 1-minute load average during each run (2 cores, shared). Every run's "
        "output is checked (rows, and the sum of `qty`): a side whose output is wrong is marked WRONG, "
        "never fast. \"Headrace ×\" = the peer's median time / Headrace's median time (above 1: Headrace "
        "is faster). Peers run with their defaults (\"stock\") unless a row names a tuned variant.",
        "",
    ]
    lines += _goals(data)
    for c in data["cases"]:
        lines += [f"### {c.get('title', c['name'])}", ""]
        if "error" in c:
            lines += [f"Failed: {c['error']}", ""]
            continue
        lines += [
            f"{c['work_rows']:,} rows (or changes) moved per run; expected output of the last run: "
            f"{c['expected'][0]:,} rows, sum of qty {c['expected'][1]:,}"
            + (f", {c['expected'][2]:,} non-null names." if len(c["expected"]) > 2 else ".")
            + (f" Measured {c['measured']}." if c.get("measured") else ""),
            "",
            "| side | median s | min s | rows/s | peak RSS MB | load avg per run | Headrace × | goal |",
            "|---|---:|---:|---:|---:|---|---:|---|",
        ]
        for name, s in c["sides"].items():
            if not s["ok"]:
                lines.append(f"| {name} | **WRONG** | | | {_num(s['peak_rss_mb'])} | "
                             f"{', '.join(f'{x:.1f}' for x in s['load_avg'])} | | {s['error'][:160]} |")
                continue
            goal = s.get("goal")
            sp = None if name.startswith("Headrace") else s.get("headrace_speedup")
            verdict = ""
            if goal:
                verdict = f"≥ {goal:g}× " + ("(met)" if sp is not None and sp >= goal else "(**missed**)")
            lines.append(
                f"| {name} | {s['median_s']:.2f} | {s['min_s']:.2f} | {_num(s['rows_per_s'])} | "
                f"{_num(s['peak_rss_mb'])} | {', '.join(f'{x:.1f}' for x in s['load_avg'])} | "
                f"{'' if sp is None else f'{sp:.2f}'} | {verdict} |")
        lines += ["", f"Settings: {' '.join(c['settings'].split())}", ""]
        if c["name"] in LIMITS:
            lines += [f"What limits Headrace here: {LIMITS[c['name']]}", ""]
    if PROBLEMS:
        lines += ["### Peer problems found while measuring", ""]
        lines += [f"- {p}" for p in PROBLEMS]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _goals(data: dict[str, Any]) -> list[str]:
    """The issue's goals beside the measured ratios, one row per goal."""
    rows = []
    for c in data["cases"]:
        for name, s in c.get("sides", {}).items():
            goal = s.get("goal")
            if not goal:
                continue
            sp = s.get("headrace_speedup")
            if not s["ok"]:
                measured, verdict = "peer output WRONG", "n/a"
            elif sp is None:
                measured, verdict = "Headrace run failed", "n/a"
            else:
                measured, verdict = f"{sp:.2f}×", "met" if sp >= goal else "**missed**"
            load = c["sides"][c["headrace_side"]]["load_avg"] + s["load_avg"]
            rows.append(f"| {c.get('title', c['name'])} | {name} | ≥ {goal:g}× | {measured} | {verdict} | "
                        f"{min(load):.1f}–{max(load):.1f} |")
    if not rows:
        return []
    return ["### Goals (issue 17) beside the measured ratios", "",
            "Ratio = the peer's median wall time / Headrace's, in the same run. The issue's goals assume a quiet "
            "machine (load average under 4); the load column is the range over the runs of both sides.", "",
            "| case | against | goal | measured | verdict | load avg |", "|---|---|---:|---:|---|---|",
            *rows, ""]


def write_section(data: dict[str, Any], path: Path) -> None:
    """Replace the section between the markers in ``path`` (append it when the markers are absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    new = section(data)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + new + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)
