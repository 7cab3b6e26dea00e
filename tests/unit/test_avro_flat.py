"""The word-at-a-time flat Avro codec: byte-identical to fastavro on every path it takes, and strict on bad bytes."""

from __future__ import annotations

import decimal
import io
import random
import uuid

import pyarrow as pa
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from integrations.converters import avro_flat
from integrations.converters.avro import AvroConverter, avro_schema, strip_logical
from integrations.converters.avro_flat import decode_flat, encode_flat, flat_plan
from integrations.converters.base import decimal_to_bytes
from integrations.converters.json import ConversionError

HEADER = b"\x00\x00\x00\x00\x2a"


def fastavro_messages(schema: dict, rows: list[dict], header: bytes = HEADER) -> list[bytes]:
    """What fastavro writes for each row, after ``header`` (the reference bytes)."""
    parsed = parse_schema(strip_logical(schema))
    out = []
    for rec in rows:
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(buf, parsed, rec)
        out.append(buf.getvalue())
    return out


def raw_rows(t: pa.Table) -> list[dict]:
    """Rows as fastavro takes them for the stripped schema: decimals as their unscaled bytes."""
    cols = {n: (decimal_to_bytes(c) if pa.types.is_decimal(c.type) else c) for n, c in zip(t.column_names, t.columns,
                                                                                      strict=True)}
    return pa.table(cols).to_pylist()


def mixed_table(n: int, seed: int = 3) -> pa.Table:
    """Decimals that fit 64 bits and some that don't, strings, NULLs, empty values."""
    rng = random.Random(seed)
    small = [None if k % 6 == 0 else decimal.Decimal(rng.randrange(-10**18 + 1, 10**18)).scaleb(-4) for k in range(n)]
    edges = [decimal.Decimal(v).scaleb(-4) for v in (0, 1, -1, 127, 128, -128, -129, 2**63 - 1, -(2**63))]
    small[: len(edges)] = edges
    return pa.table({
        "amount": pa.array(small, pa.decimal128(19, 4)),
        "big": pa.array([decimal.Decimal(rng.randrange(-10**37, 10**37)).scaleb(-2) if k % 5 else None
                         for k in range(n)], pa.decimal128(38, 2)),
        "s": pa.array(["" if k % 7 == 0 else ("é" * (k % 40)) for k in range(n)]),
        "l": pa.array([rng.randrange(-(2**63), 2**63) for _ in range(n)], pa.int64()),
    })


def test_decimals_strings_and_nulls_are_byte_identical_to_fastavro_and_round_trip_through_the_converter():
    t = mixed_table(3000)
    schema = avro_schema(t.schema, "mixed")
    plan = flat_plan(schema)
    assert plan is not None
    ours = encode_flat(t.columns, plan, HEADER).to_pylist()
    assert ours == fastavro_messages(schema, raw_rows(t))
    conv = AvroConverter(f"mock://{uuid.uuid4().hex[:8]}")
    back = conv.decode(conv.encode_values(t, "mixed").to_pylist())
    assert back.equals(t)
    assert back.schema.field("amount").type == pa.decimal128(19, 4)


def test_union_with_null_second_and_required_fields():
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "a", "type": ["long", "null"]},
        {"name": "b", "type": "string"},
        {"name": "c", "type": ["double", "null"]},
        {"name": "d", "type": "boolean"},
    ]}
    t = pa.table({"a": pa.array([1, None, -(2**40), None], pa.int64()), "b": ["x", "", "😀" * 5, "yz"],
                  "c": pa.array([None, 2.5, float("-inf"), 0.0]), "d": [True, False, True, True]})
    plan = flat_plan(schema)
    ours = encode_flat(t.columns, plan, HEADER).to_pylist()
    assert ours == fastavro_messages(schema, t.to_pylist())
    raw = pa.struct([pa.field(f.name, f.type) for f in t.schema])
    assert pa.table(decode_flat(pa.array(ours, pa.binary()), plan, raw, skip=5), schema=t.schema).equals(t)
    with pytest.raises(ConversionError, match="not nullable"):
        encode_flat([t["a"], pa.chunked_array([pa.array(["x", None, "a", "b"])]), t["c"], t["d"]], plan, HEADER)


