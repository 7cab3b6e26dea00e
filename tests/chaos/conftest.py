"""Fixtures of the chaos suite: a ``Chaos`` world per scenario and a harness-side database engine. Each
scenario's counts travel in its report (``user_properties``, which reach the xdist controller too);
tests/conftest.py prints them as one table at the end of the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.chaos.harness import Chaos


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
            request.node.user_properties.append(("chaos", [(world.name, world.kills, t.stage, t.expected,
                                                            t.missing, t.duplicates) for t in world.tallies]))
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
