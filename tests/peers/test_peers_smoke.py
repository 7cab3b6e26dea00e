"""Smoke test of the peer benchmark harness (issue 17): the cases of ``make bench-peers`` once on 10k rows.

Bootstraps the peers the same way (``bench/peers/install.py``: Kafka Connect, Debezium, dlt, Quix Streams;
cached under $HEADRACE_HOME/peers and ~/.m2) and fails loudly when it cannot. Each side runs once and its
output is checked (rows and the sum of qty), so the harness and the peers' settings cannot rot. The tuned
Debezium variant is left to the benchmark. No timing is asserted.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from bench.peers.install import PeerInstallError, install

ROWS = 10_000
#: peer problems found while measuring (bench/peers/notes.py): side → text its WRONG verdict must hold
KNOWN_WRONG = {
    "Quix Streams PostgreSQL sink": "non-null names 0",  # columns taken from a batch's first row
    "Kafka Connect FileStreamSource (lines)": "stalled: 10,000 of 10,001 lines",  # lines left in its buffer
}
#: make test runs the four short cases, which cover every peer (Kafka Connect with Debezium, dlt, Quix
#: Streams); make test-long adds the three long ones (Debezium snapshots, its JDBC sink, FileStream)
SHORT = ["case_cdc", "case_sql_to_parquet", "case_kafka_to_parquet", "case_incremental"]
CASES = [*SHORT, *(pytest.param(c, marks=pytest.mark.long)
                   for c in ("case_sql_to_kafka", "case_kafka_to_postgres", "case_file_to_kafka"))]


@pytest.fixture(scope="module")
def peers(kafka: Any) -> dict[str, str]:
    """The installed peers' versions; fails (never skips) when they cannot be installed."""
    try:
        return install()
    except PeerInstallError as e:
        pytest.fail(f"the peers could not be installed: {e}", pytrace=False)


@pytest.mark.parametrize("module", CASES)
def test_case_runs_every_side_with_the_right_output(peers: dict[str, str], module: str) -> None:
    """Every side of the case moves all 10k rows (or the case's own count) with the right sum of qty."""
    assert peers["debezium"].startswith("3.4.") and peers["kafka-connect"] == "4.1.1"
    case = importlib.import_module(f"bench.peers.{module}")
    state = case.setup(ROWS)
    try:
        runs = [side(state) for side in case.SIDES if "tuned" not in side.__name__]
    finally:
        case.teardown(state)
    assert {r.side for r in runs} >= {case.HEADRACE_SIDE, *case.GOALS}
    for r in runs:
        if r.side in KNOWN_WRONG:  # the harness must keep catching it; a fixed peer fails here: update notes
            assert not r.ok and KNOWN_WRONG[r.side] in r.error, f"{r.side}: {r.error or 'now right'}"
        else:
            assert r.ok, f"{r.side}: {r.error}"
            if module not in ("case_incremental", "case_cdc"):  # those check a per-run expectation
                assert (r.rows, r.total) == tuple(state["expected"][:2])
