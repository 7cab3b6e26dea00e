"""transform_chain: a chain of 5 Kafka Connect SMTs over 1,000,000 rows through Headrace's transform chain.

The chain (configured on a connector, as a user would write it in YAML):
ReplaceField.Value (exclude + rename) → Cast.Value (two fields) → MaskField.Value → InsertField.Value
(static field) → TimestampConverter.Value (timestamp → unix milliseconds).

Ceiling: the same pyarrow.compute calls written by hand on the same table. Both sides start by
reading the same uncompressed Arrow IPC file written in setup, memory-mapped, so the load costs the
same on each side and stays small next to the work measured (a cold Parquet decode of 1M rows takes
~10x longer than the chain itself and would drown the comparison in noise).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from integrations.config import ParquetSinkConfig
from integrations.transforms import build_chain

NAME = "transform_chain"
DEFAULT_ROWS = 1_000_000
#: The chain takes ~20 ms per 1M rows: each child runs it this many times and reports the median.
INNER_REPEAT = 15

TRANSFORMS = [
    {"type": "ReplaceField.Value", "exclude": ["secret"], "renames": {"qty": "quantity"}},
    {"type": "Cast.Value", "spec": "quantity:int64,amount:float64"},
    {"type": "MaskField.Value", "fields": ["name"]},
    {"type": "InsertField.Value", "static_field": "source", "static_value": "shop-eu"},
    {"type": "TimestampConverter.Value", "field": "created_at", "target_type": "unix"},
]


def setup(rows: int) -> dict:
    """Write the input table (the benchmarks' usual row shape plus a secret column) as an Arrow IPC file."""
    folder = tempfile.mkdtemp(prefix="bench-transform-chain-")
    g = np.arange(1, rows + 1, dtype=np.int64)
    names = pa.array([f"name-{i}" for i in range(rows)], pa.string())
    names = pc.if_else(pa.array(g % 10 == 0), pa.scalar(None, pa.string()), names)
    table = pa.table({
        "id": g,
        "qty": pa.array((g % 1000).astype(np.int32)),
        "amount": pa.array((g % 100000) / 100.0).cast(pa.decimal128(12, 2)),
        "name": names,
        "created_at": pa.array(1_704_067_200_000_000 + g * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "secret": pa.array(np.char.add("s", (g % 997).astype(str)).astype(object), pa.string()),
    })
    path = str(Path(folder) / "input.arrow")
    with pa.OSFile(path, "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=100_000)
    return {"dir": folder, "path": path, "rows": rows}


def load(path: str) -> pa.Table:
    """The input table, memory-mapped (the same call on both sides)."""
    with pa.memory_map(path, "r") as source:
        return ipc.open_file(source).read_all()


def engine(state: dict) -> int:
    """Load the file, then run the connector's configured chain on it."""
    table = load(state["path"])
    config = ParquetSinkConfig.model_validate({
        "name": "bench-transform-chain", "type": "parquet_sink", "topics": ["orders"], "path": state["dir"],
        "transforms": TRANSFORMS,
    })
    out = build_chain(config)(table)
    assert out.num_columns == 6
    return out.num_rows


def ceiling(state: dict) -> int:
    """Load the file, then the same pyarrow.compute calls by hand."""
    t = load(state["path"])
    n = t.num_rows
    t = t.select(["id", "qty", "amount", "name", "created_at"]).rename_columns(
        ["id", "quantity", "amount", "name", "created_at"])
    t = t.set_column(1, "quantity", pc.cast(t.column(1), pa.int64(), safe=False))
    t = t.set_column(2, "amount", pc.cast(t.column(2), pa.float64(), safe=False))
    name = t.column(3)
    t = t.set_column(3, "name", pc.if_else(pc.is_valid(name), pa.scalar(""), pa.scalar(None, pa.string())))
    t = t.append_column("source", pa.repeat(pa.scalar("shop-eu"), n))
    ts = t.column(4).cast(pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
    t = t.set_column(4, "created_at", ts)
    assert t.num_columns == 6
    return t.num_rows


def teardown(state: dict) -> None:
    """Remove the input file."""
    shutil.rmtree(state["dir"], ignore_errors=True)
