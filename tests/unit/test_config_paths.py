"""Connector files as users write them: configured paths, YAML dates, topic names after routers, broken neighbours.

Issue 12 items 7 (paths escaping $HEADRACE_HOME), 8 (YAML dates), 9 (one broken file in a folder) and
10 (a table name that is only a legal topic after a RegexRouter).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from integrations.config import (
    ParquetSinkConfig,
    find_connector,
    load_connector,
    load_folder,
    resolve_path,
    resolve_url,
)
from integrations.errors import ConfigError

SINK = "name: lake\ntype: parquet_sink\ntopics: [orders]\n"
FILES = "name: spool\ntype: file_source\ntopic: orders\ninput_path: in\n"
TABLE = "name: wh\ntype: table_sink\ntopics: [orders]\n"
SQL = "name: src\ntype: sql_source\nmode: bulk\ntables: [orders]\n"


def _load(tmp_path: Path, text: str, fname: str = "c.yaml"):
    p = tmp_path / fname
    p.write_text(text)
    return load_connector(p)


@pytest.mark.parametrize("text, field, value", [
    (SINK + "path: ../../somewhere\n", "path", "../../somewhere"),
    (SINK + "path: lake/../../x\n", "path", "lake/../../x"),
    (SINK + "path: /data/../etc\n", "path", "/data/../etc"),
    (SINK + "path: file://../x\n", "path", "file://../x"),
    (SINK + "path: s3://bucket/../other\n", "path", "s3://bucket/../other"),
    (SINK + "path: ${env:HEADRACE_HOME}/../x\n", "path", "${env:HEADRACE_HOME}/../x"),
    (FILES.replace("input_path: in", "input_path: ../in"), "input_path", "../in"),
    (FILES + "cleanup_policy: move\nfinished_path: ../done\n", "finished_path", "../done"),
    (FILES + "halt_on_error: false\nerror_path: errors/../../x\n", "error_path", "errors/../../x"),
    (TABLE + "connection_url: duckdb:///../wh.duckdb\n", "connection_url", "duckdb:///../wh.duckdb"),
    (TABLE + "connection_url: sqlite:///../../x.db\n", "connection_url", "sqlite:///../../x.db"),
    (SQL + "connection_url: sqlite:///../shop.db\n", "connection_url", "sqlite:///../shop.db"),
])
def test_paths_that_climb_out_are_refused_at_validation(tmp_path, text, field, value):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'c.yaml'}: field '{field}'"), msg
    assert "'..' segment" in msg and repr(value) in msg
    assert "Allowed: a path relative to $HEADRACE_HOME without '..', an absolute path, or a URL" in msg


@pytest.mark.parametrize("fmt", ["'../../escape'/YYYY", "'/abs'/YYYY/MM", "YYYY/'..'/MM"])
def test_time_partition_path_format_may_not_climb_out(tmp_path, fmt):
    with pytest.raises(ConfigError, match="must be a relative path without '..'"):
        _load(tmp_path, SINK + f"path: lake\npartitioner: time\npath_format: \"{fmt}\"\n")


def test_tilde_is_refused_not_taken_as_a_folder_name(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'path': '~/lake' starts with '~', which is not expanded"):
        _load(tmp_path, SINK + "path: ~/lake\n")


@pytest.mark.parametrize("path", ["lake", "lake/raw", "/data/lake", "file:///data/lake", "s3://bucket/lake",
                                  "${env:HEADRACE_HOME}/lake", "gs://b/p"])
def test_relative_absolute_and_url_paths_are_accepted(tmp_path, path):
    assert _load(tmp_path, SINK + f"path: {path}\n").path == path


@pytest.mark.parametrize("url", ["duckdb:///wh.duckdb", "duckdb:///:memory:", "sqlite:////abs/x.db",
                                 "postgresql://u:${env:PW}@db:5432/wh", "sqlite://", "sqlite:///x.db?mode=ro"])
def test_database_urls_are_accepted(tmp_path, url):
    assert _load(tmp_path, TABLE + f"connection_url: '{url}'\n").connection_url == url


def test_relative_paths_resolve_under_headrace_home_and_env_values_are_checked_on_use(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    assert resolve_path("lake/raw") == tmp_path / "lake" / "raw"
    assert resolve_path("/data/lake") == Path("/data/lake")
    monkeypatch.setenv("LAKE", "../../elsewhere")  # not knowable at validation time: refused on use
    with pytest.raises(ConfigError, match=r"path '\$\{env:LAKE\}/x'.*'\.\.' segment"):
        resolve_path("${env:LAKE}/x")
    # a relative SQLite / DuckDB file is under $HEADRACE_HOME too (SQLAlchemy alone would use the cwd)
    assert resolve_url("sqlite:///shop.db") == f"sqlite:///{tmp_path}/shop.db"
    assert resolve_url("duckdb:///wh.duckdb?threads=1") == f"duckdb:///{tmp_path}/wh.duckdb?threads=1"
    assert resolve_url("sqlite:////abs/shop.db") == "sqlite:////abs/shop.db"
    assert resolve_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_yaml_dates_are_accepted_where_dates_are_expected(tmp_path):
    text = SINK + "path: lake\npartitioner: time\npartition_start_date: 2024-01-01\n"  # as the README writes it
    assert _load(tmp_path, text).partition_start_date == "2024-01-01"
    assert _load(tmp_path, text.replace("2024-01-01", "'2024-01-01'")).partition_start_date == "2024-01-01"
    with pytest.raises(ConfigError, match=r"field 'partition_start_date': '2024-13-01' is not a date \(YYYY-MM-DD"):
        _load(tmp_path, text.replace("2024-01-01", "2024-13-01"))
    # models built from dicts (Dagster components, code) get real date objects
    base = {"name": "lake", "type": "parquet_sink", "topics": ["o"], "path": "lake", "partitioner": "time"}
    assert ParquetSinkConfig(**base, partition_start_date=dt.date(2024, 1, 1)).partition_start_date == "2024-01-01"
    assert ParquetSinkConfig(**base, partition_start_date=dt.datetime(2024, 1, 1)).partition_start_date == "2024-01-01"
    with pytest.raises(ValueError, match="is not a day"):
        ParquetSinkConfig(**base, partition_start_date=dt.datetime(2024, 1, 1, 5))

    sql = SQL + "connection_url: sqlite:////x.db\nmode: timestamp\ntimestamp_column: ts\n"
    for written in ("2024-01-01T00:00:00Z", "2024-01-01 12:30:00+02:00", "2024-01-01"):
        c = _load(tmp_path, sql.replace("mode: bulk\n", "") + f"timestamp_initial: {written}\n")
        assert dt.datetime.fromisoformat(c.timestamp_initial) == dt.datetime.fromisoformat(written)
    with pytest.raises(ConfigError, match=r"field 'timestamp_initial': 'yesterday' is not an ISO-8601 date"):
        _load(tmp_path, sql.replace("mode: bulk\n", "") + "timestamp_initial: yesterday\n")


def test_yaml_dates_in_string_fields_stay_as_written(tmp_path):
    text = SINK + ("path: lake\ntransforms:\n  - type: InsertField.Value\n    static_field: since\n"
                   "    static_value: 2024-01-01\n")
    assert _load(tmp_path, text).transforms[0].static_value == "2024-01-01"
    # numbers too, as Kafka Connect users write them (its properties are strings)
    text = SINK + ("path: lake\ntransforms:\n  - type: MaskField.Value\n    fields: [x]\n    replacement: 0\n"
                   "  - type: InsertField.Value\n    static_field: n\n    static_value: 42\n")
    assert [t.model_dump().get(k) for t, k in zip(_load(tmp_path, text).transforms, ("replacement", "static_value"),
                                                   strict=True)] == ["0", "42"]


def test_table_name_is_checked_as_the_topic_after_the_routers(tmp_path):
    sql = "name: src\ntype: sql_source\nconnection_url: sqlite:////x.db\nmode: bulk\ntables: [order items]\n"
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, sql)
    assert "table 'order items' makes the topic 'order items', which is not a legal Kafka topic name" in str(e.value)
    router = "transforms:\n  - type: RegexRouter\n    regex: 'order items'\n    replacement: order_items\n"
    assert _load(tmp_path, sql + router).topic_for("order items") == "order items"
    # a router that renames only some records (a header predicate) still leaves the illegal name possible
    partial = router + "    predicate: {type: HasHeaderKey, name: h}\n"
    with pytest.raises(ConfigError, match="table 'order items' makes the topic 'order items', which is not"):
        _load(tmp_path, sql + partial)
    # a router to another illegal name is refused naming it
    with pytest.raises(ConfigError, match="after the transforms: 'order:items'"):
        _load(tmp_path, sql + router.replace("order_items", "'order:items'"))
    # a custom query writes to topic_prefix: checked the same way
    query = "name: q\ntype: sql_source\nconnection_url: sqlite:////x.db\nmode: bulk\nquery: select 1\n"
    with pytest.raises(ConfigError, match="topic_prefix .* makes the topic 'my topic'"):
        _load(tmp_path, query + "topic_prefix: my topic\n")
    # the file source's topic too
    files = FILES.replace("topic: orders", "topic: my orders")
    with pytest.raises(ConfigError, match="field 'topic': 'topic' makes the topic 'my orders'"):
        _load(tmp_path, files)
    assert _load(tmp_path, files + router.replace("order items", "my orders")).topic == "my orders"


def test_find_connector_needs_only_its_own_file_valid(tmp_path):
    (tmp_path / "good.yaml").write_text(SINK + "path: lake\n")
    (tmp_path / "unparsable.yaml").write_text("name: other\ntype: parquet_sink\ntopics: [a\n")
    (tmp_path / "invalid.yaml").write_text(SINK.replace("lake", "bad") + "path: ../x\nflush_size: 0\n")
    config, warnings = find_connector("lake", tmp_path)
    assert config.name == "lake"
    assert len(warnings) == 2
    assert warnings[0].startswith(f"skipped a broken connector file: {tmp_path / 'invalid.yaml'}: field 'path'")
    assert warnings[0].endswith("(and 1 more; run headrace validate)")
    assert f"{tmp_path / 'unparsable.yaml'}: not valid YAML at line 4, column 1" in warnings[1]
    assert all("\n" not in w for w in warnings)
    for name, needle in (("bad", "field 'path'"), ("other", "not valid YAML"), ("unparsable", "not valid YAML")):
        with pytest.raises(ConfigError, match=needle):  # the named connector's own file is broken
            find_connector(name, tmp_path)
    with pytest.raises(ConfigError, match="no connector named 'nope'.*2 file\\(s\\) could not be read"):
        find_connector("nope", tmp_path)
    with pytest.raises(ConfigError) as e:  # validate (and Dagster) still refuse the folder, listing both
        load_folder(tmp_path)
    assert "invalid.yaml" in str(e.value) and "unparsable.yaml" in str(e.value)