def test_rows_too_wide_for_the_matrix_and_many_matrix_passes_give_the_same_bytes(monkeypatch):
    t = mixed_table(2000, seed=9)
    long_text = pa.array(["w" * (avro_flat.MAX_ROW_BYTES + 1 if k == 17 else k % 50) for k in range(2000)])
    wide = t.append_column("text", long_text)
    schema = avro_schema(wide.schema, "wide")
    plan = flat_plan(schema)
    expected = fastavro_messages(schema, raw_rows(wide))
    assert encode_flat(wide.columns, plan, HEADER).to_pylist() == expected  # the scatter codec
    monkeypatch.setattr(avro_flat, "MATRIX_BYTES", 4096)  # ~20 rows per pass
    narrow_schema = avro_schema(t.schema, "narrow")
    narrow_plan = flat_plan(narrow_schema)
    assert encode_flat(t.columns, narrow_plan, HEADER).to_pylist() == fastavro_messages(narrow_schema, raw_rows(t))


def test_empty_batches_and_all_null_columns():
    schema = {"type": "record", "name": "e", "fields": [{"name": "s", "type": ["null", "string"]},
                                                         {"name": "n", "type": ["null", "long"]}]}
    plan = flat_plan(schema)
    t = pa.table({"s": pa.array([None, None], pa.string()), "n": pa.array([None, None], pa.int64())})
    ours = encode_flat(t.columns, plan, HEADER).to_pylist()
    assert ours == [HEADER + b"\x00\x00"] * 2
    raw = pa.struct([pa.field("s", pa.string()), pa.field("n", pa.int64())])
    assert pa.table(decode_flat(pa.array(ours, pa.binary()), plan, raw, skip=5), schema=t.schema).equals(t)
    assert len(encode_flat([pa.array([], pa.string()), pa.array([], pa.int64())], plan, HEADER)) == 0
    assert [len(c) for c in decode_flat(pa.array([], pa.binary()), plan, raw, skip=5)] == [0, 0]


@pytest.mark.parametrize(("payload", "message"), [
    (b"\x04", "invalid union branch"),                      # branch 2 in a two-branch union
    (b"\x02\x06ab", "runs past the record"),                # string of 3 bytes, 2 present
    (b"\x02\x06\xff\xc3\x28\x00", "invalid data"),             # invalid UTF-8 (checked by the converter)
    (b"\x02\x00\x02" + b"\xff" * 11, "longer than 10 bytes"),
    (b"\x02\x00\x02\x02\x00", "trailing bytes"),
])
def test_malformed_payloads_are_conversion_errors(payload: bytes, message: str):
    schema = {"type": "record", "name": "m", "fields": [{"name": "s", "type": ["null", "string"]},
                                                         {"name": "n", "type": ["null", "long"]}]}
    conv = AvroConverter(f"mock://{uuid.uuid4().hex[:8]}")
    good = conv.encode_values(pa.table({"s": ["ok"], "n": [1]}), "m").to_pylist()[0]
    assert schemaless_reader(io.BytesIO(good[5:]), parse_schema(schema), None) == {"s": "ok", "n": 1}
    with pytest.raises(ConversionError, match=message):
        conv.decode([good, good[:5] + payload])


def test_messages_under_two_schema_ids_decode_in_their_order():
    conv = AvroConverter(f"mock://{uuid.uuid4().hex[:8]}")
    one = conv.encode_values(pa.table({"a": [1, 2]}), "t").to_pylist()
    two = conv.encode_values(pa.table({"a": [3], "b": ["x"]}), "t").to_pylist()
    back = conv.decode([one[0], two[0], one[1]])
    assert back.to_pylist() == [{"a": 1, "b": None}, {"a": 3, "b": "x"}, {"a": 2, "b": None}]
    with pytest.raises(ConversionError, match="shorter than the 5-byte"):
        conv.decode([one[0], b"\x00\x00"])
