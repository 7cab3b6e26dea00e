"""The initial snapshot as an incremental one (``snapshot_strategy: incremental``, issue 13 item 2: the
DBLog algorithm): streaming starts at once, the tables are read in watermarked chunks between the
changes, and a change committed while its row's chunk is read wins over the chunk's older copy. Real
PostgreSQL (wal2json) and Kafka."""

from __future__ import annotations

import collections
import signal
import threading
from pathlib import Path

import pytest

from integrations.errors import ConfigError
from integrations.loading import load_connector
from integrations.offsets import OffsetStore
from tests.helpers import write_connector
from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)
from tests.integration.source_helpers import finish, start_run


def _replay(records: list) -> dict[int, str]:
    """The table a consumer rebuilds by applying the topic in order: id → name."""
    out: dict[int, str] = {}
    for k, v in records:
        if v is None:
            continue
        if v["op"] == "d":
            out.pop(k["id"], None)
        else:
            out[k["id"]] = v["after"]["name"]
    return out


def test_initial_snapshot_interleaves_with_concurrent_changes(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text)",
            "CREATE TABLE signals (id text PRIMARY KEY, type text, data text)",
            "INSERT INTO items SELECT g, 'seed' || g FROM generate_series(1, 3000) g")
    cdc.overrides.update(signal_data_collection="public.signals", snapshot_strategy="incremental",
                         snapshot_fetch_size=250, batch_max_events=300)
    stop = threading.Event()

    def writer() -> None:  # updates, deletes and inserts all through the snapshot's chunks
        i = 0
        while not stop.is_set() and i < 400:
            i += 1
            cdc.sql(f"UPDATE items SET name = 'upd{i}' WHERE id = {(i * 7) % 3000 + 1}",
                    f"DELETE FROM items WHERE id = {(i * 13) % 3000 + 1}",
                    f"INSERT INTO items VALUES ({3000 + i}, 'new{i}')")

    t = threading.Thread(target=writer)
    t.start()
    try:
        first = cdc.run()
    finally:
        stop.set()
        t.join()
    assert first.rows > 0
    while cdc.run().rows:  # whatever the writer committed after the first run's bound
        pass
    topic = cdc.topic("items")
    records = envelopes(cdc.kafka, topic)
    source = dict(cdc.query("SELECT id, name FROM items"))
    assert _replay(records) == source  # the replica converges, whatever the interleaving
    reads = [k["id"] for k, v in records if v is not None and v["op"] == "r"]
    assert {v["source"]["snapshot"] for _k, v in records if v is not None and v["op"] == "r"} == {"incremental"}
    assert len(reads) == len(set(reads))  # each row read once
    streamed = {k["id"] for k, v in records if v is not None and v["op"] != "r"}
    assert set(source) - streamed <= set(reads)  # every row no streamed change touched came from the snapshot
    ops = [v["op"] for _k, v in records if v is not None]
    first_r, last_r = ops.index("r"), len(ops) - 1 - ops[::-1].index("r")
    assert any(op != "r" for op in ops[first_r:last_r]), "the snapshot's chunks did not interleave with the stream"
    assert cdc.run().rows == 0  # nothing pending: the snapshot is done and stored


def test_kill9_before_the_first_offset_requests_the_snapshot_again(cdc: Cdc, tmp_path: Path) -> None:
    """kill -9 after the slot is created and the snapshot requested, before the first offset is stored:
    the next run adopts the slot and requests the snapshot again (both signals are in the WAL after the
    slot's start), so every row arrives and none is skipped: two requests read in one batch are one
    snapshot (as here), in two batches a row is read at most twice."""
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text)",
            "CREATE TABLE signals (id text PRIMARY KEY, type text, data text)",
            "INSERT INTO items SELECT g, 'seed' || g FROM generate_series(1, 2000) g")
    cdc.overrides.update(signal_data_collection="public.signals", snapshot_strategy="incremental",
                         snapshot_fetch_size=500, batch_max_events=600)
    path = write_connector(tmp_path / "connectors", cdc.settings())
    once = tmp_path / "killed-once"
    code, _out, err = finish(start_run(path, cdc.offsets_topic, {"HEADRACE_FAULT": "source_after_produce",
                                                                 "HEADRACE_FAULT_ONCE": str(once)}))
    assert code == -signal.SIGKILL and once.exists(), err  # killed at its first batch, the slot's start
    assert cdc.query(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{cdc.slot}'") == [(1,)]
    assert OffsetStore(cdc.kafka, cdc.offsets_topic).read(cdc.name) == {}  # nothing stored
    assert cdc.query("SELECT count(*) FROM signals WHERE type = 'execute-snapshot'") == [(1,)]
    cdc.sql("UPDATE items SET name = 'after-kill' WHERE id <= 10", "DELETE FROM items WHERE id > 1990")
    while cdc.run().rows:
        pass
    assert cdc.query("SELECT count(*) FROM signals WHERE type = 'execute-snapshot'") == [(2,)]  # asked again
    records = envelopes(cdc.kafka, cdc.topic("items"))
    source = dict(cdc.query("SELECT id, name FROM items"))
    assert _replay(records) == source
    reads = collections.Counter(k["id"] for k, v in records if v is not None and v["op"] == "r")
    streamed = {k["id"] for k, v in records if v is not None and v["op"] != "r"}
    assert set(source) - streamed <= set(reads)  # no row skipped
    assert max(reads.values()) <= 2  # at most once per request
    print(f"kill -9 before the first offset: {len(reads)} rows read, {sum(n - 1 for n in reads.values())} twice")
    assert cdc.run().rows == 0


def test_incremental_strategy_needs_a_signal_table(tmp_path) -> None:  # noqa: ANN001
    path = write_connector(tmp_path, {"name": "c", "type": "postgres_cdc", "connection_url": "postgresql://u@h/db",
                                      "topic_prefix": "pg", "snapshot_strategy": "incremental"})
    with pytest.raises(ConfigError) as e:
        load_connector(path)
    assert "snapshot_strategy incremental needs signal_data_collection" in str(e.value)
