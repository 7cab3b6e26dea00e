"""Re-snapshots on demand while a postgres_cdc connector streams: a key range (Debezium's
``additional-conditions``) from the CLI, from the Dagster job ``headrace_cdc_snapshot`` and from a
signal row; a bad or writing filter is refused in one line and streaming goes on. Real PostgreSQL
(wal_level=logical, wal2json), real Kafka."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.ops_jobs import ops_definitions
from integrations.errors import ConfigError
from integrations.runtime.sink_runner import run_sink
from integrations.sources.postgres_cdc_signals import request_snapshot
from resources.kafka import KafkaResource
from tests.conftest import run_cli
from tests.helpers import write_connector
from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)


def _setup(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text, n bigint)",
            "CREATE TABLE signals (id text PRIMARY KEY, type text, data text)",
            "CREATE SEQUENCE probe_seq",
            "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 2000) g")
    cdc.overrides.update(table_include=[r"public\.items"], signal_data_collection="public.signals",
                         snapshot_fetch_size=300, batch_max_events=400)
    cdc.run()  # the initial snapshot: 2,000 reads


def _ops(cdc: Cdc, topic: str) -> list[tuple[int, str]]:
    return [(k["id"], v["op"]) for k, v in envelopes(cdc.kafka, topic) if v is not None]


def test_key_range_resnapshot_from_the_cli_reads_only_that_range(cdc: Cdc, tmp_path: Path) -> None:
    _setup(cdc)
    path = write_connector(tmp_path / "connectors", cdc.config().model_dump(mode="json", exclude_defaults=True))
    cdc.sql("UPDATE items SET name = 'changed' WHERE id BETWEEN 150 AND 160")
    out = run_cli("snapshot", str(path), "--table", "public.items", "--filter", "id BETWEEN 100 AND 199",
                  check=True)
    assert "snapshot of public.items where id BETWEEN 100 AND 199 requested" in out.stdout
    cdc.sql("DELETE FROM items WHERE id = 120")
    cdc.run()
    topic = cdc.topic("items")
    ops = _ops(cdc, topic)
    reads = [i for i, op in ops if op == "r"]
    # the signal is read in stream order: the update before it streams first, then the range as it is
    # when the snapshot runs (id 120 already deleted), then the delete
    assert sorted(reads[2000:]) == [i for i in range(100, 200) if i != 120]
    assert [op for i, op in ops[2000:] if i == 155] == ["u", "r"]
    names = {k["id"]: v["after"]["name"] for k, v in envelopes(cdc.kafka, topic)
             if v is not None and v["op"] == "r" and v["source"]["snapshot"] != "false"}
    assert names[155] == "changed"
    assert cdc.run().rows == 0  # nothing pending: the snapshot is done and stored


def test_two_signals_in_one_batch_snapshot_the_union_of_their_ranges(cdc: Cdc) -> None:
    _setup(cdc)
    config = cdc.config()
    request_snapshot(config, ["items"], "id <= 5")
    request_snapshot(config, ["items"], "id > 1995")
    cdc.run()
    reads = [i for i, op in _ops(cdc, cdc.topic("items")) if op == "r"]
    assert sorted(reads[2000:]) == [1, 2, 3, 4, 5, 1996, 1997, 1998, 1999, 2000]


def test_dagster_job_requests_a_resnapshot(cdc: Cdc) -> None:
    _setup(cdc)
    defs = dg.Definitions.merge(ops_definitions([cdc.config()]), dg.Definitions(resources={"kafka": KafkaResource()}))
    result = defs.get_job_def("headrace_cdc_snapshot").execute_in_process(run_config={"ops": {
        "headrace_cdc_snapshot_op": {"config": {"connector": cdc.name, "tables": ["public.items"],
                                                "filter": "id > 1990"}}}})
    assert result.success
    cdc.run()
    reads = [i for i, op in _ops(cdc, cdc.topic("items")) if op == "r"]
    assert sorted(reads[2000:]) == list(range(1991, 2001))


def test_bad_or_writing_filters_are_refused_and_streaming_goes_on(cdc: Cdc, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    _setup(cdc)
    config = cdc.config()
    request_snapshot(config, ["items"], "no_such_column > 1")
    cdc.sql("INSERT INTO items VALUES (5000, 'after', 1)")
    cdc.run()
    request_snapshot(config, ["items"], "nextval('probe_seq') > 0")  # a write: the READ ONLY transaction refuses it
    cdc.sql("INSERT INTO items VALUES (5001, 'after', 1)")
    cdc.run()
    ops = _ops(cdc, cdc.topic("items"))
    assert ops[2000:] == [(5000, "c"), (5001, "c")]  # no re-snapshot rows, the stream went on
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("no_such_column" in m and "re-snapshot is skipped" in m for m in errors), errors
    assert any("read-only transaction" in m for m in errors), errors
    assert cdc.query("SELECT last_value, is_called FROM probe_seq") == [(1, False)]
    with pytest.raises(ConfigError, match="does not capture public.other"):
        request_snapshot(config, ["public.other"])
    no_signals = cdc.config(signal_data_collection=None)
    with pytest.raises(ConfigError, match="set signal_data_collection"):
        request_snapshot(no_signals, ["items"])


def test_incremental_snapshot_keeps_changes_made_during_its_windows(cdc: Cdc, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DBLog: a row updated or deleted while its chunk is read (between the watermarks) is not
    overwritten by the chunk's copy, so a replica converges; rows nobody touched arrive as reads."""
    from integrations.sources import postgres_cdc_pg as pg
    from tests.integration.test_cdc_replica import _replica, _sink, _source

    _setup(cdc)
    cdc.overrides.update(snapshot_fetch_size=500)
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    topic = cdc.topic("items")
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    real = pg.read_chunk
    touched: list[int] = []

    def racing_read(conn, table, after, limit, condition=None, reader=None):  # a writer commits around each read
        first = 1 if after is None else int(after[0]) + 1
        cdc.sql(f"UPDATE items SET name = 'before-read' WHERE id = {first + 1}")  # visible to the read
        out = real(conn, table, after, limit, condition, reader=reader)
        cdc.sql(f"UPDATE items SET name = 'after-read' WHERE id = {first + 2}",  # newer than the chunk's copy
                f"DELETE FROM items WHERE id = {first + 3}")  # the chunk still holds it
        touched.extend(i for i in (first + 1, first + 2, first + 3) if i <= 2000)
        return out

    monkeypatch.setattr(pg, "read_chunk", racing_read)
    request_snapshot(cdc.config(), ["items"])
    cdc.run()
    monkeypatch.setattr(pg, "read_chunk", real)
    assert len(touched) == 12  # 4 windows of 500 rows (and a fifth that finds the table done)
    records = [(k["id"], v) for k, v in envelopes(cdc.kafka, topic) if v is not None]
    reads = [i for i, v in records[2000:] if v["op"] == "r"]
    assert all(v["source"]["snapshot"] == "incremental" for _i, v in records[2000:] if v["op"] == "r")
    deleted = set(touched[2::3])
    assert sorted(reads) == [i for i in range(1, 2001) if i not in set(touched)]  # touched keys: stream only
    assert [v["op"] for i, v in records[2000:] if i in deleted] == ["d"] * 4
    run_sink(_sink(cdc, url, topic), cdc.kafka)
    replica = _replica(url)
    assert replica == _source(cdc)
    assert len(replica) == 1996 and not deleted & {r[0] for r in replica}
    assert cdc.run().rows == 0  # the snapshot is done and stored


