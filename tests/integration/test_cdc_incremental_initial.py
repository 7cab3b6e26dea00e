"""The initial snapshot as an incremental one (``snapshot_strategy: incremental``, issue 13 item 2: the
DBLog algorithm): streaming starts at once, the tables are read in watermarked chunks between the
changes, and a change committed while its row's chunk is read wins over the chunk's older copy. Real
PostgreSQL (wal2json) and Kafka."""

from __future__ import annotations

import threading

import pytest

from integrations.errors import ConfigError
from integrations.loading import load_connector
from tests.helpers import write_connector
from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)


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


def test_incremental_strategy_needs_a_signal_table(tmp_path) -> None:  # noqa: ANN001
    path = write_connector(tmp_path, {"name": "c", "type": "postgres_cdc", "connection_url": "postgresql://u@h/db",
                                      "topic_prefix": "pg", "snapshot_strategy": "incremental"})
    with pytest.raises(ConfigError) as e:
        load_connector(path)
    assert "snapshot_strategy incremental needs signal_data_collection" in str(e.value)
