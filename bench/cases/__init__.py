"""Benchmark cases. Each module defines NAME, DEFAULT_ROWS, setup(rows) -> state, engine(state) -> rows,
ceiling(state) -> rows and teardown(state). The harness (bench/run.py) times engine and ceiling in
separate child processes, alternating, and quotes medians and their ratio."""
