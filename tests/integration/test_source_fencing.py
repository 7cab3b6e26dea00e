"""One writer per source connector, at-least-once (the default): offsets are written through the
connector's transactional producer, so a run that another run of the connector has fenced fails at its
next offset write with one line, and its duplicates are bounded by one batch. Offsets never move
backwards. Real PostgreSQL, real broker, real ``headrace run`` processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pytest

from integrations.config import SqlSourceConfig
from integrations.offsets import OffsetRegression, OffsetStore, offset_regressed
from integrations.runtime import source_runner
from integrations.sources.base import Source, SourceBatch
from tests.integration.source_helpers import (
    finish,
    gaps_and_duplicates,
    numbered_table,
    read_ids,
    source_file,
    start_paused_run,
    start_run,
)


def test_a_paused_run_is_fenced_and_duplicates_stay_within_one_batch(pg_url, kafka, topic_factory, unique, tmp_path):
    rows, batch = 200_000, 10_000
    table, name = f"fence_{unique}", f"fence-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("fence", create=False), topic_factory("fence-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch)
    stale = start_paused_run(path, offsets, tmp_path / "paused-once")  # stopped after producing its first batch
    try:
        code, _out, err = finish(start_run(path, offsets))
        assert code == 0, err
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    code, _out, err = finish(stale)
    assert code == 1, err
    assert f"another run of {name} started" in err and "fenced this one" in err and "Traceback" not in err, err
    missing, dups = gaps_and_duplicates(read_ids(kafka, topic), rows)
    assert missing == 0
    assert dups <= batch, f"{dups} duplicates: more than the stale run's one batch"
    stored = OffsetStore(kafka, offsets).read(name)
    assert stored[orjson.dumps({"table": table}).decode()]["incrementing"] == rows  # the stale run wrote none


def test_two_runs_started_together_duplicate_at_most_one_batch(pg_url, kafka, topic_factory, unique, tmp_path):
    rows, batch = 300_000, 10_000
    table, name = f"fence2_{unique}", f"fence2-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("fence2", create=False), topic_factory("fence2-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch)
    results = [finish(p) for p in (start_run(path, offsets), start_run(path, offsets))]
    fenced = [r for r in results if r[0] != 0]
    assert len(fenced) == 1 and "fenced this one" in fenced[0][2], results
    # the winner may stop short: the fenced run's open read transaction bounds its poll (the no-skip guard
    # waits for in-progress transactions), and what it left is the next micro-batch's
    final = finish(start_run(path, offsets))
    assert final[0] == 0, final
    missing, dups = gaps_and_duplicates(read_ids(kafka, topic), rows)
    assert missing == 0 and dups <= batch, (missing, dups, results)
    stored = OffsetStore(kafka, offsets).read(name)
    assert stored[orjson.dumps({"table": table}).decode()]["incrementing"] == rows


def test_offset_order():
    assert offset_regressed({"incrementing": 10}, {"incrementing": 9})
    assert not offset_regressed({"incrementing": 10}, {"incrementing": 10})
    assert offset_regressed({"timestamp": "2024-01-02T00:00:00", "incrementing": 1},
                            {"timestamp": "2024-01-01T00:00:00", "incrementing": 5})
    assert not offset_regressed({"timestamp": "2024-01-01T00:00:00", "incrementing": 9},
                                {"timestamp": "2024-01-02T00:00:00", "incrementing": 1})
    assert offset_regressed({"timestamp": "2024-01-01T00:00:00", "incrementing": 9},
                            {"timestamp": "2024-01-01T00:00:00", "incrementing": 8})
    same = {"size": 10, "mtime_ns": 5}
    assert offset_regressed({**same, "record": 7}, {**same, "record": 6})
    assert not offset_regressed({**same, "record": 7}, {"size": 11, "mtime_ns": 6, "record": 0})  # a new file
    assert not offset_regressed(None, {"incrementing": 1})


class _Backwards(Source):
    """A source whose next batch claims an offset below the stored one (a bug, or a stale writer)."""

    def partitions(self) -> list[dict[str, Any]]:
        return [{"query": "query"}]

    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        yield SourceBatch(partition, "unused", pa.table({"id": [5]}), {"incrementing": 5})


def test_a_backwards_offset_is_refused_and_nothing_is_written(kafka, topic_factory, unique, monkeypatch):
    topic, offsets = topic_factory("back"), topic_factory("back-offs", create=False)
    cfg = SqlSourceConfig(name=f"back-{unique}", type="sql_source", connection_url="sqlite://", mode="incrementing",
                          incrementing_column="id", query="SELECT 1 AS id", topic_prefix=topic)
    store = OffsetStore(kafka, offsets)
    store.ensure()
    store.write(cfg.name, {'{"query":"query"}': {"incrementing": 10}})
    monkeypatch.setattr(source_runner, "build_source", lambda _config: _Backwards())
    with pytest.raises(OffsetRegression, match=r"would move backwards from \{\"incrementing\":10\} to "
                                               r"\{\"incrementing\":5\}; refused"):
        source_runner.run_source(cfg, kafka, offsets)
    assert store.read(cfg.name) == {'{"query":"query"}': {"incrementing": 10}}
    assert read_ids(kafka, topic) == []
