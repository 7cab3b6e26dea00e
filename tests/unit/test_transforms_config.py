"""The ``transforms`` list in connector YAML: parsing, and errors that name the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from integrations.config import load_connector
from integrations.errors import ConfigError
from integrations.transforms import Batch, build_chain

BASE = "name: t1\ntype: parquet_sink\ntopics: [orders]\npath: /tmp/headrace-test\n"


def load(tmp_path: Path, transforms_yaml: str):
    f = tmp_path / "c.yaml"
    f.write_text(BASE + "transforms:\n" + transforms_yaml)
    return load_connector(f)


def error(tmp_path: Path, transforms_yaml: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, transforms_yaml)
    return str(e.value)


def test_issue_example_parses_and_runs(tmp_path):
    cfg = load(tmp_path, """\
  - {type: ReplaceField.Value, exclude: [secret]}
  - {type: InsertField.Value, topic_field: src_topic, predicate: {type: TopicNameMatches, pattern: "orders.*"},
     negate: false}
""")
    assert [t.type for t in cfg.transforms] == ["ReplaceField.Value", "InsertField.Value"]
    chain = build_chain(cfg)
    out = chain.apply(Batch.of(pa.table({"id": [1, 2], "secret": ["a", "b"]}), topic=["orders-eu", "users"]))
    assert out.value.to_pylist() == [{"id": 1, "src_topic": "orders-eu"}, {"id": 2, "src_topic": None}]
    assert chain.needs == frozenset({"topic"})


def test_kafka_style_comma_lists(tmp_path):
    cfg = load(tmp_path, "  - {type: ReplaceField.Value, exclude: 'a,b', renames: 'c:d,e:f'}\n")
    t = cfg.transforms[0]
    assert t.exclude == ["a", "b"] and t.renames == {"c": "d", "e": "f"}


def test_no_transforms_by_default(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(BASE)
    assert load_connector(f).transforms == []


def test_unknown_type_lists_allowed(tmp_path):
    msg = error(tmp_path, "  - {type: Foo}\n")
    assert "field 'transforms.0.type': got 'Foo'; allowed: Cast.Key, Cast.Value, DropHeaders," in msg
    assert "ValueToKey, Python" in msg


def test_unknown_predicate_lists_allowed(tmp_path):
    msg = error(tmp_path, "  - {type: Filter, predicate: {type: Nope}}\n")
    assert "field 'transforms.0.predicate.type': got 'Nope'; allowed: TopicNameMatches, HasHeaderKey, " \
           "RecordIsTombstone" in msg


def test_bad_cast_type(tmp_path):
    msg = error(tmp_path, "  - {type: Cast.Value, spec: 'a:int99'}\n")
    assert "field 'transforms.0.spec': type 'int99' for 'a' is not allowed; allowed: int8, int16, int32, int64, " \
           "float32, float64, boolean, string" in msg


def test_unknown_option(tmp_path):
    msg = error(tmp_path, "  - {type: MaskField.Value, fields: [a], bogus: 1}\n")
    assert "field 'transforms.0.bogus' is not a known option (value 1)" in msg


def test_missing_option(tmp_path):
    assert "field 'transforms.0.field' is required" in error(tmp_path, "  - {type: ExtractField.Value}\n")


def test_bad_target_type(tmp_path):
    msg = error(tmp_path, "  - {type: TimestampConverter.Value, target_type: unix2}\n")
    assert "field 'transforms.0.target_type': Input should be 'string', 'unix', 'Date', 'Time' or 'Timestamp'" in msg


def test_string_target_needs_format(tmp_path):
    msg = error(tmp_path, "  - {type: TimestampConverter.Value, target_type: string}\n")
    assert "target_type 'string' needs a 'format'" in msg


def test_unsupported_format_letter(tmp_path):
    msg = error(tmp_path, "  - {type: TimestampRouter, timestamp_format: 'yyyyQQ'}\n")
    assert "pattern letter 'Q' is not supported" in msg


def test_negate_needs_predicate(tmp_path):
    assert "'negate: true' needs a 'predicate'" in error(tmp_path, "  - {type: Filter, negate: true}\n")


def test_header_from_lengths(tmp_path):
    msg = error(tmp_path, "  - {type: HeaderFrom.Value, fields: 'a,b', headers: 'x', operation: move}\n")
    assert "'fields' has 2 names but 'headers' has 1" in msg
    msg = error(tmp_path, "  - {type: HeaderFrom.Value, fields: a, headers: x, operation: cut}\n")
    assert "field 'transforms.0.operation': Input should be 'copy' or 'move'" in msg


def test_bad_regex(tmp_path):
    assert "is not a valid regular expression" in error(tmp_path, "  - {type: RegexRouter, regex: '(', replacement: x}\n")


def test_insert_field_needs_something(tmp_path):
    assert "set at least one of topic_field" in error(tmp_path, "  - {type: InsertField.Value}\n")


def test_errors_for_several_transforms_are_all_reported(tmp_path):
    msg = error(tmp_path, "  - {type: Foo}\n  - {type: Filter, negate: true}\n")
    assert "transforms.0.type" in msg and "transforms.1" in msg
