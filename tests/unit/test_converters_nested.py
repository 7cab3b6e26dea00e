"""Converters, beyond flat records: primitive keys/values written as Kafka Connect writes them,
logical types (decimal, date, time, timestamp) nested in lists, structs and maps, and Avro unions
wider than ``["null", T]`` (against confluent-kafka's in-memory registry; the real registry is in
tests/integration/test_avro_unions.py)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import uuid

import orjson
import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from integrations.config import ConverterConfig
from integrations.converters.avro import AvroConverter, union_member_names
from integrations.converters.factory import PRIMITIVE_COLUMN, build_converter
from integrations.converters.json_schema import JsonSchemaConverter
from integrations.transforms import PRIMITIVE_COLUMN as TRANSFORMS_PRIMITIVE

D = decimal.Decimal
UTC = dt.UTC


def _mock_url() -> str:
    return f"mock://{uuid.uuid4().hex[:8]}"


def _value(arr: pa.Array, nullable: bool = True) -> pa.Table:
    return pa.Table.from_arrays([arr], schema=pa.schema([pa.field(PRIMITIVE_COLUMN, arr.type, nullable)]))


PRIMITIVES = {
    "string": pa.array(["foo", "", "émoji 😀", None]),
    "int64": pa.array([0, -(2**63), 2**63 - 1, None], pa.int64()),
    "bytes": pa.array([b"\x00\xff", b"", b"abc", None], pa.binary()),
    "decimal": pa.array([D("1.56"), D("-0.01"), D("9999999999.99"), None], pa.decimal128(12, 2)),
    "timestamp": pa.array([dt.datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=UTC), dt.datetime(1960, 1, 1, tzinfo=UTC),
                           dt.datetime(1970, 1, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
    "timestamp_ms": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), None, None, None],
                             pa.timestamp("ms", tz="UTC")),
}


def test_primitive_column_name_is_the_transforms_one():
    assert PRIMITIVE_COLUMN == TRANSFORMS_PRIMITIVE == "__value__"


# -- primitive keys and values: JsonConverter with schemas.enable -------------------------------------

def test_primitive_envelope_is_byte_identical_to_kafka_connect():
    conv = JsonSchemaConverter()
    # Kafka Connect: Schema.STRING_SCHEMA / OPTIONAL_STRING_SCHEMA / INT64_SCHEMA / BYTES_SCHEMA
    assert conv.encode_values(_value(pa.array(["foo"]), nullable=False), "t").to_pylist() == [
        '{"schema":{"type":"string","optional":false},"payload":"foo"}']
    assert conv.encode_values(_value(pa.array(["foo", None])), "t").to_pylist() == [
        '{"schema":{"type":"string","optional":true},"payload":"foo"}',
        '{"schema":{"type":"string","optional":true},"payload":null}']
    assert conv.encode_values(_value(pa.array([42], pa.int64()), nullable=False), "t").to_pylist() == [
        '{"schema":{"type":"int64","optional":false},"payload":42}']
    assert conv.encode_values(_value(pa.array([b"\x00\xff"]), nullable=False), "t").to_pylist() == [
        '{"schema":{"type":"bytes","optional":false},"payload":"AP8="}']
    assert conv.encode_values(_value(pa.array([D("1.56")], pa.decimal128(12, 2)), nullable=False), "t").to_pylist() == [
        '{"schema":{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
        '"parameters":{"scale":"2","connect.decimal.precision":"12"}},"payload":"AJw="}']
    # a struct value is unchanged: a one-field table that is not __value__ stays a struct envelope
    assert conv.encode_values(pa.table({"v": ["foo"]}), "t").to_pylist()[0].startswith('{"schema":{"type":"struct"')


@pytest.mark.parametrize("fmt", ["base64", "numeric"])
@pytest.mark.parametrize("kind", sorted(PRIMITIVES))
def test_json_schema_primitive_round_trip(kind, fmt):
    arr = PRIMITIVES[kind]
    conv = JsonSchemaConverter(fmt)
    values = [v.encode() for v in conv.encode_values(_value(arr), "t").to_pylist()]
    assert all(orjson.loads(v)["schema"]["type"] != "struct" for v in values)
    back = conv.decode(values)
    assert back.column_names == ["value"]
    assert back.schema.field("value").type == arr.type
    assert back.column("value").to_pylist() == arr.to_pylist()


def test_primitive_decodes_into_the_configured_field():
    cfg = ConverterConfig(type="json", schemas_enable=True, field="amount")
    conv = build_converter(cfg)
    back = conv.decode([b'{"schema":{"type":"int64","optional":false},"payload":7}'])
    assert back.to_pylist() == [{"amount": 7}]
    avro = build_converter(ConverterConfig(type="avro", schema_registry_url=_mock_url(), field="amount"))
    msgs = avro.encode_values(_value(pa.array([7, None], pa.int64())), "t").to_pylist()
    assert avro.decode(msgs).to_pylist() == [{"amount": 7}, {"amount": None}]


# -- primitive keys and values: Avro ----------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(PRIMITIVES))
def test_avro_primitive_round_trip_registers_a_primitive_schema(kind):
    arr = PRIMITIVES[kind]
    conv = AvroConverter(_mock_url())
    msgs = conv.encode_values(_value(arr), "orders").to_pylist()
    registered = orjson.loads(conv.client.get_latest_version("orders-value").schema.schema_str)
    assert isinstance(registered, list) and registered[0] == "null"
    back = conv.decode(msgs)
    assert back.column_names == ["value"]
    assert back.schema.field("value").type == arr.type
    assert back.column("value").to_pylist() == arr.to_pylist()


def test_avro_primitive_bytes_are_those_of_the_primitive_schema():
    conv = AvroConverter(_mock_url(), is_key=True)
    msgs = conv.encode_values(_value(pa.array(["foo", "bar"]), nullable=False), "t").to_pylist()
    latest = conv.client.get_latest_version("t-key")
    assert orjson.loads(latest.schema.schema_str) == "string"
    header = b"\x00" + latest.schema_id.to_bytes(4, "big")
    assert msgs == [header + b"\x06foo", header + b"\x06bar"]
    optional = AvroConverter(_mock_url()).encode_values(_value(pa.array(["foo", None])), "t").to_pylist()
    assert [m[5:] for m in optional] == [b"\x02\x06foo", b"\x00"]  # ["null","string"]: branch, then value
    schema = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
    conv = AvroConverter(_mock_url())
    msgs = conv.encode_values(_value(pa.array([D("1.56")], pa.decimal128(12, 2)), nullable=False), "t").to_pylist()
    assert orjson.loads(conv.client.get_latest_version("t-value").schema.schema_str) == schema
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), D("1.56"))
    assert msgs[0][5:] == buf.getvalue()


def test_avro_decodes_a_primitive_written_by_another_producer():
    conv = AvroConverter(_mock_url())
    for schema, values in ((["null", "long"], [5, None, -1]), ("string", ["a", ""]),
                           ({"type": "int", "logicalType": "date"}, [19782, 0])):
        sid = conv.client.register_schema(f"p{len(values)}-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
        msgs = []
        for v in values:
            buf = io.BytesIO()
            buf.write(b"\x00" + sid.to_bytes(4, "big"))
            schemaless_writer(buf, parse_schema(schema), v)
            msgs.append(buf.getvalue())
        back = conv.decode(msgs)
        want = values if not isinstance(schema, dict) else [dt.date(1970, 1, 1) + dt.timedelta(days=d) for d in values]
        assert back.column("value").to_pylist() == want


# -- logical types nested in lists, structs and maps --------------------------------------------------

def nested_table() -> pa.Table:
    """list<decimal>, struct<decimal, timestamp>, map<string, decimal>, and deeper nesting, with NULLs inside."""
    return pa.table({
        "amounts": pa.array([[D("1.25"), None, D("-9999999999.99")], None, [], [D("0.00")]],
                            pa.list_(pa.decimal128(12, 2))),
        "pair": pa.array([{"a": D("3.10"), "b": dt.datetime(2024, 1, 1, 1, 2, 3, 456789, tzinfo=UTC)},
                          {"a": None, "b": None}, None, {"a": D("-0.01"), "b": dt.datetime(1960, 1, 1, tzinfo=UTC)}],
                         pa.struct([("a", pa.decimal128(12, 2)), ("b", pa.timestamp("us", tz="UTC"))])),
        "prices": pa.array([[("x", D("1.00")), ("y", None)], None, [], [("z", D("-12345.67"))]],
                           pa.map_(pa.string(), pa.decimal128(12, 2))),
        "events": pa.array([[{"day": dt.date(2024, 2, 29), "at": dt.time(1, 2, 3, 4), "raw": b"\x00\xff",
                              "ts": dt.datetime(2000, 1, 1, 0, 0, 0, 5000), "ms": dt.time(0, 0, 1, 500000)}],
                            [None], None,
                            [{"day": None, "at": None, "raw": None, "ts": None, "ms": None}]],
                           pa.list_(pa.struct([("day", pa.date32()), ("at", pa.time64("us")), ("raw", pa.binary()),
                                               ("ts", pa.timestamp("ms")), ("ms", pa.time32("ms"))]))),
        "deep": pa.array([{"l": [[D("1.5")], None]}, {"l": None}, None, {"l": [[]]}],
                         pa.struct([("l", pa.list_(pa.list_(pa.decimal128(5, 1))))])),
    })


@pytest.mark.parametrize("fmt", ["base64", "numeric"])
def test_json_schema_round_trips_nested_logical_types(fmt):
    t = nested_table()
    conv = JsonSchemaConverter(fmt)
    values = [v.encode() for v in conv.encode_values(t, "t").to_pylist()]
    back = conv.decode(values)
    assert back.schema.types == t.schema.types
    assert back.to_pylist() == t.to_pylist()


def test_json_schema_nested_decimal_is_written_and_read_as_kafka_connect_does():
    t = pa.table({"l": pa.array([[D("1.56"), None]], pa.list_(pa.decimal128(12, 2))),
                  "s": pa.array([{"d": D("-1.56"), "ts": dt.datetime(1970, 1, 1, 0, 0, 4, tzinfo=UTC)}],
                                pa.struct([("d", pa.decimal128(12, 2)), ("ts", pa.timestamp("ms", tz="UTC"))]))})
    doc = orjson.loads(JsonSchemaConverter().encode_values(t, "t")[0].as_py())
    assert doc["payload"] == {"l": ["AJw=", None], "s": {"d": "/2Q=", "ts": 4000}}
    assert doc["schema"]["fields"][0]["items"]["name"] == "org.apache.kafka.connect.data.Decimal"
    # as Kafka Connect's JsonConverter writes SchemaBuilder.array(Decimal.schema(2)) and a struct holding
    # Decimal.schema(2) and Timestamp.SCHEMA (no precision parameter: 38 digits are assumed)
    connect = [b'{"schema":{"type":"struct","fields":[{"type":"array","items":{"type":"bytes","optional":false,'
               b'"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"}},'
               b'"optional":false,"field":"l"},{"type":"struct","fields":[{"type":"bytes","optional":false,'
               b'"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"},"field":"d"},'
               b'{"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1,'
               b'"field":"ts"}],"optional":false,"field":"s"}],"optional":false},'
               b'"payload":{"l":["AJw=","/2Q="],"s":{"d":"AJw=","ts":null}}}']
    back = JsonSchemaConverter().decode(connect)
    assert back.schema.field("l").type == pa.list_(pa.decimal128(38, 2))
    assert back.to_pylist() == [{"l": [D("1.56"), D("-1.56")], "s": {"d": D("1.56"), "ts": None}}]


def test_json_schema_map_payload_errors_are_conversion_errors():
    from integrations.converters.json import ConversionError

    t = pa.table({"m": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64()))})
    ok = JsonSchemaConverter().encode_values(t, "t")[0].as_py().encode()
    with pytest.raises(ConversionError, match="does not match"):
        JsonSchemaConverter().decode([ok.replace(b'"a":1', b'"a":"one"')])


def test_json_schema_maps_with_non_string_keys_are_arrays_of_pairs():
    """Kafka Connect writes a map whose keys are not strings as [[key, value], ...], at any depth."""
    t = pa.table({
        "m": pa.array([[(1, "a"), (2, None)], None, []], pa.map_(pa.int32(), pa.string())),
        "s": pa.array([{"x": [(3, 1.5)], "y": [("k", [(5, True)])]}, None, {"x": None, "y": []}],
                      pa.struct([("x", pa.map_(pa.int64(), pa.float64())),
                                 ("y", pa.map_(pa.string(), pa.map_(pa.int16(), pa.bool_())))])),
        "l": pa.array([[[(7, "q")]], [], None], pa.list_(pa.map_(pa.int8(), pa.string()))),
        "d": pa.array([[(dt.date(2024, 2, 29), D("12.30"))], None, []], pa.map_(pa.date32(), pa.decimal128(10, 2))),
        "sm": pa.array([[("a", 1)], None, []], pa.map_(pa.string(), pa.int32())),
    })
    conv = JsonSchemaConverter()
    msgs = conv.encode_values(t, "t").to_pylist()
    assert orjson.loads(msgs[0])["payload"] == {
        "m": [[1, "a"], [2, None]], "s": {"x": [[3, 1.5]], "y": {"k": [[5, True]]}}, "l": [[[7, "q"]]],
        "d": [[19782, "BM4="]], "sm": {"a": 1}}
    assert orjson.loads(msgs[1])["payload"] == {"m": None, "s": None, "l": [], "d": None, "sm": None}
    back = conv.decode([m.encode() for m in msgs])
    assert back.schema == t.schema and back.to_pylist() == t.to_pylist()
    # as Kafka Connect writes it, by hand
    connect = (b'{"schema":{"type":"struct","fields":[{"type":"map","keys":{"type":"int64","optional":false},'
               b'"values":{"type":"string","optional":true},"optional":true,"field":"m"}],"optional":false},'
               b'"payload":{"m":[[10,"x"],[-1,null]]}}')
    assert conv.decode([connect]).to_pylist() == [{"m": [(10, "x"), (-1, None)]}]


def _nonfinite_table() -> pa.Table:
    inf, nan = float("inf"), float("nan")
    return pa.table({
        "xs": pa.array([[1.5, nan, inf], None, [-inf]], pa.list_(pa.float64())),
        "f4": pa.array([[1.1, -inf], [], None], pa.list_(pa.float32())),
        "s": pa.array([{"a": -inf, "n": "NaN"}, None, {"a": 2.0, "n": "Infinity"}],
                      pa.struct([("a", pa.float64()), ("n", pa.string())])),
        "top": pa.array([nan, 1.0, None], pa.float64()),
    })


def _same(a: pa.Table, b: pa.Table) -> bool:
    return a.schema == b.schema and repr(a.to_pylist()) == repr(b.to_pylist())  # repr: NaN != NaN


@pytest.mark.parametrize("kind", ["json", "json_schema"])
def test_nested_nan_and_infinity_are_the_strings_kafka_connect_writes(kind):
    """Jackson writes NaN and ±Infinity as strings at any depth; so do both converters, and they read
    them back (a string field holding "NaN" stays a string)."""
    t = _nonfinite_table()
    conv = build_converter(ConverterConfig(type=kind))
    msgs = [m if isinstance(m, bytes) else m.encode() for m in conv.encode_values(t, "t").to_pylist()]
    docs = [orjson.loads(m) for m in msgs]
    payloads = [d["payload"] for d in docs] if kind == "json_schema" else docs
    assert payloads[0] == {"xs": [1.5, "NaN", "Infinity"], "f4": [1.1, "-Infinity"], "s": {"a": "-Infinity", "n": "NaN"},
                           "top": "NaN"}
    assert payloads[2] == {"xs": ["-Infinity"], "f4": None, "s": {"a": 2.0, "n": "Infinity"}, "top": None}
    back = conv.decode(msgs, t.schema) if kind == "json" else conv.decode(msgs)
    assert _same(back, t)


def test_json_nested_nan_with_an_undeclared_field_is_an_error_not_a_loss():
    from integrations.converters.json import ConversionError

    schema = pa.schema([("xs", pa.list_(pa.float64())), ("q", pa.string())])
    conv = build_converter(ConverterConfig(type="json"))
    assert conv.decode([b'{"xs":["NaN",2]}'], schema).to_pylist() == [{"xs": [pytest.approx(float("nan"), nan_ok=True), 2.0],
                                                                      "q": None}]
    with pytest.raises(ConversionError, match="declare every field"):
        conv.decode([b'{"xs":["NaN"],"extra":1}'], schema)
    with pytest.raises(ConversionError, match="malformed"):
        conv.decode([b'{"xs":["NaN","abc"]}'], schema)


def test_avro_round_trips_nested_logical_types():
    t = nested_table()
    conv = AvroConverter(_mock_url())
    msgs = conv.encode_values(t, "t").to_pylist()
    registered = orjson.loads(conv.client.get_latest_version("t-value").schema.schema_str)
    amounts = next(f for f in registered["fields"] if f["name"] == "amounts")
    assert amounts["type"] == ["null", {"type": "array", "items": [
        "null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}]}]
    prices = next(f for f in registered["fields"] if f["name"] == "prices")
    assert prices["type"][1]["type"] == "map"
    assert prices["type"][1]["values"][1]["logicalType"] == "decimal"
    back = conv.decode(msgs)
    assert back.schema.types == t.schema.types
    assert back.to_pylist() == t.to_pylist()


def test_avro_time_nanos_is_a_long_named_nanotime_and_keeps_every_nanosecond():
    """Avro has no time-nanos; time[ns] is written as a long named io.debezium.time.NanoTime."""
    ns = [0, 1, 45_296_789_012_345, 86_399_999_999_999, None]
    t = pa.table({"t": pa.array(ns, pa.int64()).cast(pa.time64("ns")),
                  "l": pa.array([[1], [], None, [2, 3], [4]], pa.list_(pa.time64("ns")))})
    conv = AvroConverter(_mock_url())
    msgs = conv.encode_values(t, "t").to_pylist()
    fields = orjson.loads(conv.client.get_latest_version("t-value").schema.schema_str)["fields"]
    assert fields[0]["type"] == ["null", {"type": "long", "connect.name": "io.debezium.time.NanoTime"}]
    registered = parse_schema(orjson.loads(conv.client.get_latest_version("t-value").schema.schema_str))
    assert schemaless_reader(io.BytesIO(msgs[2][5:]), registered) == {"t": 45_296_789_012_345, "l": None}
    back = conv.decode(msgs)
    assert back.schema.types == t.schema.types
    assert back.column("t").cast(pa.int64()).to_pylist() == ns and back.column("l").equals(t.column("l"))


def test_avro_nested_decimal_bytes_match_fastavro():
    t = pa.table({"l": pa.array([[D("1.56"), None, D("-1.56")]], pa.list_(pa.decimal128(12, 2)))})
    conv = AvroConverter(_mock_url())
    msg = conv.encode_values(t, "t").to_pylist()[0]
    schema = orjson.loads(conv.client.get_latest_version("t-value").schema.schema_str)
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), {"l": [D("1.56"), None, D("-1.56")]})
    assert msg[5:] == buf.getvalue()


# -- Avro unions wider than ["null", T] ---------------------------------------------------------------

UNION_SCHEMA = {"type": "record", "name": "Event", "namespace": "com.example", "fields": [
    {"name": "id", "type": "long"},
    {"name": "a", "type": ["null", "string", "long"], "default": None},
    {"name": "b", "type": ["string", "long"]},
    {"name": "c", "type": ["int", "long"]},
    {"name": "who", "type": ["null",
                             {"type": "record", "name": "Person", "fields": [{"name": "name", "type": "string"}]},
                             {"type": "record", "name": "Robot", "fields": [
                                 {"name": "serial", "type": "long"},
                                 {"name": "price", "type": {"type": "bytes", "logicalType": "decimal",
                                                            "precision": 9, "scale": 2}}]},
                             "string"], "default": None},
    {"name": "again", "type": ["null", "Person", "com.example.Robot"], "default": None},
    {"name": "items", "type": {"type": "array", "items": ["null", "string", "double"]}},
    {"name": "when", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}, "string"],
     "default": None},
]}
UNION_RECORDS = [
    {"id": 1, "a": "x", "b": "s", "c": 1, "who": ("com.example.Person", {"name": "ann"}), "again": None,
     "items": ["q", 1.5, None], "when": dt.datetime(2024, 1, 1, tzinfo=UTC)},
    {"id": 2, "a": 5, "b": 7, "c": ("long", 2),
     "who": ("com.example.Robot", {"serial": 9, "price": D("12.50")}),
     "again": ("com.example.Robot", {"serial": 1, "price": D("-0.01")}), "items": [], "when": "soon"},
    {"id": 3, "a": None, "b": "", "c": ("int", -3), "who": "plain",
     "again": ("com.example.Person", {"name": "bob"}), "items": [None], "when": None},
]
UNION_ROWS = [
    {"id": 1, "a": {"string": "x", "long": None}, "b": {"string": "s", "long": None}, "c": {"int": 1, "long": None},
     "who": {"Person": {"name": "ann"}, "Robot": None, "string": None}, "again": None,
     "items": [{"string": "q", "double": None}, {"string": None, "double": 1.5}, None],
     "when": {"long": dt.datetime(2024, 1, 1, tzinfo=UTC), "string": None}},
    {"id": 2, "a": {"string": None, "long": 5}, "b": {"string": None, "long": 7}, "c": {"int": None, "long": 2},
     "who": {"Person": None, "Robot": {"serial": 9, "price": D("12.50")}, "string": None},
     "again": {"Person": None, "Robot": {"serial": 1, "price": D("-0.01")}}, "items": [],
     "when": {"long": None, "string": "soon"}},
    {"id": 3, "a": None, "b": {"string": "", "long": None}, "c": {"int": -3, "long": None},
     "who": {"Person": None, "Robot": None, "string": "plain"}, "again": {"Person": {"name": "bob"}, "Robot": None},
     "items": [None], "when": None},
]


def test_avro_wider_unions_decode_into_one_field_per_branch():
    conv = AvroConverter(_mock_url())
    sid = conv.client.register_schema("u-value", Schema(orjson.dumps(UNION_SCHEMA).decode(), "AVRO"))
    parsed = parse_schema(UNION_SCHEMA)
    msgs = []
    for r in UNION_RECORDS:
        buf = io.BytesIO()
        buf.write(b"\x00" + sid.to_bytes(4, "big"))
        schemaless_writer(buf, parsed, r)
        msgs.append(buf.getvalue())
    back = conv.decode(msgs)
    assert back.to_pylist() == UNION_ROWS
    types = dict(zip(back.column_names, back.schema.types, strict=True))
    assert types["a"] == pa.struct([("string", pa.string()), ("long", pa.int64())])
    assert back.schema.field("a").nullable and not back.schema.field("b").nullable
    assert types["c"] == pa.struct([("int", pa.int32()), ("long", pa.int64())])
    assert types["when"] == pa.struct([("long", pa.timestamp("ms", tz="UTC")), ("string", pa.string())])
    # a union as the whole value is a primitive value: one column, a struct of its branches
    top = ["null", "string", "long"]
    tid = conv.client.register_schema("top-value", Schema(orjson.dumps(top).decode(), "AVRO"))
    raw = []
    for v in ("a", 5, None):
        buf = io.BytesIO()
        buf.write(b"\x00" + tid.to_bytes(4, "big"))
        schemaless_writer(buf, parse_schema(top), v)
        raw.append(buf.getvalue())
    assert conv.decode(raw).to_pylist() == [{"value": {"string": "a", "long": None}},
                                            {"value": {"string": None, "long": 5}}, {"value": None}]


def test_union_member_names_follow_confluent_and_stay_unique():
    assert union_member_names(["string", "long", {"type": "record", "name": "a.b.Rec", "fields": []},
                               {"type": "array", "items": "int"}, {"type": "map", "values": "int"},
                               {"type": "enum", "name": "Color", "symbols": ["R"]}, "com.x.Named"]) == [
        "string", "long", "Rec", "array", "map", "Color", "Named"]
    assert union_member_names(["long", {"type": "long", "logicalType": "timestamp-millis"}]) == ["long", "long_1"]
