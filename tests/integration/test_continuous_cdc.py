"""Continuous mode for ``postgres_cdc`` through Dagster (issue 14 item 2): one long-lived
``<connector>_continuous_job`` run streams inserts, updates and deletes committed while it goes; it is
terminated mid-stream (the run marked CANCELING, as the UI's "Terminate" does) and stops at a batch
boundary; a new run resumes from the stored LSN while changes keep arriving. Every change event is in
the topic exactly once, read committed (a clean stop stores what it delivered, so at-least-once
delivers no duplicate here). Real PostgreSQL (wal2json) and real Kafka."""

from __future__ import annotations

import threading
import time

import orjson
import psycopg

from tests.integration.cdc_helpers import Cdc, cdc_fixture, ops_by_key  # noqa: F401 (fixture)
from tests.integration.continuous_helpers import (
    materialized_rows,
    read_records,
    start_continuous_job,
    stop_line,
    tear_down,
    wait_for,
)

SNAPSHOT = 50


class ChangeWriter(threading.Thread):
    """Commits one transaction after another (3 inserts, every 2nd an update of a snapshot row, every 5th
    a delete of an earlier insert), each with a WAL flush, until told to stop; ``expected`` is the op
    sequence per key that the topic must hold (``-``: the tombstone after a delete)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="cdc-writer", daemon=True)
        self.url = url
        self.expected: dict[int, list[str]] = {i: ["r"] for i in range(1, SNAPSHOT + 1)}
        self.transactions = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                c.execute("SET synchronous_commit = on")  # the CDC run reads only up to the flushed WAL
                k = 0
                while not self.halt.is_set():
                    ids = [1000 + 3 * k + j for j in range(3)]
                    with c.transaction():
                        c.execute("INSERT INTO items SELECT g, 'c' || g FROM unnest(%s::int[]) g", (ids,))
                        if k % 2 == 0:
                            c.execute("UPDATE items SET v = v || 'u' WHERE id = %s", ((k // 2) % SNAPSHOT + 1,))
                        if k % 5 == 4:
                            c.execute("DELETE FROM items WHERE id = %s", (1000 + 3 * (k - 4),))
                    for i in ids:
                        self.expected[i] = ["c"]
                    if k % 2 == 0:
                        self.expected[(k // 2) % SNAPSHOT + 1].append("u")
                    if k % 5 == 4:
                        self.expected[1000 + 3 * (k - 4)] += ["d", "-"]
                    k += 1
                    self.transactions = k
                    time.sleep(0.02)  # pacing only: the assertions count records, never time
        except BaseException as e:  # noqa: BLE001 (reported by the test)
            self.error = e


def test_continuous_cdc_run_terminated_mid_stream_resumes_exactly_once(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, v text)",
            f"INSERT INTO items SELECT g, 's' || g FROM generate_series(1, {SNAPSHOT}) g")
    # the continuous op stores offsets in the default offsets topic: the connector's are reset afterwards
    config = cdc.config(table_include=[r"public\.items"], batch_max_events=7,
                        continuous={"max_run_seconds": 600, "idle_sleep_seconds": 0.1})
    topic = cdc.topic("items")
    cdc.topics.update(f"{cdc.prefix}.public.{t}" for t in ("snapshot", "heartbeat"))
    writer = ChangeWriter(cdc.pg_url)

    def records() -> list:
        return read_records(cdc.kafka, topic)

    def count() -> int:
        return sum(len(ops) for ops in writer.expected.values())

    first, second = start_continuous_job(config), None
    try:
        # the snapshot first (whole: one chunk), then the changes, so that no row is both snapshot and insert
        wait_for("the snapshot in the topic", lambda: len(records()) >= SNAPSHOT, alive=first.alive)
        writer.start()
        wait_for("changes streaming", lambda: len(records()) >= SNAPSHOT + 60, alive=first.alive)
        result = first.terminate()
        assert writer.is_alive() and writer.error is None, "the changes ended before the run was terminated"
        stop_line(result)
        assert len(materialized_rows(first)) > 1 and all(n > 0 for n in materialized_rows(first))
        stopped_at = writer.transactions
        seen = records()
        assert len(_lsns(seen)) == len(set(_lsns(seen)))  # nothing twice so far

        second = start_continuous_job(config)  # changes keep arriving while it starts and runs
        wait_for("changes after the restart", lambda: len(records()) > len(seen), alive=second.alive)
        wait_for("more changes during the second run", lambda: writer.transactions >= stopped_at + 30)
        writer.halt.set()
        writer.join(60)
        assert writer.error is None, writer.error
        wait_for(f"all {count()} events", lambda: len(records()) >= count(), alive=second.alive)
        stop_line(second.terminate())
    finally:
        tear_down(cdc.kafka, config.name, writer.halt, first, second)
    got = _parsed(records())
    assert len(got) == count()
    assert ops_by_key(got) == writer.expected  # every change once, in order per key
    tombstones = sum(ops.count("-") for ops in writer.expected.values())
    lsns = _lsns(records())
    assert len(lsns) == len(set(lsns)) == count() - SNAPSHOT - tombstones


def _parsed(records: list) -> list:
    return [(None if k is None else orjson.loads(k), None if v is None else orjson.loads(v)) for k, v in records]


def _lsns(records: list) -> list[int]:
    """The LSN of every streamed change event (snapshot reads share the slot's start LSN; tombstones have none)."""
    return [v["source"]["lsn"] for _k, v in _parsed(records) if v is not None and v["op"] != "r"]
