"""headrace.ConnectorsComponent in a `dg` project, and the translator.

The example project (examples/dg_project) is checked with `dg check defs`, then its source and both
sinks are materialized once with `dg launch` against the real broker and a SQLite database; the rows
in the topic, the Parquet dataset and the DuckDB table are asserted exactly. A bad inline connector
fails `dg check defs` with the defs.yaml file, line and field. A custom translator renames keys,
groups, owners, tags and descriptions, and lineage follows the new keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from dagster.components.resolved.errors import ResolutionException
from dagster.components.testing.utils import component_defs

from assets.component import ConnectorsComponent
from assets.definitions import build_definitions
from assets.translator import AssetProps, HeadraceTranslator
from integrations.errors import ConfigError
from tests.conftest import REPO
from tests.helpers import read_dataset, read_topic, write_connector

EXAMPLE = REPO / "examples" / "dg_project"
DG = str(Path(REPO) / ".venv" / "bin" / "dg")
TOPIC = "example_shop.orders"
GROUPS = ["headrace-example-shop-lake", "headrace-example-shop-warehouse"]
ORDERS = [(1, 10, 250, "new"), (2, 11, 1999, "paid"), (3, 10, 5, "shipped"), (4, 12, 100000, "new")]


def _dg(*args: str, cwd: Path, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    """Run the venv's `dg` in a project folder (it loads the project with the venv's own Python)."""
    return subprocess.run([DG, *args], cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
                          capture_output=True, text=True, timeout=timeout)


def _env(tmp_path: Path, kafka) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {"HEADRACE_HOME": str(tmp_path / "hr"), "DAGSTER_HOME": str(home),
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "HEADRACE_OFFSETS_TOPIC": f"headrace-offsets-test-{uuid.uuid4().hex[:8]}"}


def _forget(kafka, topics: list[str]) -> None:
    kafka.delete_topics(topics)
    admin = kafka.admin()
    for f in admin.delete_consumer_groups(GROUPS, request_timeout=10).values():
        with contextlib.suppress(Exception):  # the group may not exist
            f.result(timeout=30)


def test_example_project_checks_and_materializes(kafka, tmp_path):
    env = _env(tmp_path, kafka)
    db = Path(env["HEADRACE_HOME"]) / "example" / "shop.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount NUMERIC(12,2), "
                "status TEXT)")
    con.executemany("INSERT INTO orders VALUES (?,?,?,?)", [(i, c, f"{a / 100:.2f}", s) for i, c, a, s in ORDERS])
    con.commit()
    con.close()
    _forget(kafka, [TOPIC])
    kafka.ensure_topic(TOPIC)
    try:
        check = _dg("check", "defs", cwd=EXAMPLE, env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "All definitions loaded successfully" in check.stdout + check.stderr

        listed = _dg("list", "defs", "--json", cwd=EXAMPLE, env=env)
        assert listed.returncode == 0, listed.stderr
        assets = {a["asset_key"]: a for a in json.loads(listed.stdout)["assets"]}
        topic, lake = "example/kafka/example_shop_orders", "example/parquet/example_shop_lake/example_shop_lake__example_shop_orders"
        table, source = "example/warehouse/duckdb_warehouse/duckdb_warehouse__orders", "example/source/sqlite_shop/sqlite_shop__orders"
        assert set(assets) == {topic, lake, table, source}
        assert assets[topic]["dependency_keys"] == [source]  # lineage follows the translated keys
        assert assets[lake]["dependency_keys"] == [topic] and assets[table]["dependency_keys"] == [topic]
        assert {a["group_name"] for a in assets.values()} == {"example_shop"}
        assert all(a["owners"] == [{"team": "data-platform"}] for a in assets.values())
        assert assets[table]["tags"] == [{"key": "headrace/kind", "value": "warehouse_table"}]
        assert assets[source]["tags"] == [{"key": "headrace/kind", "value": "source_table"}]

        run = _dg("launch", "--assets", f"{topic},{lake},{table}", cwd=EXAMPLE, env=env)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

        records = read_topic(kafka, TOPIC)
        assert sorted(orjson.loads(k) for k, *_ in records) == [1, 2, 3, 4]  # a one-column key is the bare value
        values = sorted((orjson.loads(v) for _k, v, *_ in records), key=lambda r: r["id"])
        assert [(r["id"], r["customer_id"], round(float(r["amount"]) * 100), r["status"]) for r in values] == ORDERS
        dataset = read_dataset(Path(env["HEADRACE_HOME"]) / "example" / "lake" / TOPIC).sort_by("id")
        assert [(r["id"], r["customer_id"], int(r["amount"] * 100), r["status"]) for r in dataset.to_pylist()] == ORDERS
        with duckdb.connect(str(Path(env["HEADRACE_HOME"]) / "example" / "warehouse.duckdb"), read_only=True) as wh:
            rows = wh.execute("SELECT id, customer_id, CAST(amount * 100 AS INTEGER), status FROM orders "
                              "ORDER BY id").fetchall()
        assert rows == ORDERS
    finally:
        _forget(kafka, [TOPIC, env["HEADRACE_OFFSETS_TOPIC"]])


def test_scaffold_list_and_bad_inline_connector(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"HEADRACE_HOME": str(tmp_path / "hr"), "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    scaffolded = _dg("scaffold", "defs", "headrace.ConnectorsComponent", "my_pipelines", cwd=project, env=env)
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = project / "shop_pipelines" / "defs" / "my_pipelines" / "defs.yaml"
    assert "type: headrace.ConnectorsComponent" in defs_yaml.read_text()
    assert "connectors_dir: connectors" in defs_yaml.read_text()
    write_connector(defs_yaml.parent / "connectors", {
        "name": "scaffolded-lake", "type": "parquet_sink", "topics": ["scaffolded.t"], "path": "lake2"})

    components = _dg("list", "components", "--json", cwd=project, env=env)
    assert components.returncode == 0, components.stderr
    ours = [c for c in json.loads(components.stdout)["items"] if c["key"] == "headrace.ConnectorsComponent"]
    assert len(ours) == 1 and ours[0]["summary"].startswith("Headrace connectors")
    schema = _dg("utils", "inspect-component", "headrace.ConnectorsComponent", "--defs-yaml-json-schema",
                 cwd=project, env=env)
    attrs = json.loads(schema.stdout)["properties"]["attributes"]["properties"]
    assert {"connectors_dir", "connectors", "translation", "bootstrap_servers"} <= set(attrs)
    assert "relative to this defs.yaml" in attrs["connectors_dir"]["description"]

    listed = _dg("list", "defs", "--json", cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {"parquet/scaffolded_lake/scaffolded_lake__scaffolded_t", "kafka/scaffolded_t"} <= keys  # no translation there

    shop = project / "shop_pipelines" / "defs" / "shop" / "defs.yaml"
    text = shop.read_text()
    assert "      insert_mode: upsert\n" in text
    shop.write_text(text.replace("      insert_mode: upsert\n", "      insert_mode: sometimes\n"))
    bad = _dg("check", "defs", cwd=project, env=env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    line = text.splitlines().index("      insert_mode: upsert") + 1
    assert (f"{shop}:{line} - attributes.connectors[0].insert_mode: Input should be 'insert', 'upsert' or "
            "'update' (got 'sometimes')") in out, out[-3000:]

    shop.write_text(text.replace("      insert_mode: upsert\n", "      insert_mode: upsert\n      colour: red\n"))
    bad = _dg("check", "defs", cwd=project, env=env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert f"{shop}:{line + 1} - attributes.connectors[0].colour: is not a known option (value 'red')" in out, \
        out[-3000:]


class _Acme(HeadraceTranslator):
    """Keys under acme/, one group per kind, an owner, a tag and a description naming the connector."""

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)
        who = props.connector.name if props.connector is not None else "outside"
        return spec.replace_attributes(
            key=spec.key.with_prefix("acme"), group_name=f"acme_{props.kind}", owners=["team:acme"],
            tags={"acme/kind": props.kind}, description=f"{props.kind} {props.name} of {who}")


def _shop(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    sqlite3.connect(db).execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)").connection.commit()
    c = tmp_path / "c"
    write_connector(c, {"name": "src", "type": "sql_source", "connection_url": f"sqlite:///{db}",
                        "mode": "incrementing", "incrementing_column": "id", "tables": ["orders"],
                        "topic_prefix": "shop."})
    write_connector(c, {"name": "lake", "type": "parquet_sink", "topics": ["shop.orders", "ext.clicks"],
                        "path": "lake"})
    write_connector(c, {"name": "wh", "type": "table_sink", "topics": ["shop.orders"],
                        "connection_url": f"duckdb:///{tmp_path}/wh.duckdb", "auto_create": True,
                        "table_name_format": "orders_copy"})
    return c


def test_custom_translator_renames_and_lineage_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    defs = build_definitions(_shop(tmp_path), translator=_Acme())
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {"acme/source/sqlite_shop/sqlite_shop__orders", "acme/kafka/shop_orders", "acme/kafka/ext_clicks",
                          "acme/parquet/lake/lake__shop_orders", "acme/parquet/lake/lake__ext_clicks",
                          "acme/warehouse/duckdb_wh/duckdb_wh__orders_copy"}
    graph = defs.resolve_asset_graph()
    parents = {k: sorted(p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(k)).parent_keys)
               for k in specs}
    assert parents == {
        "acme/source/sqlite_shop/sqlite_shop__orders": [], "acme/kafka/ext_clicks": [],
        "acme/kafka/shop_orders": ["acme/source/sqlite_shop/sqlite_shop__orders"],
        "acme/parquet/lake/lake__shop_orders": ["acme/kafka/shop_orders"],
        "acme/parquet/lake/lake__ext_clicks": ["acme/kafka/ext_clicks"],
        "acme/warehouse/duckdb_wh/duckdb_wh__orders_copy": ["acme/kafka/shop_orders"]}
    assert {k: s.group_name for k, s in specs.items()} == {
        "acme/source/sqlite_shop/sqlite_shop__orders": "acme_source_table", "acme/kafka/shop_orders": "acme_topic",
        "acme/kafka/ext_clicks": "acme_topic", "acme/parquet/lake/lake__shop_orders": "acme_parquet_dataset",
        "acme/parquet/lake/lake__ext_clicks": "acme_parquet_dataset",
        "acme/warehouse/duckdb_wh/duckdb_wh__orders_copy": "acme_warehouse_table"}
    assert all(s.owners == ["team:acme"] for s in specs.values())
    assert specs["acme/kafka/shop_orders"].tags["acme/kind"] == "topic"
    assert specs["acme/kafka/shop_orders"].kinds == {"kafka"}  # kinds kept
    assert specs["acme/kafka/shop_orders"].description == "topic shop.orders of src"
    assert specs["acme/kafka/ext_clicks"].description == "topic ext.clicks of outside"
    assert specs["acme/warehouse/duckdb_wh/duckdb_wh__orders_copy"].description == "warehouse_table orders_copy of wh"
    assert specs["acme/source/sqlite_shop/sqlite_shop__orders"].description == "source_table orders of src"
    # jobs and checks use the new keys too
    repo = defs.get_repository_def()
    # the source's micro-batch job also runs the sinks it feeds (one run per micro-batch)
    assert {k.to_user_string() for k in repo.get_job("src_job").asset_layer.executable_asset_keys} == {
        "acme/kafka/shop_orders", "acme/parquet/lake/lake__shop_orders", "acme/parquet/lake/lake__ext_clicks",
        "acme/warehouse/duckdb_wh/duckdb_wh__orders_copy"}
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("acme/warehouse/duckdb_wh/duckdb_wh__orders_copy", "lag_within_threshold") in checks
    assert ("acme/kafka/shop_orders", "dead_letters_within_threshold") in checks


def test_translator_materializes_under_new_keys(kafka, tmp_path, monkeypatch, unique):
    """A run of a renamed source reports its rows under the translator's key."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    monkeypatch.setenv("HEADRACE_OFFSETS_TOPIC", f"headrace-offsets-test-{unique}")
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    con.commit()
    con.close()
    topic = f"tr{unique}.items"
    kafka.ensure_topic(topic)
    c = tmp_path / "c"
    write_connector(c, {"name": f"tr-{unique}", "type": "sql_source", "connection_url": f"sqlite:///{db}",
                        "mode": "incrementing", "incrementing_column": "id", "tables": ["items"],
                        "topic_prefix": f"tr{unique}."})
    try:
        defs = build_definitions(c, translator=_Acme())
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(f"tr_{unique}_job").execute_in_process(instance=instance)
        assert result.success
        mats = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata["rows"].value
                for e in result.get_asset_materialization_events()}
        assert mats == {f"acme/kafka/tr{unique}_items": 3}
        assert sorted(orjson.loads(v)["name"] for _k, v, *_ in read_topic(kafka, topic)) == ["a", "b", "c"]
    finally:
        kafka.delete_topics([topic, f"headrace-offsets-test-{unique}"])


