"""Connector configuration: parsing, secrets and types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from integrations.arrow_types import parse_type
from integrations.config import load_connector, load_folder, redact_url, resolve_env
from integrations.errors import ConfigError


def test_env_secrets_resolve_only_on_use(tmp_path, monkeypatch):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ntype: sql_source\nconnection_url: postgresql://u:${env:HR_TEST_PW}@h/db\n"
                 "mode: bulk\ntables: [t]\n")
    cfg = load_connector(p)
    assert "${env:HR_TEST_PW}" in cfg.connection_url  # the model never holds the secret
    with pytest.raises(ConfigError, match="environment variable HR_TEST_PW is not set"):
        resolve_env(cfg.connection_url)
    monkeypatch.setenv("HR_TEST_PW", "s3cret")
    assert resolve_env(cfg.connection_url) == "postgresql://u:s3cret@h/db"
    assert redact_url(resolve_env(cfg.connection_url)) == "postgresql://u:***@h/db"
    assert resolve_env("${env:HR_NOPE:fallback}") == "fallback"


def test_duplicate_names_in_folder(tmp_path):
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / f).write_text("name: same\ntype: parquet_sink\ntopics: [t]\npath: p\n")
    with pytest.raises(ConfigError, match=r"b.yaml: field 'name': 'same' is already used by .*a.yaml"):
        load_folder(tmp_path)


def test_not_yaml_and_not_mapping(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_connector(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of connector options, got list"):
        load_connector(p)


@pytest.mark.parametrize(("text", "typ"), [
    ("int64", pa.int64()), ("decimal(12,2)", pa.decimal128(12, 2)), ("timestamp[us, tz=UTC]", pa.timestamp("us", "UTC")),
    ("timestamp[ms]", pa.timestamp("ms")), ("string", pa.string()), ("date", pa.date32()), ("bool", pa.bool_()),
])
def test_parse_type(text, typ):
    assert parse_type(text) == typ


def test_parse_type_errors():
    with pytest.raises(ConfigError, match=r"column 'c': unknown type 'varchar'; allowed: bool"):
        parse_type("varchar", "c")
    with pytest.raises(ConfigError, match="decimal precision must be 1..38, got 40"):
        parse_type("decimal(40,2)", "c")


def test_sink_value_schema_is_validated(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\ntype: parquet_sink\ntopics: [t]\npath: p\nvalue_schema: {a: nonsense}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: field 'value_schema': column 'a': unknown type 'nonsense'"):
        load_connector(p)


def test_shipped_demo_connectors_are_valid():
    from integrations.config import default_connectors_dir

    names = sorted(c.name for c in load_folder(default_connectors_dir()))
    assert names == ["shop-customers-lake", "shop-orders-lake", "shop-orders-warehouse", "shop-source"]
