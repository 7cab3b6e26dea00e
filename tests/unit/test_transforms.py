"""Every built-in transform on the input Kafka Connect's documentation uses as its example.

The examples are those of the Confluent SMT reference pages for the Apache Kafka transforms
(docs.confluent.io/platform/current/connect/transforms/*). Each test states the documented
before/after and checks Headrace's output exactly.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from integrations.transforms import PRIMITIVE_COLUMN, Batch, TransformError, build_chain, primitive

UTC = dt.UTC


def run(transforms: list[dict], value: pa.Table, **meta) -> Batch:
    """Apply a chain to a batch built from ``value`` and metadata."""
    return build_chain(transforms).apply(Batch.of(value, **meta))


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


# --- Cast ---------------------------------------------------------------------------------


def test_cast_whole_value_float_to_string():
    # Before: 63521704.02  After: "63521704.02"
    out = run([{"type": "Cast.Value", "spec": "string"}], primitive(pa.array([63521704.02])))
    assert out.value.schema.field(PRIMITIVE_COLUMN).type == pa.string()
    assert out.value.column(0).to_pylist() == ["63521704.02"]


def test_cast_fields():
    # spec ID:string,score:float64; Before {"ID": 46290, "score": 4761}  After {"ID": "46290", "score": 4761.0}
    # (the page prints 46920 before and 46290 after; a cast cannot change digits, we use 46290 on both sides)
    out = run([{"type": "Cast.Value", "spec": "ID:string,score:float64"}], pa.table({"ID": [46290], "score": [4761]}))
    assert rows(out.value) == [{"ID": "46290", "score": 4761.0}]
    assert out.value.schema.types == [pa.string(), pa.float64()]


def test_cast_key_narrows_like_java_and_ignores_absent_fields():
    key = pa.table({"k": [3.9, -3.9]})
    out = run([{"type": "Cast.Key", "spec": ["k:int8", "absent:string"]}], pa.table({"v": [1, 2]}), key=key)
    assert rows(out.key) == [{"k": 3}, {"k": -3}]
    assert out.key.schema.field("k").type == pa.int8()
    assert rows(out.value) == [{"v": 1}, {"v": 2}]


def test_cast_whole_value_of_a_struct_is_an_error():
    with pytest.raises(TransformError, match=r"transform #1 \(Cast.Value\).*primitive"):
        run([{"type": "Cast.Value", "spec": "string"}], pa.table({"a": [1]}))


# --- DropHeaders, HeaderFrom, InsertHeader ------------------------------------------------


def test_drop_headers():
    # Before: records include headers app.id and txn.id. After: they do not.
    value = pa.table({"x": [1, 2]})
    out = run([{"type": "DropHeaders", "headers": "app.id,txn.id"}], value,
              headers={"app.id": "a", "txn.id": pa.array(["t1", "t2"]), "keep": "k"})
    assert sorted(out.headers) == ["keep"]
    assert out.headers["keep"].to_pylist() == ["k", "k"]


def test_header_from_move():
    # fields id,ts → headers record_id,event_timestamp, operation move
    value = pa.table({"id": [24], "ts": [1626102708861], "name": ["John Smith"], "book": ["Kafka: The Definitive Guide"]})
    out = run([{"type": "HeaderFrom.Value", "fields": "id,ts", "headers": "record_id,event_timestamp",
                "operation": "move"}], value, headers={"source": "RedditSource"})
    assert rows(out.value) == [{"name": "John Smith", "book": "Kafka: The Definitive Guide"}]
    assert {k: v.to_pylist() for k, v in out.headers.items()} == {
        "source": ["RedditSource"], "record_id": [24], "event_timestamp": [1626102708861]}


def test_header_from_copy_keeps_fields():
    value = pa.table({"id": [24], "name": ["John Smith"]})
    out = run([{"type": "HeaderFrom.Value", "fields": ["id"], "headers": ["record_id"], "operation": "copy"}], value)
    assert rows(out.value) == [{"id": 24, "name": "John Smith"}]
    assert out.headers["record_id"].to_pylist() == [24]


def test_insert_header_literals():
    # header app.id, value.literal best-app-ever → every record has app.id = "best-app-ever";
    # 1234 is parsed as an integer and true as a boolean.
    value = pa.table({"x": [1, 2]})
    out = run([{"type": "InsertHeader", "header": "app.id", "value_literal": "best-app-ever"},
               {"type": "InsertHeader", "header": "n", "value_literal": "1234"},
               {"type": "InsertHeader", "header": "b", "value_literal": "true"}], value)
    assert out.headers["app.id"].to_pylist() == ["best-app-ever", "best-app-ever"]
    assert out.headers["n"].to_pylist() == [1234, 1234]
    assert out.headers["b"].to_pylist() == [True, True]


# --- ExtractField, ValueToKey -------------------------------------------------------------


def test_extract_field():
    # field "id"; Before {"id": 42, "cost": 4000}  After 42
    out = run([{"type": "ExtractField.Value", "field": "id"}], pa.table({"id": [42], "cost": [4000]}))
    assert out.value.column_names == [PRIMITIVE_COLUMN]
    assert out.value.column(0).to_pylist() == [42]


def test_extract_field_nested_path_v2():
    value = pa.table({"order": [{"customer": {"id": 7, "name": "Ann"}}, None], "x": [1, 2]})
    out = run([{"type": "ExtractField.Value", "field": "order.customer", "field_syntax_version": "V2"}], value)
    assert rows(out.value) == [{"id": 7, "name": "Ann"}, {"id": None, "name": None}]
    out = run([{"type": "ExtractField.Value", "field": "order.customer.name", "field_syntax_version": "V2"}], value)
    assert out.value.column(0).to_pylist() == ["Ann", None]


def test_extract_field_v1_takes_the_name_literally():
    value = pa.table({"a.b": [1], "a": [{"b": 2}]})
    out = run([{"type": "ExtractField.Value", "field": "a.b"}], value)
    assert out.value.column(0).to_pylist() == [1]


def test_extract_field_missing_is_an_error():
    with pytest.raises(TransformError, match="field 'nope' is not in the record"):
        run([{"type": "ExtractField.Value", "field": "nope"}], pa.table({"id": [1]}))


def test_value_to_key():
    # fields userId,city,state
    value = pa.table({"userId": [12], "address": ["1942 Wilhelm Boulevard"], "city": ["Topeka"], "state": ["KS"],
                      "country": ["US"]})
    out = run([{"type": "ValueToKey", "fields": "userId,city,state"}], value)
    assert rows(out.key) == [{"userId": 12, "city": "Topeka", "state": "KS"}]
    assert rows(out.value) == rows(value)


def test_value_to_key_then_extract_field_key():
    # The documented chain: createKey (ValueToKey c1) then extractInt (ExtractField$Key c1) → key 1, 2
    value = pa.table({"c1": [1, 2], "c2": ["foo", "foo"], "create_ts": [1501796305000, 1501796665000]})
    out = run([{"type": "ValueToKey", "fields": "c1"}, {"type": "ExtractField.Key", "field": "c1"}], value)
    assert out.key.column_names == [PRIMITIVE_COLUMN]
    assert out.key.column(0).to_pylist() == [1, 2]


# --- Filter and predicates ----------------------------------------------------------------

PREDICATE_EXAMPLE = [
    # The documented example: drop topic foo entirely; ExtractField other_field on all topics but bar.
    {"type": "Filter", "predicate": {"type": "TopicNameMatches", "pattern": "foo"}},
    {"type": "ExtractField.Value", "field": "other_field",
     "predicate": {"type": "TopicNameMatches", "pattern": "bar"}, "negate": True},
]


def test_filter_with_topic_predicate_drops_foo():
    out = run(PREDICATE_EXAMPLE, pa.table({"other_field": [1, 2], "y": ["a", "b"]}), topic="foo")
    assert out.num_rows == 0


def test_negated_predicate_skips_bar_and_applies_elsewhere():
    bar = run(PREDICATE_EXAMPLE, pa.table({"other_field": [1], "y": ["a"]}), topic="bar")
    assert rows(bar.value) == [{"other_field": 1, "y": "a"}]
    baz = run(PREDICATE_EXAMPLE, pa.table({"other_field": [3], "y": ["c"]}), topic="baz")
    assert baz.value.column_names == [PRIMITIVE_COLUMN]
    assert baz.value.column(0).to_pylist() == [3]


def test_filter_mixed_topics_keeps_order_and_metadata():
    value = pa.table({"n": [0, 1, 2, 3, 4]})
    out = run([{"type": "Filter", "predicate": {"type": "TopicNameMatches", "pattern": "foo.*"}}], value,
              topic=["foo1", "bar", "foo2", "baz", "bar"], offset=[10, 11, 12, 13, 14], partition=0)
    assert out.value.column("n").to_pylist() == [1, 3, 4]
    assert out.offset.to_pylist() == [11, 13, 14]
    assert out.topic.cast(pa.string()).to_pylist() == ["bar", "baz", "bar"]


def test_filter_without_predicate_drops_everything():
    assert run([{"type": "Filter"}], pa.table({"n": [1, 2]})).num_rows == 0


def test_has_header_key_predicate_and_negate_on_mixed_batch():
    value = pa.table({"n": [1, 2, 3, 4]})
    hdr = {"trace": pa.array(["t", None, "t", None])}
    spec = {"type": "InsertField.Value", "static_field": "traced", "static_value": "yes",
            "predicate": {"type": "HasHeaderKey", "name": "trace"}}
    out = run([spec], value, headers=hdr)
    assert rows(out.value) == [{"n": 1, "traced": "yes"}, {"n": 2, "traced": None},
                               {"n": 3, "traced": "yes"}, {"n": 4, "traced": None}]
    out = run([{**spec, "negate": True}], value, headers=hdr)
    assert out.value.column("traced").to_pylist() == [None, "yes", None, "yes"]
    assert out.headers["trace"].to_pylist() == ["t", None, "t", None]


def test_record_is_tombstone_predicate():
    value = pa.table({"n": [1, None, 3]})
    out = run([{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}}], value,
              tombstone=[False, True, False], offset=[5, 6, 7])
    assert out.value.column("n").to_pylist() == [1, 3]
    assert out.offset.to_pylist() == [5, 7]
    out = run([{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}, "negate": True}], value,
              tombstone=[False, True, False])
    assert out.value.column("n").to_pylist() == [None]


def test_predicate_that_matches_nothing_leaves_the_batch_alone():
    value = pa.table({"n": [1]})
    out = run([{"type": "ReplaceField.Value", "exclude": "n",
                "predicate": {"type": "TopicNameMatches", "pattern": "x"}}], value, topic="y")
    assert rows(out.value) == [{"n": 1}]


def test_topic_predicate_without_topic_is_a_clear_error():
    chain = build_chain([{"type": "Filter", "predicate": {"type": "TopicNameMatches", "pattern": "x"}}])
    with pytest.raises(TransformError, match="needs the record topic"):
        chain(pa.table({"n": [1]}))


# --- Flatten, HoistField ------------------------------------------------------------------


def test_flatten():
    # delimiter "."; Before {"content": {"id": 42, "name": {"first": "David", "middle": null, "last": "Wong"}}}
    value = pa.table({"content": [{"id": 42, "name": {"first": "David", "middle": None, "last": "Wong"}}]})
    out = run([{"type": "Flatten.Value", "delimiter": "."}], value)
    assert rows(out.value) == [{"content.id": 42, "content.name.first": "David", "content.name.middle": None,
                                "content.name.last": "Wong"}]


def test_flatten_underscore_and_lists_untouched():
    value = pa.table({"a": [{"b": 1, "c": [1, 2]}], "d": [[{"e": 1}]]})
    out = run([{"type": "Flatten.Value", "delimiter": "_"}], value)
    assert rows(out.value) == [{"a_b": 1, "a_c": [1, 2], "d": [{"e": 1}]}]


def test_hoist_field():
    # field "line"; Foo, Bar → {"line":"Foo"}, {"line":"Bar"}
    out = run([{"type": "HoistField.Value", "field": "line"}], primitive(["Foo", "Bar"]))
    assert rows(out.value) == [{"line": "Foo"}, {"line": "Bar"}]


def test_hoist_field_of_a_struct():
    out = run([{"type": "HoistField.Value", "field": "after"}], pa.table({"a": [1], "b": ["x"]}))
    assert rows(out.value) == [{"after": {"a": 1, "b": "x"}}]


# --- InsertField --------------------------------------------------------------------------


def test_insert_field_static():
    value = pa.table({"author": ["Philip K. Dick"], "character": ["Palmer Eldritch"]})
    out = run([{"type": "InsertField.Value", "static_field": "MessageSource",
                "static_value": "Kafka Connect framework"}], value)
    assert rows(out.value) == [{"author": "Philip K. Dick", "character": "Palmer Eldritch",
                                "MessageSource": "Kafka Connect framework"}]


def test_insert_field_metadata():
    value = pa.table({"x": [1, 2]})
    ts = [1700000000000, 1700000000001]
    out = run([{"type": "InsertField.Value", "topic_field": "kafka_topic", "partition_field": "kafka_partition",
                "offset_field": "kafka_offset", "timestamp_field": "kafka_ts"}],
              value, topic="orders", partition=3, offset=[100, 101], timestamp=ts)
    assert rows(out.value) == [
        {"x": 1, "kafka_topic": "orders", "kafka_partition": 3, "kafka_offset": 100,
         "kafka_ts": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)},
        {"x": 2, "kafka_topic": "orders", "kafka_partition": 3, "kafka_offset": 101,
         "kafka_ts": dt.datetime(2023, 11, 14, 22, 13, 20, 1000, tzinfo=UTC)},
    ]
    assert out.value.schema.field("kafka_partition").type == pa.int32()


def test_insert_field_optional_and_required_metadata():
    value = pa.table({"x": [1]})
    out = run([{"type": "InsertField.Value", "offset_field": "off?"}], value, topic="t")
    assert rows(out.value) == [{"x": 1, "off": None}]
    with pytest.raises(TransformError, match="offset_field 'off!' is required"):
        run([{"type": "InsertField.Value", "offset_field": "off!"}], value, topic="t")


def test_insert_field_key_without_key_passes_through():
    out = run([{"type": "InsertField.Key", "static_field": "s", "static_value": "v"}], pa.table({"x": [1]}))
    assert out.key is None


# --- MaskField ----------------------------------------------------------------------------


def test_mask_field():
    # fields string_field; {"integer_field":22, "string_field":"foo"} → {"integer_field":22, "string_field":""}
    out = run([{"type": "MaskField.Value", "fields": "string_field"}],
              pa.table({"integer_field": [22], "string_field": ["foo"]}))
    assert rows(out.value) == [{"integer_field": 22, "string_field": ""}]


def test_mask_field_replacements():
    # The documented SSNMask, IPMask and PhoneMask chain.
    value = pa.table({"SSN": ["123-45-6789"], "IPAddress": ["10.0.0.1"], "office": ["+1-555-000-1111"],
                      "mobile": ["+1-555-000-2222"], "name": ["Ann"]})
    out = run([
        {"type": "MaskField.Value", "fields": "SSN", "replacement": "***-***-****"},
        {"type": "MaskField.Value", "fields": "IPAddress", "replacement": "xxx.xxx.xxx.xxx"},
        {"type": "MaskField.Value", "fields": "office,mobile", "replacement": "+0-000-000-0000"},
    ], value)
    assert rows(out.value) == [{"SSN": "***-***-****", "IPAddress": "xxx.xxx.xxx.xxx", "office": "+0-000-000-0000",
                                "mobile": "+0-000-000-0000", "name": "Ann"}]


def test_mask_field_type_nulls_keep_nulls():
    value = pa.table({"i": [5, None], "f": [1.5, 2.5], "b": [True, None], "d": [dt.date(2024, 1, 2)] * 2})
    out = run([{"type": "MaskField.Value", "fields": ["i", "f", "b", "d"]}], value)
    assert rows(out.value) == [{"i": 0, "f": 0.0, "b": False, "d": dt.date(1970, 1, 1)},
                               {"i": None, "f": 0.0, "b": None, "d": dt.date(1970, 1, 1)}]
    out = run([{"type": "MaskField.Value", "fields": "i", "replacement": "9"}], value)
    assert out.value.column("i").to_pylist() == [9, None]


# --- RegexRouter, TimestampRouter ---------------------------------------------------------


@pytest.mark.parametrize(("regex", "replacement", "before", "after"), [
    ("soe-(.*)", "$1", "soe-Order", "Order"),           # remove a topic prefix
    (".*", "acme_$0", "Order", "acme_Order"),           # add a topic prefix
    ("(.*)Stream_(.*)", "$1$2", "Order_Stream_Data", "Order_Data"),  # remove part of the name
    ("soe-(.*)", "$1", "other", "other"),               # no full match: unchanged
    ("Order", "X", "soe-Order", "soe-Order"),           # a partial match is not a match (Matcher.matches)
])
def test_regex_router(regex, replacement, before, after):
    out = run([{"type": "RegexRouter", "regex": regex, "replacement": replacement}], pa.table({"x": [1, 2]}),
              topic=before)
    assert out.topic.cast(pa.string()).to_pylist() == [after, after]


def test_regex_router_per_record_topics_and_split():
    out = run([{"type": "RegexRouter", "regex": "db\\.(\\w+)", "replacement": "cdc-$1"}], pa.table({"x": [1, 2, 3]}),
              topic=["db.a", "db.b", "db.a"])
    assert out.topic.cast(pa.string()).to_pylist() == ["cdc-a", "cdc-b", "cdc-a"]
    parts = out.split_by_topic()
    assert {t: b.value.column("x").to_pylist() for t, b in parts.items()} == {"cdc-a": [1, 3], "cdc-b": [2]}


def test_timestamp_router():
    # topic.format foo-${topic}-${timestamp}, timestamp.format YYYYMM; ordersTopic → foo-ordersTopic-201804
    ts = int(dt.datetime(2018, 4, 15, 12, 0, tzinfo=UTC).timestamp() * 1000)
    out = run([{"type": "TimestampRouter", "topic_format": "foo-${topic}-${timestamp}", "timestamp_format": "YYYYMM"}],
              pa.table({"x": [1]}), topic="ordersTopic", timestamp=ts)
    assert out.topic.cast(pa.string()).to_pylist() == ["foo-ordersTopic-201804"]


def test_timestamp_router_default_format_per_record():
    ts = [int(dt.datetime(2024, 1, d, tzinfo=UTC).timestamp() * 1000) for d in (1, 2)]
    out = run([{"type": "TimestampRouter"}], pa.table({"x": [1, 2]}), topic="logs", timestamp=ts)
    assert out.topic.cast(pa.string()).to_pylist() == ["logs-20240101", "logs-20240102"]


def test_timestamp_router_without_timestamp_is_an_error():
    with pytest.raises(TransformError, match="needs a timestamp"):
        run([{"type": "TimestampRouter"}], pa.table({"x": [1]}), topic="logs")


# --- ReplaceField, SetSchemaMetadata ------------------------------------------------------


def test_replace_field_exclude():
    out = run([{"type": "ReplaceField.Value", "exclude": "c2"}], pa.table({"c1": [22], "c2": ["foo"]}))
    assert rows(out.value) == [{"c1": 22}]


def test_replace_field_renames():
    out = run([{"type": "ReplaceField.Value", "renames": "foo:c1,bar:c2"}], pa.table({"foo": [22], "bar": ["baz"]}))
    assert rows(out.value) == [{"c1": 22, "c2": "baz"}]


def test_replace_field_include_exclude_precedence_and_order():
    value = pa.table({"a": [1], "b": [2], "c": [3], "d": [4]})
    out = run([{"type": "ReplaceField.Value", "include": ["d", "a", "c"], "exclude": ["c"], "renames": {"d": "D"}}],
              value)
    assert rows(out.value) == [{"a": 1, "D": 4}]
    assert out.value.column_names == ["a", "D"]


def test_set_schema_metadata():
    out = run([{"type": "SetSchemaMetadata.Value", "schema_name": "order-value", "schema_version": 2}],
              pa.table({"x": [1]}))
    assert out.value.schema.metadata == {b"connect.name": b"order-value", b"connect.version": b"2"}
    assert rows(out.value) == [{"x": 1}]


# --- TimestampConverter -------------------------------------------------------------------


def test_timestamp_converter_unix_to_string():
    # format yyyy-MM-dd, target.type string; Before 1696521093  After "2023-10-05".
    # 1696521093 is in seconds (in the default milliseconds it would be 1970-01-20), so the
    # documented output holds with unix_precision seconds; the milliseconds value gives the same day.
    spec = {"type": "TimestampConverter.Value", "format": "yyyy-MM-dd", "target_type": "string"}
    out = run([{**spec, "unix_precision": "seconds"}], primitive(pa.array([1696521093])))
    assert out.value.column(0).to_pylist() == ["2023-10-05"]
    out = run([spec], primitive(pa.array([1696521093000])))
    assert out.value.column(0).to_pylist() == ["2023-10-05"]


def test_timestamp_converter_unix_precision_microseconds_field():
    # field event_date_long with unix.precision microseconds → Timestamp
    value = pa.table({"event_date_long": [1696521093123456], "id": [1]})
    out = run([{"type": "TimestampConverter.Value", "field": "event_date_long", "target_type": "Timestamp",
                "unix_precision": "microseconds"}], value)
    assert rows(out.value) == [{"event_date_long": dt.datetime(2023, 10, 5, 15, 51, 33, 123456, tzinfo=UTC), "id": 1}]


def test_timestamp_converter_targets():
    t = dt.datetime(2024, 2, 29, 13, 45, 6, 789000, tzinfo=UTC)
    value = pa.table({"ts": pa.array([t, None], pa.timestamp("ms", tz="UTC"))})

    def conv(**kw):
        return run([{"type": "TimestampConverter.Value", "field": "ts", **kw}], value).value.column("ts").to_pylist()

    ms = 1709214306789
    assert conv(target_type="unix") == [ms, None]
    assert conv(target_type="unix", unix_precision="seconds") == [ms // 1000, None]
    assert conv(target_type="unix", unix_precision="nanoseconds") == [ms * 1_000_000, None]
    assert conv(target_type="Date") == [dt.date(2024, 2, 29), None]
    assert conv(target_type="Time") == [dt.time(13, 45, 6, 789000), None]
    assert conv(target_type="string", format="yyyy-MM-dd'T'HH:mm:ss.SSS") == ["2024-02-29T13:45:06.789", None]
    assert conv(target_type="string", format="dd/MM/yy hh:mm a") == ["29/02/24 01:45 PM", None]


def test_timestamp_converter_string_to_unix_and_back():
    value = pa.table({"s": ["2024-02-29 13:45:06.789", "1970-01-01 00:00:01.000"]})
    out = run([{"type": "TimestampConverter.Value", "field": "s", "target_type": "unix",
                "format": "yyyy-MM-dd HH:mm:ss.SSS"}], value)
    assert out.value.column("s").to_pylist() == [1709214306789, 1000]
    out = run([{"type": "TimestampConverter.Value", "field": "s", "target_type": "unix", "format": "yyyy-MM-dd"}],
              pa.table({"s": ["2023-10-05"]}))
    assert out.value.column("s").to_pylist() == [1696464000000]


def test_timestamp_converter_date_input_to_timestamp():
    out = run([{"type": "TimestampConverter.Value", "field": "d", "target_type": "Timestamp"}],
              pa.table({"d": [dt.date(2024, 1, 2)]}))
    assert out.value.column("d").to_pylist() == [dt.datetime(2024, 1, 2, tzinfo=UTC)]
    assert out.value.schema.field("d").type == pa.timestamp("ms", tz="UTC")


# --- user transforms and the simple path --------------------------------------------------


def double_qty(table: pa.Table) -> pd.DataFrame:
    """A user transform written with pandas."""
    df = table.to_pandas()
    df["qty"] = df["qty"] * 2
    return df


def keep_big(table: pa.Table) -> pa.Table:
    """A user transform that drops rows."""
    return table.filter(pa.compute.greater(table["qty"], 1))


def test_python_function_returning_pandas():
    chain = build_chain([{"type": "Python", "function": "tests.unit.test_transforms.double_qty"}])
    assert rows(chain(pa.table({"qty": [1, 2]}))) == [{"qty": 2}, {"qty": 4}]


def test_python_function_may_drop_rows_only_without_metadata():
    spec = [{"type": "Python", "function": "tests.unit.test_transforms:keep_big"}]
    assert rows(build_chain(spec)(pa.table({"qty": [1, 2]}))) == [{"qty": 2}]
    with pytest.raises(TransformError, match="must keep one row per record"):
        run(spec, pa.table({"qty": [1, 2]}), offset=[1, 2])


def test_python_function_import_error():
    with pytest.raises(TransformError, match="cannot import the transform function 'nope.mod.fn'"):
        build_chain([{"type": "Python", "function": "nope.mod.fn"}])


def test_chain_order_and_simple_table_path():
    chain = build_chain([
        {"type": "ReplaceField.Value", "exclude": ["secret"], "renames": ["qty:quantity"]},
        {"type": "Cast.Value", "spec": "quantity:float64"},
        {"type": "InsertField.Value", "static_field": "src", "static_value": "shop"},
    ])
    out = chain(pa.table({"id": [1, 2], "qty": [3, 4], "secret": ["s", "t"]}))
    assert rows(out) == [{"id": 1, "quantity": 3.0, "src": "shop"}, {"id": 2, "quantity": 4.0, "src": "shop"}]


def test_empty_chain_is_identity():
    table = pa.table({"a": [1]})
    assert build_chain(object())(table) is table