def test_stop_snapshot_drops_the_rest_of_an_incremental_snapshot(cdc: Cdc, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Debezium's ``stop-snapshot`` signal: sent while the second chunk is read, it drops that chunk and
    the rest of the table; only the first chunk's 300 rows arrive as reads. From the CLI, ``--stop``
    with nothing running changes nothing."""
    from integrations.sources import postgres_cdc_pg as pg
    from integrations.sources.postgres_cdc_signals import request_stop

    _setup(cdc)
    topic = cdc.topic("items")
    real, reads = pg.read_chunk, []

    def read_then_stop(conn, table, after, limit, condition=None, reader=None):
        out = real(conn, table, after, limit, condition, reader=reader)
        reads.append(after)
        if len(reads) == 2:  # committed between the second window's watermarks
            request_stop(cdc.config(), ["items"])
        return out

    monkeypatch.setattr(pg, "read_chunk", read_then_stop)
    request_snapshot(cdc.config(), ["items"])
    cdc.run()
    monkeypatch.setattr(pg, "read_chunk", real)
    assert len(reads) == 2, reads  # no third chunk was read
    snap = [i for i, op in _ops(cdc, topic)[2000:] if op == "r"]
    assert snap == list(range(1, 301))
    assert cdc.run().rows == 0  # nothing queued any more
    path = write_connector(tmp_path / "connectors", cdc.config().model_dump(mode="json", exclude_defaults=True))
    out = run_cli("snapshot", str(path), "--stop", check=True)
    assert "stop of the incremental snapshot of every table requested" in out.stdout
    assert cdc.run().rows == 0 and len(_ops(cdc, topic)) == 2300
