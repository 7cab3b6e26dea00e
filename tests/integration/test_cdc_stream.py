"""postgres_cdc against real PostgreSQL (wal2json) and real Kafka: op sequences, envelopes, tombstones,
runs bounded by batch_max_events, the slot advanced only to stored offsets, lost slots."""

from __future__ import annotations

import logging

import pytest

from integrations.sources.postgres_cdc_pg import CdcError
from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes, ops_by_key  # noqa: F401 (fixture)


def _confirmed(c: Cdc) -> int:
    rows = c.query(f"SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots "
                   f"WHERE slot_name = '{c.slot}'")
    return int(rows[0][0])


def test_insert_update_delete_truncate_op_sequence(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), ok boolean)")
    first = cdc.run(batch_max_events=3000)  # creates the slot; the empty table's snapshot is nothing
    assert first.rows == 0
    cdc.sql("INSERT INTO items SELECT g, 'n' || g, g / 4.0, g % 2 = 0 FROM generate_series(1, 10000) g",
            "UPDATE items SET name = 'u' || id, amount = amount + 1 WHERE id <= 3000",
            "DELETE FROM items WHERE id > 9000")
    mid = cdc.run(batch_max_events=3000)
    assert mid.rows == 10000 + 3000 + 1000 + 1000  # + one tombstone per delete
    cdc.sql("INSERT INTO items VALUES (20000, 'late', 1, true)", "TRUNCATE items")
    cdc.run(batch_max_events=3000)
    records = envelopes(cdc.kafka, cdc.topic("items"))
    seqs = ops_by_key(records)
    expected = {i: ["c", "u"] if i <= 3000 else ["c", "d", "-"] if i > 9000 else ["c"] for i in range(1, 10001)}
    expected[20000] = ["c"]
    expected[None] = ["t"]
    assert seqs == expected
    by_op = {}
    for k, v in records:
        if v is not None:
            by_op.setdefault(v["op"], []).append((k, v))
    _k, upd = by_op["u"][0]
    assert upd["after"] == {"id": 1, "name": "u1", "amount": 1.25, "ok": False}
    assert upd["before"] is None  # REPLICA IDENTITY DEFAULT: no old row for updates
    _k, dele = by_op["d"][0]
    assert dele["before"] == {"id": 9001, "name": None, "amount": None, "ok": None} and dele["after"] is None
    src = dele["source"]
    assert (src["connector"], src["schema"], src["table"], src["snapshot"]) == ("postgresql", "public", "items",
                                                                                 "false")
    assert src["db"] and src["txId"] > 0 and src["lsn"] > 0 and src["ts_ms"] > 0
    lsns = [v["source"]["lsn"] for _k, v in records if v is not None]
    assert len(lsns) == len(set(lsns))  # every change once: no duplicate LSN
    # the slot sits exactly where the stored offset says: nothing pending, nothing skipped
    again = cdc.run()
    assert again.rows == 0


def test_replica_identity_full_before_and_key_change(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE acct (id int PRIMARY KEY, owner text, balance int)",
            "ALTER TABLE acct REPLICA IDENTITY FULL")
    cdc.overrides["snapshot_mode"] = "never"
    cdc.run()
    cdc.sql("INSERT INTO acct VALUES (1, 'ann', 10)", "UPDATE acct SET balance = 20 WHERE id = 1",
            "UPDATE acct SET id = 2 WHERE id = 1")
    cdc.run()
    records = envelopes(cdc.kafka, cdc.topic("acct"))
    assert [(k, None if v is None else v["op"]) for k, v in records] == [
        ({"id": 1}, "c"), ({"id": 1}, "u"), ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 2}, "c")]
    assert records[1][1]["before"] == {"id": 1, "owner": "ann", "balance": 10}
    assert records[2][1]["before"] == {"id": 1, "owner": "ann", "balance": 20}
    assert records[4][1]["after"] == {"id": 2, "owner": "ann", "balance": 20}


