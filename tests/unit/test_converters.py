"""Converters: JSON with Kafka Connect's {schema, payload} envelope, string, bytes and Avro (against
confluent-kafka's in-memory registry here; tests/integration/test_avro_registry.py uses a real one)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import random
import uuid

import orjson
import pyarrow as pa
import pytest
from pydantic import ValidationError

from integrations.config import ConverterConfig, ParquetSinkConfig
from integrations.converters.avro import AvroConverter
from integrations.converters.base import bytes_to_decimal, decimal_to_bytes
from integrations.converters.factory import PlainJsonConverter, build_converter
from integrations.converters.json import ConversionError
from integrations.converters.json_schema import JsonSchemaConverter
from integrations.converters.simple import BytesConverter, StringConverter
from integrations.runtime.errors import locate_bad

UTC = dt.UTC


def every_type() -> pa.Table:
    """One column per type of the sources issue's type list, with edge values and NULLs."""
    return pa.table({
        "i16": pa.array([-32768, 32767, None], pa.int16()),
        "i32": pa.array([-(2**31), 2**31 - 1, None], pa.int32()),
        "i64": pa.array([-(2**63), 2**63 - 1, None], pa.int64()),
        "f32": pa.array([1.5, -0.0, None], pa.float32()),
        "f64": pa.array([1e308, -2.5e-308, None], pa.float64()),
        "flag": pa.array([True, False, None]),
        "txt": pa.array(["emoji 😀 ünïcode", "", None]),
        "raw": pa.array([b"\x00\xff\x10", b"", None], pa.binary()),
        "amount": pa.array([decimal.Decimal("12345678901234567890.123456"), decimal.Decimal("-0.000001"), None],
                           pa.decimal128(38, 6)),
        "small": pa.array([decimal.Decimal("1.28"), decimal.Decimal("-1.28"), None], pa.decimal128(5, 2)),
        "ts_utc": pa.array([dt.datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=UTC),
                            dt.datetime(1960, 1, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
        "ts_naive": pa.array([dt.datetime(2024, 10, 27, 2, 30, 0, 1), dt.datetime(1, 1, 1), None],
                             pa.timestamp("us")),
        "ts_ms": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), None, None],
                          pa.timestamp("ms", tz="UTC")),
        "day": pa.array([dt.date(2024, 2, 29), dt.date(1900, 1, 1), None], pa.date32()),
        "clock": pa.array([dt.time(23, 59, 59, 999999), dt.time(0, 0), None], pa.time64("us")),
        "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
        "nested": pa.array([{"x": 1, "y": "q"}, {"x": None, "y": None}, None],
                           pa.struct([("x", pa.int64()), ("y", pa.string())])),
        "span": pa.array([pa.MonthDayNano([14, -3, 86_399_999_999_999]), pa.MonthDayNano([0, 0, -1]), None],
                         pa.month_day_nano_interval()),
        "ratio": pa.array([float("inf"), float("-inf"), None]),
        "uid": pa.array(["0b0c5d5e-1f4e-4c8e-9a51-2f9b6a9d1c3e", "", None]),  # uuid, json and enums arrive as text
        "doc": pa.array(['{"a": [1, 2]}', "null", None]),
    })


# -- decimal bytes ------------------------------------------------------------------------------------

def _java_bytes(unscaled: int) -> bytes:
    """Java's BigInteger.toByteArray(): minimal big-endian two's complement."""
    n = (unscaled.bit_length() + 8) // 8 if unscaled >= 0 else ((-unscaled - 1).bit_length() + 8) // 8
    return unscaled.to_bytes(n, "big", signed=True)


