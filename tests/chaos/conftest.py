"""Fixtures of the chaos suite: a ``Chaos`` world per scenario, a harness-side database engine, and one
summary table of every scenario at the end of the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.chaos.harness import FULL, Chaos, Tally

_ALL: list[tuple[str, int, Tally]] = []


@pytest.fixture
def chaos(request, kafka, tmp_path: Path) -> Iterator[Chaos]:
    """A scenario's world; its own offsets topic and HEADRACE_HOME; prints its table; cleans up."""
    offsets = f"chaos-offsets-{uuid.uuid4().hex[:10]}"
    home = tmp_path / "home"
    home.mkdir()
    world = Chaos(name=request.node.name.removeprefix("test_"), kafka=kafka, folder=tmp_path,
                  env={"HEADRACE_HOME": str(home), "HEADRACE_OFFSETS_TOPIC": offsets})
    world.topics.append(offsets)
    try:
        yield world
    finally:
        if world.tallies:
            world.report()
            _ALL.extend((world.name, world.kills, t) for t in world.tallies)
        world.cleanup()


@pytest.fixture
def harness_db(pg_url: str) -> Iterator[sa.Engine]:
    """An engine on the scenario's fresh database, tagged ``chaos-harness`` (never terminated by a scenario)."""
    eng = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT",
                           connect_args={"application_name": "chaos-harness"})
    try:
        yield eng
    finally:
        eng.dispose()


def pytest_terminal_summary(terminalreporter) -> None:
    """Every scenario's counts in one table (the figures of the README's delivery guarantees)."""
    if not _ALL:
        return
    tr = terminalreporter
    tr.section(f"chaos summary ({'full' if FULL else 'short'} variant)")
    tr.write_line(f"{'scenario':<52} {'stage':<26} {'records':>9} {'kills':>5} {'missing':>8} {'dups':>8}")
    for name, kills, t in _ALL:
        tr.write_line(f"{name:<52} {t.stage:<26} {t.expected:>9} {kills:>5} {t.missing:>8} {t.duplicates:>8}")
