"""Deterministic file names of the Parquet sink, routed records included."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig
from integrations.errors import ConfigError
from integrations.sinks.parquet import ParquetSink, file_name, source_topic


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


def test_routed_records_go_to_their_topic_folders_per_segment(tmp_path: Path):
    cfg = ParquetSinkConfig(name="u", type="parquet_sink", topics=["t"], path=str(tmp_path), flush_size=4,
                            transforms=[{"type": "RegexRouter", "regex": "t", "replacement": "x"}])
    sink = ParquetSink(cfg)
    offs = [0, 1, 2, 3, 4, 5]
    routed = pa.array(["a", "b", "a", "a", "b", "b"])
    assert sink.put("t", 0, pa.table({"id": offs}), pa.array(offs, pa.int64()), routed) == 4
    assert sink.flush("t", 0) == 6
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    got = {f: pq.read_table(tmp_path / f).column("id").to_pylist() for f in files}
    assert got == {
        f"a/partition=0/{file_name('a', 0, 0)}": [0, 2, 3],  # segment [0..3]
        f"b/partition=0/{file_name('b', 0, 1)}": [1],
        f"b/partition=0/{file_name('b', 0, 4)}": [4, 5],  # segment [4..5]
    }
    assert source_topic(None, str(tmp_path / files[0])) == "t"


def test_a_second_source_topic_into_one_routed_folder_is_refused(tmp_path: Path):
    cfg = ParquetSinkConfig(name="u", type="parquet_sink", topics=["t", "s"], path=str(tmp_path),
                            transforms=[{"type": "RegexRouter", "regex": ".*", "replacement": "all"}])
    sink = ParquetSink(cfg)
    sink.put("t", 0, pa.table({"id": [1]}), pa.array([7], pa.int64()), pa.array(["all"]))
    assert sink.flush("t", 0) == 8
    sink.put("s", 0, pa.table({"id": [2]}), pa.array([9], pa.int64()), pa.array(["all"]))
    with pytest.raises(ConfigError, match="records of 's' and 't' both go to topic 'all'"):
        sink.flush("s", 0)
    again = ParquetSink(cfg)  # a new run: the existing file's metadata names its source topic
    again.put("s", 0, pa.table({"id": [2]}), pa.array([7], pa.int64()), pa.array(["all"]))
    with pytest.raises(ConfigError, match="records of 's' and 't'"):
        again.flush("s", 0)
    rerun = ParquetSink(cfg)  # the same source topic rewrites its own file (a crash re-run)
    rerun.put("t", 0, pa.table({"id": [1]}), pa.array([7], pa.int64()), pa.array(["all"]))
    assert rerun.flush("t", 0) == 8