def test_decimal_bytes_match_java_biginteger_and_round_trip():
    rng = random.Random(7)
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        values = [decimal.Decimal(0), decimal.Decimal("0.01"), decimal.Decimal("-0.01"), decimal.Decimal("1.27"),
                  decimal.Decimal("1.28"), decimal.Decimal("-1.28"), decimal.Decimal("-1.29"), None,
                  decimal.Decimal("9" * 36 + ".99"), decimal.Decimal("-" + "9" * 36 + ".99")]
        values += [decimal.Decimal(rng.randrange(-(10**38) + 1, 10**38)).scaleb(-2) for _ in range(500)]
        arr = pa.array(values, pa.decimal128(38, 2))
        got = decimal_to_bytes(arr.slice(1)).to_pylist()
        want = [None if v is None else _java_bytes(int(v.scaleb(2))) for v in values[1:]]
    assert got == want
    assert bytes_to_decimal(pa.array(got, pa.binary()), pa.decimal128(38, 2)).to_pylist() == values[1:]


# -- JSON with schemas (Kafka Connect's JsonConverter, schemas.enable=true) -----------------------------

def test_envelope_is_byte_identical_to_kafka_connect_for_a_struct():
    # Kafka Connect: Struct(SchemaBuilder.struct().field("id", INT32).field("name", OPTIONAL_STRING))
    t = pa.table([pa.array([1], pa.int32()), pa.array(["a"])],
                 schema=pa.schema([pa.field("id", pa.int32(), nullable=False), pa.field("name", pa.string())]))
    got = JsonSchemaConverter().encode_values(t, "t").to_pylist()
    assert got == ['{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},'
                   '{"type":"string","optional":true,"field":"name"}],"optional":false},'
                   '"payload":{"id":1,"name":"a"}}']


