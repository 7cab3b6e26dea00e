"""Issue 14 item 8: the metadata a catalog user expects.

Definitions metadata is read back through Dagster's GraphQL API from a code server: owners and tags
written in the connectors' YAML, ``dagster/uri`` (absolute, no password), ``dagster/table_name``,
``dagster/column_schema`` from ``value_schema`` and code references to each connector's YAML file.
After real sink runs through Dagster, :func:`assets.metadata.sink_catalog` counts the whole dataset
and table (``dagster/row_count`` 5, then 8 after 3 more records) and reads the written columns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import yaml
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from assets.definitions import build_definitions
from assets.keys import sink_assets
from assets.metadata import sink_catalog
from integrations.loading import load_folder
from tests.conftest import REPO
from tests.helpers import produce_all, write_connector

NODES = """{ assetNodes { assetKey { path }
  owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
  tags { key value }
  metadataEntries { label __typename
    ... on TextMetadataEntry { text } ... on PathMetadataEntry { path }
    ... on TableSchemaMetadataEntry { schema { columns { name type } } }
    ... on CodeReferencesMetadataEntry { codeReferences { ... on LocalFileCodeReference { filePath lineNumber } } } }
} }"""


def _entry(e: dict) -> object:
    kind = e["__typename"]
    if kind == "TextMetadataEntry":
        return e["text"]
    if kind == "PathMetadataEntry":
        return e["path"]
    if kind == "TableSchemaMetadataEntry":
        return [(c["name"], c["type"]) for c in e["schema"]["columns"]]
    if kind == "CodeReferencesMetadataEntry":
        return [(r["filePath"], r["lineNumber"]) for r in e["codeReferences"]]
    return kind


def test_catalog_metadata_through_graphql(tmp_path, monkeypatch):
    home, dagster_home, c = tmp_path / "hr", tmp_path / "dagster_home", tmp_path / "connectors"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for k, v in {"HEADRACE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "HEADRACE_CONNECTORS_DIR": str(c),
                 "CATALOG_TEST_PW": "s3cret"}.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "shop.db"
    sqlite3.connect(db).execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)").connection.close()
    src = write_connector(c, {"name": "shop", "type": "sql_source", "connection_url": f"sqlite:///{db}",
                              "mode": "incrementing", "incrementing_column": "id", "tables": ["orders"],
                              "topic_prefix": "shop.", "owners": ["team:sales", "ana@example.com"],
                              "tags": {"tier": "gold", "domain/area": "orders"}})
    lake = write_connector(c, {"name": "lake", "type": "parquet_sink", "topics": ["shop.orders"], "path": "lake",
                               "owners": ["team:lake"], "value_schema": {"id": "int64", "amount": "int64"}})
    wh = write_connector(c, {"name": "wh", "type": "table_sink", "topics": ["shop.orders"], "db_schema": "sales",
                             "connection_url": "postgresql://app:${env:CATALOG_TEST_PW}@db.example:5432/dw?sslmode=require"})
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": {
        "relative_path": str(REPO / "tests" / "e2e" / "tolerant_location.py"), "working_directory": str(REPO),
        "location_name": "catalog"}}]}))
    with dg.DagsterInstance.get() as instance, define_out_of_process_context(str(workspace), None, instance) as ctx:
        nodes = {"/".join(n["assetKey"]["path"]): n for n in execute_dagster_graphql(ctx, NODES).data["assetNodes"]}
    meta = {k: {e["label"]: _entry(e) for e in n["metadataEntries"]} for k, n in nodes.items()}
    owners = {k: [o.get("team") or o.get("email") for o in n["owners"]] for k, n in nodes.items()}
    tags = {k: {t["key"]: t["value"] for t in n["tags"] if not t["key"].startswith("dagster/kind/")}
            for k, n in nodes.items()}
    table, topic, dataset = "source/sqlite_shop/sqlite_shop__orders", "kafka/shop_orders", "parquet/lake/lake__shop_orders"
    target = "warehouse/postgresql_dw/sales/postgresql_dw__sales__shop_orders"
    assert set(nodes) == {table, topic, dataset, target}
    assert owners == {table: ["sales", "ana@example.com"], topic: ["sales", "ana@example.com"], dataset: ["lake"],
                      target: []}
    assert tags == {table: {"tier": "gold", "domain/area": "orders"}, topic: {"tier": "gold", "domain/area": "orders"},
                    dataset: {}, target: {}}
    assert meta[table]["dagster/uri"] == f"sqlite:///{db}"
    assert meta[table]["dagster/table_name"] == "orders"
    assert meta[table]["dagster/code_references"] == [(str(src.resolve()), 1)]
    assert meta[topic]["dagster/code_references"] == [(str(src.resolve()), 1)]  # the producing source's file
    assert meta[dataset]["dagster/uri"] == (home / "lake" / "shop.orders").as_uri()
    assert meta[dataset]["path"] == str(home / "lake" / "shop.orders")
    assert meta[dataset]["dagster/column_schema"] == [("id", "int64"), ("amount", "int64")]
    assert meta[dataset]["dagster/code_references"] == [(str(lake.resolve()), 1)]
    assert meta[target]["dagster/uri"] == "postgresql://app:***@db.example:5432/dw"  # no password, no query
    assert meta[target]["dagster/table_name"] == 'dw.sales."shop.orders"'
    assert meta[target]["dagster/code_references"] == [(str(wh.resolve()), 1)]
    assert all("s3cret" not in str(m) for m in meta.values())


def _mats(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): {k: v.value for k, v in e.step_materialization_data.materialization
                                           .metadata.items()} for e in result.get_asset_materialization_events()}


def test_sink_catalog_counts_the_whole_output(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("catalog")
    c = tmp_path / "c"
    write_connector(c, {"name": f"lake-{unique}", "type": "parquet_sink", "topics": [topic], "path": "lake",
                        "value_schema": {"id": "int64", "name": "string"}})
    write_connector(c, {"name": f"wh-{unique}", "type": "table_sink", "topics": [topic], "auto_create": True,
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "table_name_format": "people"})
    configs = {x.name: x for x in load_folder(c)}
    defs = build_definitions(configs=list(configs.values()))
    lake, wh = configs[f"lake-{unique}"], configs[f"wh-{unique}"]
    folder = Path(tmp_path / "lake" / topic)
    with dg.instance_for_test() as instance:
        for batch, total in (((1, 2, 3, 4, 5), 5), ((6, 7, 8), 8)):
            produce_all(kafka, topic, [{"value": f'{{"id": {i}, "name": "n{i}"}}'.encode()} for i in batch])
            for name in (lake.name, wh.name):
                res = defs.resolve_job_def(f"{name.replace('-', '_')}_job").execute_in_process(instance=instance)
                assert res.success
                [(key, m)] = _mats(res).items()
                assert m["rows"] == len(batch), key
            lake_meta = sink_catalog(lake, sink_assets(lake)[0])
            assert lake_meta["dagster/row_count"].value == total
            size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
            assert lake_meta["dataset_bytes"].value == size
            assert lake_meta["dagster/uri"].value == folder.as_uri()
            assert [(col.name, col.type) for col in lake_meta["dagster/column_schema"].value.columns] == [
                ("id", "int64"), ("name", "string")]
            wh_meta = sink_catalog(wh, sink_assets(wh)[0])
            assert wh_meta["dagster/row_count"].value == total
            assert [col.name for col in wh_meta["dagster/column_schema"].value.columns] == ["id", "name"]


def test_labels_are_unique_by_default_and_short_labels_keep_the_old_keys(tmp_path, monkeypatch):
    """A source table, a topic, a dataset and a table all named ``shop_orders``: four nodes with four
    labels (the last part of each key). ``ShortLabels`` gives the keys of before, one label for all four."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    from assets.translator import ShortLabels

    db = tmp_path / "shop.db"
    sqlite3.connect(db).execute("CREATE TABLE shop_orders (id INTEGER PRIMARY KEY)").connection.close()
    c = tmp_path / "c"
    write_connector(c, {"name": "src", "type": "sql_source", "connection_url": f"sqlite:///{db}", "mode": "incrementing",
                        "incrementing_column": "id", "tables": ["shop_orders"], "owners": ["team:sales"]})
    write_connector(c, {"name": "lake", "type": "parquet_sink", "topics": ["shop_orders"], "path": "lake"})
    write_connector(c, {"name": "wh", "type": "table_sink", "topics": ["shop_orders"],
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb"})
    short = [s.key.path[-1] for s in build_definitions(c, translator=ShortLabels()).resolve_all_asset_specs()]
    assert sorted(short) == ["shop_orders"] * 4  # four nodes drawn "shop_orders"
    specs = {s.key.to_user_string(): s for s in build_definitions(c).resolve_all_asset_specs()}
    assert sorted(specs) == ["kafka/shop_orders", "parquet/lake/lake__shop_orders",
                             "source/sqlite_shop/sqlite_shop__shop_orders", "warehouse/duckdb_wh/duckdb_wh__shop_orders"]
    assert [d.asset_key.to_user_string() for d in specs["kafka/shop_orders"].deps] == [
        "source/sqlite_shop/sqlite_shop__shop_orders"]
    assert specs["kafka/shop_orders"].owners == ["team:sales"]
    assert specs["parquet/lake/lake__shop_orders"].metadata["dagster/uri"].value == (tmp_path / "lake" / "shop_orders").as_uri()
