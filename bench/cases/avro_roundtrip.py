"""avro_roundtrip: Avro encode + decode of 1,000,000 rows through Headrace's Avro converter.

Engine: ``AvroConverter.encode_values`` (Schema Registry framing: magic byte, 4-byte id, payload)
then ``AvroConverter.decode`` back to an Arrow table with the original types, in batches of 100k
rows (the sink's consume batch). The registry is confluent-kafka's in-memory one (``mock://``):
it is called once per schema and cached, so a real registry would not change the timing. These
rows are flat records, so the converter uses its vectorised numpy codec
(``integrations/converters/avro_flat.py``, byte-identical to fastavro's output).

Ceiling, as the issue defines it: fastavro alone doing the same work with the fastest plain code:
the same vectorised column preparation (timestamps as int64 micros, decimals as two's-complement
bytes), one ``schemaless_writer`` call per record into one buffer, one ``schemaless_reader`` call
per record from one stream, and the same Arrow construction, without framing or a registry. The
engine does not call fastavro for flat records, so its ratio to this ceiling is well above 1
(about 8x on the development machine); nested schemas fall back to fastavro and run at about the
ceiling's speed.

Both sides read the same memory-mapped Arrow IPC file written in setup and check the decoded
table equals the input.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from integrations.converters.avro import AvroConverter
from integrations.converters.base import bytes_to_decimal, decimal_to_bytes

NAME = "avro_roundtrip"
DEFAULT_ROWS = 1_000_000
BATCH = 100_000


def setup(rows: int) -> dict:
    """Write the benchmarks' usual row shape as an uncompressed Arrow IPC file."""
    folder = tempfile.mkdtemp(prefix="bench-avro-")
    g = np.arange(1, rows + 1, dtype=np.int64)
    names = pa.array([f"name-{i}-é漢" for i in range(rows)], pa.string())
    names = pc.if_else(pa.array(g % 10 == 0), pa.scalar(None, pa.string()), names)
    table = pa.table({
        "id": g,
        "qty": pa.array((g % 1000).astype(np.int32)),
        "amount": pa.array((g % 100000) / 100.0).cast(pa.decimal128(12, 2)),
        "name": names,
        "created_at": pa.array(1_704_067_200_000_000 + g * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })
    path = str(Path(folder) / "input.arrow")
    with pa.OSFile(path, "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH)
    return {"dir": folder, "path": path, "rows": rows}


def load(path: str) -> pa.Table:
    """The input table, memory-mapped (the same call on both sides)."""
    return ipc.open_file(pa.memory_map(path)).read_all()


def engine(state: dict) -> int:
    """Encode each batch to framed Avro and decode it back through the converter."""
    table = load(state["path"])
    conv = AvroConverter(f"mock://bench-{uuid.uuid4().hex[:8]}")
    rows = 0
    for batch in table.to_batches(BATCH):
        t = pa.Table.from_batches([batch])
        messages = conv.encode_values(t, "bench-avro").to_pylist()
        back = conv.decode(messages)
        assert back.num_rows == t.num_rows
        rows += back.num_rows
    assert back.equals(t), "decoded batch differs from the input"
    return rows


RAW_SCHEMA = {
    "type": "record", "name": "bench", "fields": [
        {"name": "id", "type": ["null", "long"], "default": None},
        {"name": "qty", "type": ["null", "int"], "default": None},
        {"name": "amount", "type": ["null", "bytes"], "default": None},
        {"name": "name", "type": ["null", "string"], "default": None},
        {"name": "created_at", "type": ["null", "long"], "default": None},
    ],
}
RAW_TYPE = pa.struct([("id", pa.int64()), ("qty", pa.int32()), ("amount", pa.binary()), ("name", pa.string()),
                      ("created_at", pa.int64())])


def ceiling(state: dict) -> int:
    """fastavro alone: the same records written and read with the fastest plain loop."""
    table = load(state["path"])
    parsed = parse_schema(RAW_SCHEMA)
    rows = 0
    for batch in table.to_batches(BATCH):
        t = pa.Table.from_batches([batch])
        raw = pa.table({
            "id": t["id"], "qty": t["qty"], "amount": decimal_to_bytes(t["amount"]), "name": t["name"],
            "created_at": t["created_at"].cast(pa.int64()),
        })
        buf = io.BytesIO()
        for rec in raw.to_pylist():
            schemaless_writer(buf, parsed, rec)
        fo = io.BytesIO(buf.getvalue())
        records = [schemaless_reader(fo, parsed, None) for _ in range(t.num_rows)]
        back = pa.Table.from_struct_array(pa.array(records, RAW_TYPE))
        back = pa.table({
            "id": back["id"], "qty": back["qty"], "amount": bytes_to_decimal(back["amount"], pa.decimal128(12, 2)),
            "name": back["name"], "created_at": back["created_at"].cast(pa.timestamp("us", tz="UTC")),
        })
        rows += back.num_rows
    assert back.equals(t), "decoded batch differs from the input"
    return rows


def teardown(state: dict) -> None:
    shutil.rmtree(state["dir"], ignore_errors=True)