def test_logical_types_encode_as_kafka_connect_documents():
    # JsonConverterTest: Decimal 1.56 (scale 2) → "AJw="; Date = 10000 days; Timestamp = 4000000000 ms; Time ms
    t = pa.table({
        "d": pa.array([decimal.Decimal("1.56")], pa.decimal128(10, 2)),
        "day": pa.array([dt.date(1970, 1, 1) + dt.timedelta(days=10000)], pa.date32()),
        "ts": pa.array([4_000_000_000], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "tm": pa.array([14_400_000], pa.int32()).cast(pa.time32("ms")),
    })
    doc = orjson.loads(JsonSchemaConverter().encode_values(t, "t")[0].as_py())
    assert doc["payload"] == {"d": "AJw=", "day": 10000, "ts": 4000000000, "tm": 14400000}
    fields = {f["field"]: f for f in doc["schema"]["fields"]}
    assert fields["d"] == {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
                           "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                           "field": "d"}
    assert fields["day"]["name"] == "org.apache.kafka.connect.data.Date" and fields["day"]["type"] == "int32"
    assert fields["ts"]["name"] == "org.apache.kafka.connect.data.Timestamp" and fields["ts"]["type"] == "int64"
    assert fields["tm"]["name"] == "org.apache.kafka.connect.data.Time" and fields["tm"]["type"] == "int32"
    numeric = orjson.loads(JsonSchemaConverter("numeric").encode_values(t, "t")[0].as_py())
    assert numeric["payload"]["d"] == 1.56


def test_non_finite_floats_are_written_as_jackson_does_and_read_either_way():
    t = pa.table({"x": pa.array([float("nan"), float("inf"), float("-inf"), 1.25])})
    conv = JsonSchemaConverter()
    enc = conv.encode_values(t, "t").to_pylist()
    assert [orjson.loads(v)["payload"]["x"] for v in enc] == ["NaN", "Infinity", "-Infinity", 1.25]
    back = conv.decode([v.encode() for v in enc]).column("x").to_pylist()
    assert back[0] != back[0] and back[1:] == [float("inf"), float("-inf"), 1.25]


@pytest.mark.parametrize("fmt", ["base64", "numeric"])
def test_json_schema_round_trips_every_type(fmt):
    t = every_type()
    conv = JsonSchemaConverter(fmt)
    values = [v.encode() for v in conv.encode_values(t, "t").to_pylist()]
    back = conv.decode(values)
    assert back.schema.types == t.schema.types
    assert back.to_pylist() == t.to_pylist()


def test_json_schema_decodes_what_kafka_connect_writes():
    # written by Kafka Connect's JsonConverter (no precision parameter, non-optional fields, spaces)
    connect = [
        b'{"schema":{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal",'
        b'"version":1,"parameters":{"scale":"2"}},"payload":"AJw="}',
        b'{"schema": {"type": "bytes", "optional": false, "name": "org.apache.kafka.connect.data.Decimal", '
        b'"version": 1, "parameters": {"scale": "2"}}, "payload": "/2Q="}',
    ]
    back = JsonSchemaConverter().decode(connect)
    assert back.column("value").to_pylist() == [decimal.Decimal("1.56"), decimal.Decimal("-1.56")]
    struct = [b'{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"},'
              b'{"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1,'
              b'"field":"at"}],"optional":false,"name":"orders"},"payload":{"id":7,"at":1700000000000}}']
    row = JsonSchemaConverter().decode(struct).to_pylist()
    assert row == [{"id": 7, "at": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)}]


def test_json_schema_batch_with_two_schema_versions_keeps_order():
    conv = JsonSchemaConverter()
    v1 = conv.encode_values(pa.table({"id": pa.array([1, 3], pa.int64())}), "t").to_pylist()
    v2 = conv.encode_values(pa.table({"id": pa.array([2], pa.int64()), "extra": ["x"]}), "t").to_pylist()
    back = conv.decode([v1[0].encode(), v2[0].encode(), v1[1].encode()])
    assert back.to_pylist() == [{"id": 1, "extra": None}, {"id": 2, "extra": "x"}, {"id": 3, "extra": None}]


def test_json_schema_keys_and_bad_input():
    conv = JsonSchemaConverter()
    t = pa.table({"id": pa.array([5], pa.int64()), "v": ["x"]})
    assert conv.encode_keys(t, ["id"], "t") == ['{"schema":{"type":"int64","optional":true},"payload":5}']
    with pytest.raises(ConversionError, match="malformed JSON"):
        conv.decode([b'{"schema":'])
    with pytest.raises(ConversionError, match="envelope"):
        conv.decode([b'{"id": 1}'])
    ok = conv.encode_values(t, "t")[0].as_py().encode()
    with pytest.raises(ConversionError, match="does not match"):
        conv.decode([ok.replace(b'"id":5', b'"id":"five"')])


# -- string and bytes ---------------------------------------------------------------------------------

def test_string_and_bytes_converters():
    s = StringConverter()
    assert s.encode_values(pa.table({"n": pa.array([1, None], pa.int64())}), "t").to_pylist() == ["1", None]
    assert s.decode([b"h\xc3\xa9", b""]).to_pylist() == [{"value": "hé"}, {"value": ""}]
    with pytest.raises(ConversionError, match="invalid data"):
        s.decode([b"ok", b"\xff\xfe"])
    with pytest.raises(ConversionError, match="one column"):
        s.encode_values(pa.table({"a": [1], "b": [2]}), "t")
    b = BytesConverter("payload")
    assert b.decode([b"\xff\x00"]).to_pylist() == [{"payload": b"\xff\x00"}]
    assert b.encode_values(pa.table({"payload": pa.array([b"\x01"])}), "t").to_pylist() == [b"\x01"]


# -- Avro with the Schema Registry wire format (confluent-kafka's in-memory registry) -----------------

def _mock_url() -> str:
    return f"mock://{uuid.uuid4().hex[:8]}"


def test_avro_wire_format_and_round_trip_every_type():
    conv = AvroConverter(_mock_url())
    t = every_type()
    msgs = conv.encode_values(t, "orders").to_pylist()
    schema_id = conv.client.get_latest_version("orders-value").schema_id
    assert all(m[:5] == b"\x00" + schema_id.to_bytes(4, "big") for m in msgs)
    back = conv.decode(msgs)
    assert back.schema.types == t.schema.types
    assert back.to_pylist() == t.to_pylist()
    registered = orjson.loads(conv.client.get_latest_version("orders-value").schema.schema_str)
    amount = next(f for f in registered["fields"] if f["name"] == "amount")
    assert amount["type"] == ["null", {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 6}]
    ts = next(f for f in registered["fields"] if f["name"] == "ts_naive")
    assert ts["type"][1]["logicalType"] == "local-timestamp-micros"


def test_avro_schema_evolution_registers_a_new_version_and_decodes_mixed_batches():
    url = _mock_url()
    writer = AvroConverter(url)
    old = writer.encode_values(pa.table({"id": pa.array([1, 2], pa.int64())}), "t").to_pylist()
    new = writer.encode_values(pa.table({"id": pa.array([3], pa.int64()), "note": ["n"]}), "t").to_pylist()
    assert sorted(writer.client.get_versions("t-value")) == [1, 2]
    reader = AvroConverter(url, client=writer.client)  # a sink: no declared schema, only the ids
    back = reader.decode([old[0], new[0], old[1]])
    assert back.to_pylist() == [{"id": 1, "note": None}, {"id": 3, "note": "n"}, {"id": 2, "note": None}]


def test_avro_bad_messages_raise():
    conv = AvroConverter(_mock_url())
    good = conv.encode_values(pa.table({"id": pa.array([1], pa.int64()), "s": ["x"]}), "t").to_pylist()[0]
    with pytest.raises(ConversionError, match="5-byte"):
        conv.decode([b"\x00\x01"])
    with pytest.raises(ConversionError, match="magic"):
        conv.decode([b"\x01" + good[1:]])
    with pytest.raises(ConversionError):
        conv.decode([good[:-1]])  # truncated payload
    with pytest.raises(ConversionError, match="trailing"):
        conv.decode([good + b"\x00"])
    with pytest.raises(ConversionError):
        conv.decode([good[:-1] + b"\xff"])  # invalid UTF-8 in the string
    with pytest.raises(ConversionError, match="legal Avro field name"):
        conv.encode_values(pa.table({"bad name": [1]}), "t")


# -- locating bad records -----------------------------------------------------------------------------

def test_locate_bad_finds_malformed_wrong_typed_and_invalid_utf8_records():
    conv = PlainJsonConverter()
    vals = [b'{"a":1}', b'{"a":"x"}', b'{"a":', b'{"a":3}', b'{"a":"\xff"}', b'{"a":5}']
    bad, table = locate_bad(len(vals), lambda idx: conv.decode([vals[i] for i in idx]))
    assert sorted(bad) == [1, 2, 4]
    assert table.column("a").to_pylist() == [1, 3, 5]
    schema = pa.schema([("a", pa.int64())])
    bad, table = locate_bad(len(vals), lambda idx: conv.decode([vals[i] for i in idx], schema))
    assert sorted(bad) == [1, 2, 4] and table.column("a").to_pylist() == [1, 3, 5]


# -- configuration ------------------------------------------------------------------------------------

def test_converter_config_validation_and_factory():
    assert ConverterConfig(type="json", schemas_enable=True).kind == "json_schema"
    assert isinstance(build_converter(ConverterConfig(type="json", schemas_enable=True)), JsonSchemaConverter)
    assert build_converter(ConverterConfig(type="json_schema")).decimal_format == "base64"
    assert isinstance(build_converter(ConverterConfig(type="string")), StringConverter)
    assert isinstance(build_converter(ConverterConfig(type="avro", schema_registry_url=_mock_url())), AvroConverter)
    with pytest.raises(ValidationError, match="needs 'schema_registry_url'"):
        ConverterConfig(type="avro")
    with pytest.raises(ValidationError, match="does not apply"):
        ConverterConfig(type="json", decimal_format="base64")
    with pytest.raises(ValidationError, match="does not apply"):
        ConverterConfig(type="string", decimal_format="numeric")
    cfg = ParquetSinkConfig(name="x", type="parquet_sink", topics=["a"], path="p", errors_tolerance="all",
                            dlq_topic="a-dlq", errors_retry_timeout=30)
    assert (cfg.errors_tolerance, cfg.dlq_topic, cfg.errors_retry_timeout) == ("all", "a-dlq", 30)
    with pytest.raises(ValidationError, match="legal Kafka topic"):
        ParquetSinkConfig(name="x", type="parquet_sink", topics=["a"], path="p", dlq_topic="bad topic")
    with pytest.raises(ValidationError, match="errors_tolerance"):
        ParquetSinkConfig(name="x", type="parquet_sink", topics=["a"], path="p", errors_tolerance="some")
    with pytest.raises(ValidationError, match="Extra inputs"):
        ParquetSinkConfig(name="x", type="parquet_sink", topics=["a"], path="p", errors_tolerence="all")


def test_base64_helper_matches_stdlib():
    raw = bytes(range(256))
    t = pa.table({"b": pa.array([raw], pa.binary())})
    doc = orjson.loads(JsonSchemaConverter().encode_values(t, "t")[0].as_py())
    assert doc["payload"]["b"] == base64.b64encode(raw).decode()


def test_vectorised_flat_avro_is_byte_identical_to_fastavro_and_reads_its_output():
    import io

    from fastavro import parse_schema, schemaless_writer

    from integrations.converters.avro import avro_schema, strip_logical
    from integrations.converters.avro_flat import decode_flat, encode_flat, flat_plan

    rng = random.Random(11)
    n = 2000
    ints = [rng.choice([0, -1, 1, 63, -64, 64, 2**31 - 1, -(2**31), rng.randrange(-(2**31), 2**31)]) for _ in range(n)]
    longs = [rng.choice([0, -(2**63), 2**63 - 1, rng.randrange(-(2**63), 2**63), rng.randrange(-300, 300)])
             for _ in range(n)]
    t = pa.table({
        "i": pa.array([None if k % 7 == 0 else v for k, v in enumerate(ints)], pa.int32()),
        "l": pa.array(longs, pa.int64()),
        "f": pa.array([None if k % 5 == 0 else rng.uniform(-1e6, 1e6) for k in range(n)], pa.float32()),
        "d": pa.array([rng.choice([0.0, -0.0, float("inf"), float("nan"), rng.random()]) for _ in range(n)]),
        "b": pa.array([None if k % 3 == 0 else k % 2 == 0 for k in range(n)]),
        "s": pa.array([None if k % 4 == 0 else "é漢😀"[: k % 4] + "x" * (k % 300) for k in range(n)]),
        "raw": pa.array([bytes(range(k % 256)) for k in range(n)], pa.binary()),
    })
    schema = avro_schema(t.schema, "flat")
    plan = flat_plan(schema)
    assert plan is not None and [f.kind for f in plan] == ["int", "long", "float", "double", "boolean", "string",
                                                          "bytes"]
    header = b"\x00\x00\x00\x00\x07"
    ours = encode_flat(t.columns, plan, header).to_pylist()
    parsed = parse_schema(strip_logical(schema))
    theirs = []
    for rec in t.to_pylist():
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(buf, parsed, rec)
        theirs.append(buf.getvalue())
    assert ours == theirs
    raw = pa.struct([pa.field(f.name, f.type) for f in t.schema])
    back = pa.table(decode_flat(pa.array(theirs, pa.binary()), plan, raw, skip=5), schema=t.schema)
    assert back.equals(t) or back.to_pylist().__repr__() == t.to_pylist().__repr__()  # NaN != NaN
    with pytest.raises(ConversionError):
        decode_flat(pa.array([theirs[1][:-1]], pa.binary()), plan, raw, skip=5)


def test_registry_outage_is_transient_and_never_a_bad_record():
    from integrations.converters.avro import RegistryUnavailable
    from integrations.runtime.errors import is_transient

    conv = AvroConverter("http://127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(RegistryUnavailable) as exc:
        conv.encode_values(pa.table({"a": [1]}), "t")
    assert is_transient(exc.value)
    with pytest.raises(RegistryUnavailable):  # locate_bad re-raises an outage instead of blaming records
        locate_bad(2, lambda idx: conv.decode([b"\x00\x00\x00\x00\x01\x02"] * len(idx)))
