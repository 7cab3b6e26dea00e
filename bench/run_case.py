"""Child process of the benchmark harness: runs one part of one case and prints a JSON line.

Usage: python -m bench.run_case <module> <setup|engine|ceiling|teardown> <state.json> [rows]
"""

from __future__ import annotations

import importlib
import json
import resource
import statistics
import sys
import time

#: Connector implementations and libraries the engine imports lazily (about 0.3 s in a fresh process; the
#: Avro converter imports the schema registry client, 0.2 s, when it is first built): loaded
#: before the clock starts, so both sides time the work and not module imports.
_ENGINE_MODULES = ("integrations.sources.sql", "integrations.sources.files", "integrations.sinks.parquet",
                   "integrations.sinks.table", "confluent_kafka.schema_registry")


def main() -> None:
    """Run the requested part and print ``{"rows", "seconds", "peak_rss_mb"}`` (or the state)."""
    module, part, state_path = sys.argv[1], sys.argv[2], sys.argv[3]
    case = importlib.import_module(f"bench.cases.{module}")
    if part == "setup":
        rows = int(sys.argv[4]) if len(sys.argv) > 4 else case.DEFAULT_ROWS
        state = case.setup(rows)
        state.setdefault("rows", rows)
        with open(state_path, "w") as f:
            json.dump(state, f)
        print(json.dumps({"ok": True}))
        return
    with open(state_path) as f:
        state = json.load(f)
    if part == "teardown":
        case.teardown(state)
        print(json.dumps({"ok": True}))
        return
    fn = getattr(case, part)
    for module_name in _ENGINE_MODULES:  # imported before timing, as the ceilings' libraries are
        importlib.import_module(module_name)
    # A case whose work takes milliseconds (INNER_REPEAT > 1) runs it several times in the process and
    # reports the median: one run of ~20 ms is dominated by first-call and page-cache effects.
    times = []
    for _ in range(getattr(case, "INNER_REPEAT", 1)):
        t0 = time.perf_counter()
        rows = fn(state)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": round(peak, 1)}))


if __name__ == "__main__":
    main()
