"""Deterministic file names of the Parquet sink."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from integrations.config import ParquetSinkConfig
from integrations.sinks.parquet import ParquetSink, file_name


def test_file_name_is_zero_padded_to_20_digits():
    assert file_name("orders", 3, 42) == "orders+3+00000000000000000042.parquet"


def test_flush_size_splits_files_at_deterministic_offsets(tmp_path: Path):
    cfg = ParquetSinkConfig(name="u", type="parquet_sink", topics=["t"], path=str(tmp_path), flush_size=4)
    sink = ParquetSink(cfg)
    # offsets with a gap (e.g. a transaction marker at 5)
    offs = [0, 1, 2, 3, 4, 6, 7, 8, 9]
    durable = sink.put("t", 0, pa.table({"id": offs}), pa.array(offs, pa.int64()))
    assert durable == 9  # two full files: [0..3] and [4,6,7,8] → next offset 9
    assert sink.flush("t", 0) == 10
    names = sorted(p.name for p in (tmp_path / "t" / "partition=0").iterdir())
    assert names == [file_name("t", 0, 0), file_name("t", 0, 4), file_name("t", 0, 9)]
    assert sink.stats.rows == 9