def test_translator_refuses_two_assets_on_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))

    class Flat(HeadraceTranslator):
        def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
            return super().get_asset_spec(props).replace_attributes(key=["everything"])

    with pytest.raises(ConfigError, match="Flat gives two assets the key everything"):
        build_definitions(_shop(tmp_path), translator=Flat())


class _Owned(ConnectorsComponent):
    """A component subclass: Python decides the specs (the dagster-sling way)."""

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)  # Headrace's spec with the YAML translation applied
        return spec.replace_attributes(owners=[f"team:{props.kind.split('_')[0]}"])


def test_component_in_python_translation_and_subclass(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    text = f"""
connectors_dir: {_shop(tmp_path)}
connectors:
  - name: more
    type: table_sink
    topics: [shop.orders]
    connection_url: duckdb:///{tmp_path}/more.duckdb
translation:
  key_prefix: [team]
  group_name: "{{{{ 'lake' if kind == 'parquet_dataset' else spec.group_name }}}}"
  tags: {{owner_connector: "{{{{ connector.name if connector else 'none' }}}}"}}
"""
    specs = {s.key.to_user_string(): s for s in
             component_defs(component=_Owned.resolve_from_yaml(text)).resolve_all_asset_specs()}
    assert set(specs) == {"team/source/sqlite_shop/sqlite_shop__orders", "team/kafka/shop_orders", "team/kafka/ext_clicks",
                          "team/parquet/lake/lake__shop_orders", "team/parquet/lake/lake__ext_clicks",
                          "team/warehouse/duckdb_wh/duckdb_wh__orders_copy", "team/warehouse/duckdb_more/duckdb_more__shop_orders"}
    assert [d.asset_key.to_user_string() for d in specs["team/warehouse/duckdb_more/duckdb_more__shop_orders"].deps] == [
        "team/kafka/shop_orders"]
    assert specs["team/parquet/lake/lake__shop_orders"].group_name == "lake"
    assert specs["team/kafka/shop_orders"].group_name == "src"  # the default (the connector's name)
    assert specs["team/kafka/ext_clicks"].tags["owner_connector"] == "none"
    assert specs["team/warehouse/duckdb_more/duckdb_more__shop_orders"].tags["owner_connector"] == "more"
    assert specs["team/kafka/shop_orders"].owners == ["team:topic"]
    assert specs["team/source/sqlite_shop/sqlite_shop__orders"].owners == ["team:source"]

    with pytest.raises(ResolutionException) as e:
        ConnectorsComponent.resolve_from_yaml("connectors:\n  - name: lake\n    type: parquet_sink\n"
                                              "    topics: [a.b]\n    compression: brotli\n")
    assert str(e.value).startswith("2 problem(s) in inline connectors:\n")
    assert "<string>:2 - connectors[0].path: is required" in str(e.value)
    assert "<string>:5 - connectors[0].compression: Input should be 'snappy', 'zstd', 'gzip', 'lz4' or 'none' " \
           "(got 'brotli')" in str(e.value)


def test_two_components_share_a_topic(tmp_path, monkeypatch):
    """A sink in one component reads a topic produced in another: external_topics: false avoids the
    duplicate topic asset, and lineage crosses the components."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    source = ConnectorsComponent.resolve_from_yaml(f"""
connectors:
  - {{name: src, type: sql_source, connection_url: "sqlite:///{tmp_path}/x.db", mode: incrementing,
      incrementing_column: id, tables: [t], topic_prefix: "p."}}
""")
    sink = "connectors:\n  - {name: lake, type: parquet_sink, topics: [p.t], path: lake}\n"
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="Duplicate asset key"):
        dg.Definitions.merge(component_defs(component=source),
                             component_defs(component=ConnectorsComponent.resolve_from_yaml(sink))
                             ).resolve_asset_graph()
    merged = dg.Definitions.merge(
        component_defs(component=source),
        component_defs(component=ConnectorsComponent.resolve_from_yaml(sink + "external_topics: false\n")))
    graph = merged.resolve_asset_graph()
    lake = graph.get(dg.AssetKey(["parquet", "lake", "lake__p_t"]))
    assert lake.parent_keys == {dg.AssetKey(["kafka", "p_t"])}
    assert graph.get(dg.AssetKey(["kafka", "p_t"])).is_materializable  # the source component's topic


def test_inline_yaml_dates_stay_text(tmp_path, monkeypatch):
    """Dagster's YAML loader turns 2024-01-01 into a date; inline connectors get the text, as files do."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    component = ConnectorsComponent.resolve_from_yaml("""
connectors:
  - name: lake
    type: parquet_sink
    topics: [a.b]
    path: lake
    partitioner: time
    partition_start_date: 2024-01-01
    transforms:
      - {type: InsertField.Value, static_field: since, static_value: 2024-01-01}
""")
    (lake,) = component.connectors
    assert lake.partition_start_date == "2024-01-01" and lake.transforms[0].static_value == "2024-01-01"
    (spec,) = [s for s in component_defs(component=component).resolve_all_asset_specs() if s.key.path[0] == "parquet"]
    assert spec.partitions_def.start.date().isoformat() == "2024-01-01"
