"""cdc_to_kafka: row changes (60% inserts, 30% updates, 10% deletes) streamed PostgreSQL → Kafka through
the postgres_cdc source (wal2json, Debezium envelopes, JSON converter, tombstones after deletes).

Every run needs the same pending changes: setup creates a pool of wal2json slots first, then writes the
changes once; each engine or ceiling run takes a fresh slot of the pool (all hold the same WAL).

Ceiling: a bare reader of the same kind of slot with the same plugin and options, reading one chunk
ahead as the engine does — ``pg_logical_slot_get_changes`` on a temporary copy of the slot in a thread,
chunks of the same size, the documents fetched the same way — each change's wal2json document (not a
Debezium envelope: the ceiling does no conversion) produced with the same confluent-kafka client,
flushed per chunk, then ``pg_replication_slot_advance`` of the slot. It is the floor of decoding plus
transport; the engine adds parsing, envelopes, JSON conversion and tombstones.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from itertools import repeat

import psycopg

from bench.common import delete_topics, drop_db, make_pg_table
from integrations.config import PostgresCdcConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import run_source
from integrations.sources import postgres_cdc as _cdc  # noqa: F401 - imported before timing
from integrations.sources import postgres_cdc_pg as pg

NAME = "cdc_to_kafka"
DEFAULT_ROWS = 1_000_000
CHUNK = 100_000
POOL = 6  # slots: 3 engine + 3 ceiling runs (the harness's default repeat); max_replication_slots is 10


def setup(rows: int) -> dict:
    """An empty table of the benchmark shape, the slots, then ``rows`` changes in 20 transactions."""
    url = make_pg_table(0)
    tag = uuid.uuid4().hex[:6]
    slots = [f"bench_cdc_{tag}_{i}" for i in range(POOL)]
    ins, upd, dele = rows * 6 // 10, rows * 3 // 10, rows - rows * 6 // 10 - rows * 3 // 10
    with psycopg.connect(url, autocommit=True) as c:
        try:
            for s in slots:
                pg.create_slot(c, s)
            _changes(c, ins, upd, dele)
        except BaseException:
            for s in slots:
                pg.drop_slot(c, s)
            c.close()
            drop_db(url)
            raise
    return {"url": url, "rows": rows, "slots": slots, "used": 0}


def _changes(c: psycopg.Connection, ins: int, upd: int, dele: int) -> None:
    """The workload: inserts in 20 transactions, then one UPDATE and one DELETE."""
    step = max(ins // 20, 1)
    for lo in range(1, ins + 1, step):
        c.execute("INSERT INTO bench_rows SELECT g, (g %% 1000)::int, ((g %% 100000) / 100.0)::numeric(12,2), "
                  "'name-' || g || '-é漢', timestamptz '2024-01-01 00:00:00+00' + (g || ' seconds')::interval "
                  "FROM generate_series(%s::bigint, %s::bigint) g", (lo, min(lo + step - 1, ins)))
    c.execute("UPDATE bench_rows SET qty = qty + 1 WHERE id <= %s", (upd,))
    c.execute("DELETE FROM bench_rows WHERE id > %s", (ins - dele,))
    # synchronous_commit is off here: a run bounds its read by the WAL flush position, so wait until the
    # last commit is flushed (else a run may start before it and leave it to the next run)
    end = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    while c.execute("SELECT pg_current_wal_flush_lsn() < %s::pg_lsn", (end,)).fetchone()[0]:
        time.sleep(0.05)


def _take_slot(state: dict) -> str:
    """The next unused slot (the state file is rewritten: each run is a child process)."""
    import sys

    # run by bench.run_case <module> <part> <state.json>: the state file is this run's to update
    path = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] in ("engine", "ceiling") else None
    slot = state["slots"][state["used"] % len(state["slots"])]
    state["used"] += 1
    if path:
        with open(path, "w") as f:
            json.dump(state, f)
    return slot


def engine(state: dict) -> int:
    """The postgres_cdc source from a fresh slot (snapshot_mode never), default batch sizes."""
    slot = _take_slot(state)
    prefix = f"bench-cdc-{uuid.uuid4().hex[:8]}"
    cfg = PostgresCdcConfig(type="postgres_cdc", name=prefix, connection_url=state["url"], topic_prefix=prefix,
                            slot_name=slot, table_include=[r"public\.bench_rows"], snapshot_mode="never",
                            batch_max_events=CHUNK, publication_autocreate="disabled")
    res = run_source(cfg, offsets_topic=f"{prefix}-offsets")
    delete_topics(f"{prefix}.public.bench_rows", f"{prefix}-offsets", f"{prefix}.public.heartbeat")
    tombstones = state["rows"] - state["rows"] * 6 // 10 - state["rows"] * 3 // 10
    assert res.rows == state["rows"] + tombstones, f"{res.rows} records for {state['rows']} changes"
    return state["rows"]  # changes, as the ceiling counts (the engine also produced one tombstone per delete)


def ceiling(state: dict) -> int:
    """Bare loop, reading one call ahead as the engine does when much is pending: a thread decodes the
    next chunk from a temporary copy of the slot (get_changes) while the main thread produces each
    change document of the current one, flushes, and advances the slot."""
    from concurrent.futures import ThreadPoolExecutor

    slot = _take_slot(state)
    kafka = KafkaSettings.from_env()
    topic = f"bench-cdcc-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic)
    p = kafka.producer()
    conn, reader = pg.connect(state["url"]), pg.connect(state["url"])
    tables = pg.list_tables(conn, [r"public\.bench_rows"], [])
    upto = pg.current_lsn(conn)
    copy = f"{slot}_c"
    pg.copy_slot_temporary(reader, slot, copy)
    total = 0
    with ThreadPoolExecutor(1) as pool:
        def fetch() -> bytes:
            return bytes(pg.peek(reader, copy, upto, CHUNK, tables, consume=True))  # produce() takes bytes

        ahead = pool.submit(fetch)
        while True:
            blob = ahead.result()
            if not blob:
                break
            full = blob.count(b"\n") + 1 >= CHUNK
            if full:
                ahead = pool.submit(fetch)
            lines = [ln for ln in blob.split(b"\n") if b'"action":"B"' not in ln[:40] and b'"action":"C"' not in ln[:40]]
            last = blob.rsplit(b"\n", 1)[-1]
            deque(map(p.produce, repeat(topic), lines), maxlen=0)
            assert p.flush(300) == 0
            total += len(lines)
            end = json.loads(last)["_l"]
            pg.advance_slot(conn, slot, int(end))
            if end >= upto or not full:
                break
    reader.close()
    conn.close()
    delete_topics(topic)
    return total


def teardown(state: dict) -> None:
    """Drop the slots (they hold WAL), then the database."""
    with psycopg.connect(state["url"], autocommit=True) as c:
        for s in state["slots"]:
            pg.drop_slot(c, s)
    drop_db(state["url"])
