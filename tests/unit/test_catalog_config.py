"""Owners and tags written in connector YAML are checked by ``headrace validate`` (load_connector), with
Dagster's rules, so a bad one names the file and field instead of failing the code location."""

from __future__ import annotations

import pytest

from integrations.catalog import human_size, safe_uri
from integrations.errors import ConfigError
from integrations.loading import load_connector, source_file

BASE = "name: lake\ntype: parquet_sink\ntopics: [t]\npath: lake\n"


@pytest.mark.parametrize(("extra", "error"), [
    ("owners: [bob]", "field 'owners': 'bob' is not an owner; write an email address or team:<name>"),
    ("tags: {'bad key': v}", "field 'tags': tag key 'bad key' is not allowed"),
    ("tags: {k: 'two words'}", "field 'tags': tag 'k': value 'two words' is not allowed"),
    ("tags: {dagster/kind/x: ''}", "field 'tags': tag key 'dagster/kind/x' is not allowed"),
    ("tags: {headrace/connector: x}", "field 'tags': tag key 'headrace/connector' is reserved"),
])
def test_bad_owners_and_tags_name_file_and_field(tmp_path, extra, error):
    f = tmp_path / "lake.yaml"
    f.write_text(BASE + extra + "\n")
    with pytest.raises(ConfigError) as e:
        load_connector(f)
    assert str(e.value).startswith(f"{f}: {error}")


def test_good_owners_and_tags_and_source_file(tmp_path):
    f = tmp_path / "lake.yaml"
    f.write_text(BASE + "owners: [team:data, ana@example.com]\ntags: {tier: gold, domain/area: sales-eu}\n")
    c = load_connector(f)
    assert c.owners == ["team:data", "ana@example.com"] and c.tags == {"tier": "gold", "domain/area": "sales-eu"}
    assert source_file(c) == f.resolve()
    assert source_file(c.model_copy()) is None  # only the object loaded from the file


def test_safe_uri_and_sizes(monkeypatch):
    monkeypatch.setenv("PW_FOR_TEST", "hunter2")
    assert safe_uri("postgresql://u:${env:PW_FOR_TEST}@h:5432/db?password=x&sslmode=require") == \
        "postgresql://u:***@h:5432/db"
    assert safe_uri("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert [human_size(n) for n in (0, 1023, 1536, 3 * 1024**2 + 1)] == ["0 B", "1023 B", "1.5 KiB", "3.0 MiB"]
