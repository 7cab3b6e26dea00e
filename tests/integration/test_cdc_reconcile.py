"""Reconciliation behind a CDC source (issue 14 item 6), on real PostgreSQL, Kafka and DuckDB: the
``reconciled`` check of a Parquet dataset (every change event one row; tombstones skipped) and of a
replica table (Debezium's unwrap, upserts, deletes by tombstone) compares its rows with the records its
sink read, as a bound that names why, and fails when the output holds more rows than were read."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from assets.checks import pipelines, reconcile_evaluation
from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from tests.integration.cdc_helpers import Cdc, cdc_fixture  # noqa: F401 (fixture)

UNWRAP = [{"type": "ExtractNewRecordState", "delete_handling_mode": "none", "drop_tombstones": False}]


def test_cdc_pipelines_reconcile_as_bounds(cdc: Cdc, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    cdc.sql("CREATE TABLE items (id int PRIMARY KEY, name text)",
            "INSERT INTO items SELECT g, 'seed' || g FROM generate_series(1, 5) g")
    cdc.overrides.update(table_include=[r"public\.items"])
    cdc.run()  # the snapshot: 5 reads
    cdc.sql("INSERT INTO items VALUES (6, 'six')", "UPDATE items SET name = 'two' WHERE id = 2",
            "DELETE FROM items WHERE id = 3")
    cdc.run()  # c, u, d and a tombstone
    topic = cdc.topic("items")
    lake = ParquetSinkConfig(type="parquet_sink", name=f"lake-{cdc.name}", topics=[topic], path="lake")
    url = f"duckdb:///{tmp_path}/replica.duckdb"
    replica = TableSinkConfig(type="table_sink", name=f"rep-{cdc.name}", topics=[topic], connection_url=url,
                              table_name_format="replica", auto_create=True, insert_mode="upsert",
                              pk_mode="record_key", pk_fields=["id"], delete_enabled=True, transforms=UNWRAP)
    assert run_sink(lake, cdc.kafka).rows == 8
    run_sink(replica, cdc.kafka)
    found = {p.sink.name: p for p in pipelines([cdc.config(), lake, replica])}
    assert set(found) == {lake.name, replica.name}
    assert found[lake.name].source.name == cdc.name  # the topic's producer, found by its prefix

    ev = reconcile_evaluation(found[lake.name], cdc.kafka)
    assert (ev.passed, ev.description) == (True, f"source not countable, topic {topic!r} 9 records, dataset 8 rows "
                                                 "(at most the records read): agree; the dataset skips the "
                                                 "tombstones that follow deletes")
    ev = reconcile_evaluation(found[replica.name], cdc.kafka)
    assert (ev.passed, ev.description) == (
        True, f"source not countable, topic {topic!r} 9 records, table 5 rows (at most the records read): agree; "
              "the sink's transform ExtractNewRecordState may drop or route records; insert_mode upsert merges "
              "records by key; tombstones delete rows")
    with duckdb.connect(str(tmp_path / "replica.duckdb")) as wh:
        assert wh.execute("SELECT id, name FROM replica ORDER BY id").fetchall() == \
            [(1, "seed1"), (2, "two"), (4, "seed4"), (5, "seed5"), (6, "six")]

    # a copy of the dataset's file: more rows than the sink read, which no bound allows
    [written] = [f for f in (tmp_path / "lake" / topic).rglob("*.parquet")]
    pq.write_table(pq.read_table(written), written.with_name("copy-" + written.name))
    ev = reconcile_evaluation(found[lake.name], cdc.kafka)
    assert (ev.passed, ev.description.split(";")[0]) == (
        False, f"source not countable, topic {topic!r} 9 records, dataset 16 rows (at most the records read): DIFFER")