def test_unchanged_toast_value(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
    cdc.overrides["snapshot_mode"] = "never"
    cdc.run()
    # random text does not compress: stored out of line (TOASTed)
    cdc.sql("INSERT INTO docs SELECT 1, 't', string_agg(md5(random()::text), '') FROM generate_series(1, 400)",
            "UPDATE docs SET title = 't2' WHERE id = 1")
    cdc.run()
    records = envelopes(cdc.kafka, cdc.topic("docs"))
    assert [v["op"] for _k, v in records] == ["c", "u"]
    assert len(records[0][1]["after"]["body"]) == 12800
    assert records[1][1]["after"] == {"id": 1, "title": "t2", "body": "__debezium_unavailable_value"}


def test_slot_advances_only_to_stored_offset_and_long_transaction(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    cdc.overrides["snapshot_mode"] = "never"
    cdc.run()
    import psycopg

    long_tx = psycopg.connect(cdc.pg_url)  # a transaction open across runs
    long_tx.execute("SET synchronous_commit = on")  # its commit is flushed: the next run reads up to the flush
    long_tx.execute("INSERT INTO t SELECT g, 'long' FROM generate_series(1, 500) g")
    cdc.sql("INSERT INTO t SELECT g, 'short' FROM generate_series(1001, 1100) g")
    r1 = cdc.run()
    assert r1.rows == 100
    before = _confirmed(cdc)
    long_tx.execute("INSERT INTO t SELECT g, 'long' FROM generate_series(501, 600) g")
    long_tx.commit()
    long_tx.close()
    r2 = cdc.run(batch_max_events=250)  # one 600-row transaction split over batches
    assert r2.rows == 600
    assert _confirmed(cdc) > before
    ids = sorted(k["id"] for k, v in envelopes(cdc.kafka, cdc.topic("t")))
    assert ids == list(range(1, 601)) + list(range(1001, 1101))


def test_slot_dropped_behind_its_back_fails_loudly(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY)")
    cdc.run()
    cdc.sql("INSERT INTO t VALUES (1)")
    cdc.run()
    cdc.sql(f"SELECT pg_drop_replication_slot('{cdc.slot}')")
    cdc.sql("INSERT INTO t VALUES (2)")
    with pytest.raises(CdcError) as e:
        cdc.run()
    msg = str(e.value)
    assert cdc.slot in msg and "does not exist" in msg and "when_needed" in msg and "\n" not in msg
    # when_needed: a new slot and a new snapshot (the rows, as reads)
    cdc.run(snapshot_mode="when_needed")
    ops = [(k["id"], v["op"]) for k, v in envelopes(cdc.kafka, cdc.topic("t")) if v is not None]
    assert ops == [(1, "c"), (1, "r"), (2, "r")]


def test_max_events_per_run_splits_a_transaction_across_runs(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY, v int)")
    cdc.overrides.update(snapshot_mode="never", batch_max_events=100, max_events_per_run=250)
    cdc.run()
    cdc.sql("INSERT INTO t SELECT g, 0 FROM generate_series(1, 1000) g",  # one transaction of 1,000
            "UPDATE t SET v = 1 WHERE id <= 120", "DELETE FROM t WHERE id > 990")
    moved = []
    for _ in range(8):
        moved.append(cdc.run().rows)
    assert moved[:4] == [250, 250, 250, 250] and sum(moved) == 1000 + 120 + 10 + 10
    records = envelopes(cdc.kafka, cdc.topic("t"))
    seqs = ops_by_key(records)
    assert seqs == {i: ["c", "u"] if i <= 120 else ["c", "d", "-"] if i > 990 else ["c"] for i in range(1, 1001)}


def test_read_ahead_moves_the_same_stream_as_reading_in_line(cdc: Cdc, caplog: pytest.LogCaptureFixture) -> None:
    """Two connectors on one database, one reading in line, one reading ahead from a temporary copy of
    its slot (read_ahead_wal_bytes 0), both in batches of 1,000 with a per-run cap: the same events in
    the same order, each once, both slots at the same position, and no temporary slot left."""
    from dataclasses import replace

    ahead = replace(cdc, name=f"{cdc.name}ra", prefix=f"{cdc.prefix}ra", offsets_topic=f"{cdc.offsets_topic}-ra",
                    topics=set())
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)")
    opts = {"batch_max_events": 1000, "max_events_per_run": 7000}
    cdc.run(read_ahead_wal_bytes=None, **opts)
    ahead.run(read_ahead_wal_bytes=0, **opts)
    for i in range(6):  # 6 transactions of 2,000 inserts, 500 updates and 100 deletes; one of 2,900 updates
        base = i * 2000
        cdc.sql(f"INSERT INTO items SELECT g, 'n' || g, g FROM generate_series({base + 1}, {base + 2000}) g",
                f"UPDATE items SET n = -n WHERE id BETWEEN {base + 1} AND {base + 500}",
                f"DELETE FROM items WHERE id BETWEEN {base + 1901} AND {base + 2000}")
    cdc.sql("UPDATE items SET name = 'all' WHERE id <= 3000")
    caplog.set_level(logging.DEBUG, logger="headrace.source.cdc")
    try:
        for c, read_ahead in ((cdc, None), (ahead, 0)):
            runs = [c.run(read_ahead_wal_bytes=read_ahead, **opts).rows for _ in range(4)]
            assert sum(runs) == 6 * (2000 + 500 + 100 + 100) + 2900, runs  # + a tombstone per delete (ids 1901-2000 gone)
            assert runs[-1] == 0 and runs[0] >= 7000  # the cap splits the work over runs
        mine, theirs = (envelopes(c.kafka, c.topic("items")) for c in (cdc, ahead))

        def shape(records):
            return [(k, None if v is None else (v["op"], v["before"], v["after"], v["source"]["lsn"],
                                                v["source"]["txId"])) for k, v in records]

        assert shape(mine) == shape(theirs)
        assert len({(k["id"], v["source"]["lsn"], v["op"]) for k, v in theirs if v is not None}) == \
            sum(v is not None for _k, v in theirs)  # each event once
        assert _confirmed(cdc) == _confirmed(ahead)
        assert ahead.temporary_slots() == []
        read_ahead = [r.getMessage() for r in caplog.records if "reading ahead from its temporary copy" in r.getMessage()]
        # `ahead`'s runs only: the three with changes (the fourth too if other databases wrote WAL meanwhile)
        assert len(read_ahead) in (3, 4) and all(ahead.slot in m for m in read_ahead), read_ahead
    finally:
        cdc.kafka.delete_topics(sorted(ahead.topics | {ahead.offsets_topic}))
