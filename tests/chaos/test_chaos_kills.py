"""Chaos: kill -9 at random moments, several times in a row, then rerun until done.

A SQL source (at-least-once, and ``exactly_once: true`` seen through read_committed) into a
3-partition topic; a Parquet sink; a PostgreSQL table sink in insert and in upsert mode. The
at-least-once source may repeat at most the batch in flight per kill (README, delivery guarantees);
every other mode ends with each record exactly once.
"""

from __future__ import annotations

import pytest

from tests.chaos.connectors import parquet_sink, sql_source, table_sink
from tests.chaos.harness import (
    SCALE,
    parquet_files,
    parquet_ids,
    partition_total,
    produce_numbered,
    seed_table,
    table_rows,
    table_tally,
    tally,
    temp_files,
    topic_ids,
)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at_least_once", "exactly_once"])
def test_source_killed_repeatedly(chaos, harness_db, pg_url, unique, exactly_once):
    n, table, prefix = SCALE.rows, f"src_{unique}", f"chaos-kill-{unique}-"
    seed_table(harness_db, table, n)
    topic = chaos.topic(prefix + table, partitions=3)
    cfg = chaos.connector(sql_source(f"chaos-kill-{unique}", pg_url, table, prefix, exactly_once))
    runs = chaos.kill_during(cfg, lambda: partition_total(chaos.kafka, topic), n, SCALE.kills, "source")
    committed = tally("topic (read_committed)", topic_ids(chaos.kafka, topic, committed=True), n)
    chaos.record(table_tally(harness_db, table, n, "source table"), committed)
    if exactly_once:
        chaos.record(tally("topic (read_uncommitted)", topic_ids(chaos.kafka, topic, committed=False), n))
    assert chaos.kills >= 1, f"no kill landed before the source finished: {[r.describe() for r in runs]}"
    assert len(chaos.kafka.partitions(topic)) == 3
    assert committed.stray == 0 and committed.missing == 0, "the source lost records"
    if exactly_once:
        assert committed.duplicates == 0, "exactly_once: a read_committed reader saw duplicates"
    else:
        bound = chaos.kills * SCALE.batch
        assert committed.duplicates <= bound, f"more duplicates than one batch per kill ({bound})"


def test_parquet_sink_killed_repeatedly(chaos, unique):
    n = SCALE.rows
    topic = chaos.topic(f"chaos-pq-{unique}", partitions=3)
    produce_numbered(chaos.kafka, topic, range(1, n + 1))
    lake = chaos.folder / "lake"
    cfg = chaos.connector(parquet_sink(f"chaos-pq-{unique}", topic, lake))
    files = -(-n // 3 // SCALE.batch) * 3
    chaos.kill_during(cfg, lambda: len(parquet_files(lake)), files, SCALE.kills, "parquet")
    got = tally("parquet dataset", parquet_ids(lake), n)
    leftovers = temp_files(lake)
    got.note = f"{len(leftovers)} .tmp left"
    chaos.record(tally("topic (read_committed)", topic_ids(chaos.kafka, topic), n), got)
    assert chaos.kills >= 1
    assert (got.missing, got.duplicates, got.stray) == (0, 0, 0), "the Parquet sink is not exactly once"
    assert not leftovers, f"temporary files of killed runs were left behind: {leftovers[:3]}"


@pytest.mark.parametrize("upsert", [False, True], ids=["insert", "upsert"])
def test_table_sink_killed_repeatedly(chaos, harness_db, pg_url, unique, upsert):
    n, table = SCALE.rows, f"sink_{unique}"
    keys = n // 2 if upsert else None
    topic = chaos.topic(f"chaos-tbl-{unique}", partitions=3)
    produce_numbered(chaos.kafka, topic, range(1, n + 1), keys=keys)
    cfg = chaos.connector(table_sink(f"chaos-tbl-{unique}", topic, pg_url, table, upsert=upsert))
    chaos.kill_during(cfg, lambda: table_rows(harness_db, table, keys), n, SCALE.kills, "table")
    expected = keys or n
    got = table_tally(harness_db, table, expected, f"table ({'upsert' if upsert else 'insert'})",
                      latest=f"id + {keys}" if upsert else None)
    numbered = topic_ids(chaos.kafka, topic, column="n" if upsert else "id")  # upserts: records numbered by n
    chaos.record(tally("topic (read_committed)", numbered, n), got)
    assert chaos.kills >= 1
    assert (got.missing, got.duplicates, got.stray, got.stale) == (0, 0, 0, 0), "the table sink is not exactly once"
