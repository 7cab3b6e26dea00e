"""Chaos: clean stops. SIGTERM during a SQL source run, twice (the first run gets it twice in a row, as
an impatient operator sends it), then a run to the end. A clean stop ends the run at a batch boundary
with everything before it stored: exit 143 with one line, and no duplicates in any mode."""

from __future__ import annotations

import signal

from tests.chaos.connectors import sql_source
from tests.chaos.harness import (
    SCALE,
    one_line_failure,
    partition_total,
    seed_table,
    table_tally,
    tally,
    topic_ids,
)


def test_sigterm_twice_during_a_source_run(chaos, harness_db, pg_url, unique):
    n, table, prefix = SCALE.rows, f"src_{unique}", f"chaos-term-{unique}-"
    seed_table(harness_db, table, n)
    topic = chaos.topic(prefix + table)
    # many small batches: a stop must land in the middle of the work, not after the last batch
    cfg = chaos.connector(sql_source(f"chaos-term-{unique}", pg_url, table, prefix,
                                     batch_max_rows=max(SCALE.batch // 6, 500)))
    progress = lambda: partition_total(chaos.kafka, topic)  # noqa: E731
    runs = chaos.kill_during(cfg, progress, n, 2, "sigterm", sig=((signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM,)))
    got = tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n)
    chaos.record(table_tally(harness_db, table, n, "source table"), got)
    stopped = [r for r in runs if r.signals]
    assert len(stopped) == 2, f"a stop landed after the run finished: {[r.describe() for r in runs]}"
    for r in stopped:
        one_line_failure(r, code=143)
        assert "stopped" in r.error_lines()[0], r.describe()
    assert (got.missing, got.stray) == (0, 0), "records lost"
    assert got.duplicates == 0, "a clean stop left duplicates"
