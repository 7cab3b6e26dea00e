"""File source without Kafka: config rules, listing, readers and CSV options, offsets, cleanup, confinement."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from integrations.config import FileSourceConfig, load_connector
from integrations.errors import ConfigError
from integrations.registry import is_source, source_class
from integrations.sources.files import FileSource, FileSourceError, list_ready_files, safe_join
from integrations.sources.files_readers import read_tables
from tests.helpers import write_connector


def cfg(tmp_path: Path, **kw) -> FileSourceConfig:
    base = {"name": "files", "type": "file_source", "input_path": str(tmp_path / "in"), "topic": "t"}
    return FileSourceConfig(**{**base, **kw})


def drive(source: FileSource, partition: dict, offset: dict | None = None) -> list[tuple[list, dict]]:
    """Act like the runner: take each batch, 'store' its offset, then ask for the next."""
    return [(b.records.to_pylist(), b.offset) for b in source.poll(partition, offset)]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path / "in"


# -- configuration -------------------------------------------------------------------------------
def test_registered_as_source(tmp_path):
    c = cfg(tmp_path)
    assert is_source(c) and source_class(c) is FileSource and c.topic_for("x.csv") == "t"


def test_yaml_loads_with_the_type_discriminator(tmp_path):
    path = write_connector(tmp_path, {"name": "f1", "type": "file_source", "input_path": "/data/in",
                                      "topic": "orders", "format": "jsonl", "cleanup_policy": "delete"})
    c = load_connector(path)
    assert isinstance(c, FileSourceConfig) and c.format == "jsonl" and c.cleanup_policy == "delete"


@pytest.mark.parametrize("field, value, message", [
    ("input_file_pattern", r"\.\./secret\.csv", "parent or absolute path"),
    ("input_file_pattern", "../x.*", "parent or absolute path"),
    ("input_file_pattern", "/etc/passwd", "parent or absolute path"),
    ("input_file_pattern", "([", "not a valid regular expression"),
    ("finished_path", "/data/in/../../etc", "'..' segment"),
    ("error_path", "../errors", "'..' segment"),
    ("input_path", "s3://bucket/../other", "'..' segment"),
    ("charset", "klingon-8", "not a known text encoding"),
    ("topic", "bad topic", "not a legal Kafka topic name"),
])
def test_config_refuses(tmp_path, field, value, message):
    path = write_connector(tmp_path, {"name": "bad", "type": "file_source", "input_path": "/data/in",
                                      "topic": "t", field: value})
    with pytest.raises(ConfigError, match="field '" + field + "'") as e:
        load_connector(path)
    assert message in str(e.value)


def test_config_needs_paths_for_policies(tmp_path):
    with pytest.raises(ValueError, match="cleanup_policy 'move' needs 'finished_path'"):
        cfg(tmp_path, cleanup_policy="move")
    with pytest.raises(ValueError, match="halt_on_error: false needs 'error_path'"):
        cfg(tmp_path, halt_on_error=False)
    with pytest.raises(ValueError, match="same filesystem"):
        cfg(tmp_path, input_path="s3://b/in", cleanup_policy="move", finished_path="/local/done")


def test_finished_path_may_not_be_input_path(tmp_path, spool):
    with pytest.raises(ConfigError, match="finished_path may not be input_path"):
        FileSource(cfg(tmp_path, cleanup_policy="move", finished_path=str(spool)))


def test_safe_join_refuses_escapes():
    assert safe_join("/r", "a/b.csv") == "/r/a/b.csv"
    for bad in ("../x", "a/../../x", "/etc/passwd", "a//b", "./a", "C:/x", ""):
        with pytest.raises(ConfigError):
            safe_join("/r", bad)


# -- listing -------------------------------------------------------------------------------------
def test_listing_pattern_recursive_hidden_age_and_excluded_folders(tmp_path, spool):
    (spool / "b.csv").write_text("id\n1\n")
    (spool / "a.csv").write_text("id\n1\n2\n")
    (spool / "notes.txt").write_text("x")
    (spool / ".hidden.csv").write_text("id\n1\n")
    (spool / "sub").mkdir()
    (spool / "sub" / "c.csv").write_text("id\n1\n")
    (spool / "done").mkdir()
    (spool / "done" / "old.csv").write_text("id\n1\n")
    flat = cfg(tmp_path, input_file_pattern=r".*\.csv")
    assert [n for n, _s, _m in list_ready_files(flat)] == ["a.csv", "b.csv"]
    deep = cfg(tmp_path, input_file_pattern=r".*\.csv", recursive=True, cleanup_policy="move",
               finished_path=str(spool / "done"))
    ready = list_ready_files(deep)
    assert [n for n, _s, _m in ready] == ["a.csv", "b.csv", "sub/c.csv"]
    assert ready[0][1] == 7 and abs(ready[0][2] - os.stat(spool / "a.csv").st_mtime) < 1e-3
    by_path = cfg(tmp_path, input_file_pattern=r"sub/.*", recursive=True)
    assert [n for n, _s, _m in list_ready_files(by_path)] == ["sub/c.csv"]
    old = time.time() - 3600
    os.utime(spool / "a.csv", (old, old))
    aged = cfg(tmp_path, input_file_pattern=r".*\.csv", file_minimum_age=600)
    assert [n for n, _s, _m in list_ready_files(aged)] == ["a.csv"]


def test_symlink_out_of_the_root_is_refused(tmp_path, spool):
    outside = tmp_path / "secret.csv"
    outside.write_text("id\n42\n")
    (spool / "link.csv").symlink_to(outside)
    (spool / "ok.csv").write_text("id\n1\n")
    assert [n for n, _s, _m in list_ready_files(cfg(tmp_path))] == ["ok.csv"]


def test_pattern_cannot_reach_outside_the_root(tmp_path, spool):
    (tmp_path / "secret.csv").write_text("id\n42\n")
    # a pattern that would match the parent's file by name still only sees files under input_path
    assert list_ready_files(cfg(tmp_path, input_file_pattern=r"secret\.csv")) == []
    src = FileSource(cfg(tmp_path))
    with pytest.raises(ConfigError, match="escapes"):
        list(src.poll({"file": "../secret.csv"}, None))


# -- readers and CSV options ---------------------------------------------------------------------
def test_csv_options(tmp_path, spool):
    text = "# exported 2024\n# by a tool\nid;name;amount\n1;'a;b';NA\n2;NA;2.50\n3;'it''s';3\n"
    (spool / "x.csv").write_text(text)
    c = cfg(tmp_path, csv_separator_char=";", csv_quote_char="'", csv_skip_lines=2, csv_null_indicator="NA",
            value_schema={"id": "int32", "name": "string", "amount": "decimal(5,2)"})
    (t,) = read_tables(pafs.LocalFileSystem(), str(spool / "x.csv"), c)
    assert t.schema == pa.schema([("id", pa.int32()), ("name", pa.string()), ("amount", pa.decimal128(5, 2))])
    rows = t.to_pylist()
    assert [r["name"] for r in rows] == ["a;b", None, "it's"]
    assert [None if r["amount"] is None else str(r["amount"]) for r in rows] == [None, "2.50", "3.00"]


def test_csv_without_header_and_encoding(tmp_path, spool):
    (spool / "x.csv").write_bytes("1|café\n2|Zürich\n".encode("latin-1"))
    declared = cfg(tmp_path, csv_first_row_as_header=False, csv_separator_char="|", charset="latin-1",
                   value_schema={"id": "int64", "city": "string"})
    (t,) = read_tables(pafs.LocalFileSystem(), str(spool / "x.csv"), declared)
    assert t.to_pylist() == [{"id": 1, "city": "café"}, {"id": 2, "city": "Zürich"}]
    inferred = cfg(tmp_path, csv_first_row_as_header=False, csv_separator_char="|", charset="latin-1")
    (t,) = read_tables(pafs.LocalFileSystem(), str(spool / "x.csv"), inferred)
    assert t.column_names == ["f0", "f1"] and t.column("f1").to_pylist() == ["café", "Zürich"]


def test_csv_default_nulls_and_quoted_newlines(tmp_path, spool):
    (spool / "x.csv").write_text('id,note,n\n1,"two\nlines",\n2,,5\n')
    c = cfg(tmp_path, csv_newlines_in_values=True)
    (t,) = read_tables(pafs.LocalFileSystem(), str(spool / "x.csv"), c)
    assert t.to_pylist() == [{"id": 1, "note": "two\nlines", "n": None}, {"id": 2, "note": "", "n": 5}]


def test_jsonl_and_parquet_with_resume(tmp_path, spool):
    lines = "".join(f'{{"id": {i}, "v": "r{i}", "extra": true}}\n' for i in range(10))
    (spool / "x.jsonl").write_text(lines)
    j = cfg(tmp_path, format="jsonl", batch_size=4)
    fs = pafs.LocalFileSystem()
    assert [t.num_rows for t in read_tables(fs, str(spool / "x.jsonl"), j)] == [4, 4, 2]
    assert [r["id"] for t in read_tables(fs, str(spool / "x.jsonl"), j, start=7) for r in t.to_pylist()] == [7, 8, 9]
    declared = cfg(tmp_path, format="jsonl", value_schema={"v": "string", "id": "int16"})
    (t,) = read_tables(fs, str(spool / "x.jsonl"), declared, start=8)
    assert t.to_pylist() == [{"v": "r8", "id": 8}, {"v": "r9", "id": 9}]

    pq.write_table(pa.table({"id": list(range(10)), "v": [f"r{i}" for i in range(10)]}), spool / "x.parquet",
                   row_group_size=3)
    p = cfg(tmp_path, format="parquet", batch_size=4)
    assert [t.num_rows for t in read_tables(fs, str(spool / "x.parquet"), p)] == [4, 4, 2]
    for start in (0, 2, 3, 7, 9, 10):
        got = [r["id"] for t in read_tables(fs, str(spool / "x.parquet"), p, start=start) for r in t.to_pylist()]
        assert got == list(range(start, 10))
    pd = cfg(tmp_path, format="parquet", value_schema={"id": "int32"})
    (t,) = read_tables(fs, str(spool / "x.parquet"), pd, start=5)
    assert t.schema == pa.schema([("id", pa.int32())]) and t.column("id").to_pylist() == [5, 6, 7, 8, 9]


# -- offsets, resume and cleanup -----------------------------------------------------------------
def test_offsets_carry_identity_and_record_numbers_then_move(tmp_path, spool):
    (spool / "a.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(5)))
    c = cfg(tmp_path, batch_size=2, cleanup_policy="move", finished_path=str(tmp_path / "done"))
    src = FileSource(c)
    assert src.partitions() == [{"file": "a.csv"}]
    st = os.stat(spool / "a.csv")
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    gen = src.poll({"file": "a.csv"}, None)
    seen = []
    for batch in gen:
        seen.append((batch.records.column("id").to_pylist(), batch.offset))
        assert (spool / "a.csv").exists()  # never cleaned up while a batch is in flight
    assert seen == [([0, 1], {**ident, "record": 2, "done": False}), ([2, 3], {**ident, "record": 4, "done": False}),
                    ([4], {**ident, "record": 5, "done": True})]
    assert (spool / "a.csv").exists()  # finished; cleaned up when the run ends
    src.close()
    assert not (spool / "a.csv").exists() and (tmp_path / "done" / "a.csv").read_text().startswith("id\n0")


def test_resume_mid_file_and_after_done(tmp_path, spool):
    (spool / "a.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(5)))
    st = os.stat(spool / "a.csv")
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    src = FileSource(cfg(tmp_path, batch_size=2))
    src.partitions()
    assert drive(src, {"file": "a.csv"}, {**ident, "record": 3, "done": False}) == [
        ([{"id": 3}, {"id": 4}], {**ident, "record": 5, "done": True})]
    assert drive(src, {"file": "a.csv"}, {**ident, "record": 5, "done": True}) == []
    # a different file under the same name (other size) is read from the start
    assert [r for rows, _ in drive(src, {"file": "a.csv"}, {"size": 1, "mtime_ns": 1, "record": 5, "done": True})
            for r in rows] == [{"id": i} for i in range(5)]


def test_crash_after_last_offset_before_cleanup_only_cleans_up(tmp_path, spool):
    (spool / "a.csv").write_text("id\n1\n")
    st = os.stat(spool / "a.csv")
    src = FileSource(cfg(tmp_path, cleanup_policy="delete"))
    src.partitions()
    assert drive(src, {"file": "a.csv"}, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "record": 1,
                                          "done": True}) == []
    src.close()
    assert not (spool / "a.csv").exists()


def test_move_by_date_uses_the_file_mtime_in_utc(tmp_path, spool):
    (spool / "sub").mkdir()
    (spool / "sub" / "a.csv").write_text("id\n1\n")
    ts = 1_700_000_000  # 2023-11-14 22:13:20 UTC
    os.utime(spool / "sub" / "a.csv", (ts, ts))
    src = FileSource(cfg(tmp_path, recursive=True, cleanup_policy="move_by_date", finished_path=str(tmp_path / "d")))
    (part,) = src.partitions()
    assert len(drive(src, part)) == 1
    src.close()
    assert (tmp_path / "d" / "2023-11-14" / "sub" / "a.csv").exists()


def test_row_budget_truncation_stops_without_cleanup(tmp_path, spool):
    (spool / "a.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(4)))
    src = FileSource(cfg(tmp_path, batch_size=10, cleanup_policy="delete"))
    src.partitions()
    gen = src.poll({"file": "a.csv"}, None)
    batch = next(gen)
    assert batch.offset["done"] is True
    cut = src._advance({}, batch.records.slice(0, 3))  # what the runner's row budget does
    assert cut["record"] == 3 and cut["done"] is False
    assert list(gen) == []
    src.close()
    assert (spool / "a.csv").exists()  # not cleaned up: the file is not finished


def test_empty_and_header_only_files_are_finished_without_batches(tmp_path, spool):
    (spool / "empty.csv").write_text("")
    (spool / "header.csv").write_text("id,name\n")
    src = FileSource(cfg(tmp_path, cleanup_policy="delete"))
    for part in src.partitions():
        assert drive(src, part) == []
    src.close()
    assert list(spool.iterdir()) == []


def test_hash_identity_ignores_mtime(tmp_path, spool):
    (spool / "a.csv").write_text("id\n1\n2\n")
    src = FileSource(cfg(tmp_path, file_identity="hash"))
    src.partitions()
    ((_, off),) = drive(src, {"file": "a.csv"})
    assert set(off) == {"size", "blake2b", "record", "done"} and off["record"] == 2
    os.utime(spool / "a.csv", (1, 1))
    src.partitions()
    assert drive(src, {"file": "a.csv"}, off) == []  # same content: already done


def test_bad_file_halts_and_nothing_is_finished(tmp_path, spool):
    (spool / "a.csv").write_text("id,name\n0,z\n")
    (spool / "bad.csv").write_text("id,name\n1,a\n2,b,extra\n")
    src = FileSource(cfg(tmp_path, cleanup_policy="move", finished_path=str(tmp_path / "done")))
    assert src.partitions() == [{"file": "a.csv"}, {"file": "bad.csv"}]
    assert len(drive(src, {"file": "a.csv"})) == 1
    with pytest.raises(FileSourceError, match=r"cannot read bad\.csv: ArrowInvalid: .*Expected 2 columns, got 3.*"
                                              r"halt_on_error is true"):
        drive(src, {"file": "bad.csv"})
    src.close()
    assert (spool / "bad.csv").exists() and (spool / "a.csv").exists() and not (tmp_path / "done").exists()


def test_corrupt_parquet_moves_to_error_path_and_good_files_flow(tmp_path, spool):
    (spool / "a.parquet").write_bytes(b"not parquet at all" * 10)
    pq.write_table(pa.table({"id": [1, 2]}), spool / "b.parquet")
    src = FileSource(cfg(tmp_path, format="parquet", halt_on_error=False, error_path=str(tmp_path / "err"),
                         cleanup_policy="move", finished_path=str(tmp_path / "done")))
    got = [drive(src, part) for part in src.partitions()]
    src.close()
    assert [[r for rows, _ in g for r in rows] for g in got] == [[], [{"id": 1}, {"id": 2}]]
    assert [p.name for p in (tmp_path / "err").iterdir()] == ["a.parquet"]
    assert [p.name for p in (tmp_path / "done").iterdir()] == ["b.parquet"]


def test_bad_file_moves_to_error_path(tmp_path, spool):
    (spool / "bad.jsonl").write_text('{"id": 1}\n{"id": \n')
    src = FileSource(cfg(tmp_path, format="jsonl", halt_on_error=False, error_path=str(tmp_path / "err")))
    src.partitions()
    # the record before the bad line is delivered; its offset keeps where the file stopped
    ((rows, off),) = drive(src, {"file": "bad.jsonl"})
    assert rows == [{"id": 1}] and off["record"] == 1 and off["done"] is False and off["stopped"]["line"] == 2
    assert not (spool / "bad.jsonl").exists() and (tmp_path / "err" / "bad.jsonl").exists()


def test_fsspec_filesystem_memory(tmp_path):
    import fsspec

    mem = fsspec.filesystem("memory")
    root = f"/spool-{os.getpid()}-{time.time_ns()}"
    mem.pipe(f"{root}/in/a.csv", b"id\n1\n2\n")
    mem.pipe(f"{root}/in/sub/b.csv", b"id\n3\n")
    try:
        c = cfg(tmp_path, input_path=f"memory:/{root}/in", recursive=True, cleanup_policy="move",
                finished_path=f"memory:/{root}/done")
        assert [(n, s) for n, s, _m in list_ready_files(c)] == [("a.csv", 7), ("sub/b.csv", 5)]
        src = FileSource(c)
        got = [drive(src, part) for part in src.partitions()]
        src.close()
        assert [[r for rows, _ in g for r in rows] for g in got] == [[{"id": 1}, {"id": 2}], [{"id": 3}]]
        assert sorted(mem.find(root)) == [f"{root}/done/a.csv", f"{root}/done/sub/b.csv"]
    finally:
        mem.rm(root, recursive=True)


def test_error_deep_in_a_file_keeps_the_batches_before_it(tmp_path, spool, monkeypatch):
    from integrations.sources import files_readers

    monkeypatch.setattr(files_readers, "CSV_BLOCK", 64)  # many small blocks: the error is found late
    (spool / "a.csv").write_text("id,v\n" + "".join(f"{i},x{i}\n" for i in range(40)) + "40,x,EXTRA\n41,y\n")
    src = FileSource(cfg(tmp_path, batch_size=10, value_schema={"id": "int64", "v": "string"}))
    src.partitions()
    delivered = []
    with pytest.raises(FileSourceError, match=r"cannot read a\.csv, after record (\d+)") as e:
        for batch in src.poll({"file": "a.csv"}, None):
            delivered.append((batch.records.column("id").to_pylist(), batch.offset["record"], batch.offset["done"]))
    # the 64-byte block holding the bad line also holds records 38-39: every record of the blocks before it
    # is sent (the look-ahead batch, then what was read of the next one), and the error names the last
    assert [(ids[0], ids[-1], rec, done) for ids, rec, done in delivered] == [
        (0, 9, 10, False), (10, 19, 20, False), (20, 29, 30, False), (30, 37, 38, False)]
    assert "after record 38" in str(e.value) and "(at a.csv line 42)" in str(e.value)


# -- values that do not convert, per record ------------------------------------------------------
def csv_column(values: list[str], t: pa.DataType | None, **convert) -> pa.ChunkedArray:
    """Column ``x`` of a two-column CSV holding ``values``, read by pyarrow's CSV reader as ``t``."""
    import pyarrow.csv as pacsv

    data = ("k,x\n" + "".join(f"1,{v}\n" for v in values)).encode()
    types = {"x": t if t is not None else pa.binary()}
    return pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(column_types=types,
                                                                                      **convert))["x"]


CONVERSIONS = [  # (type, values the CSV reader converts, values it refuses)
    (pa.int64(), ["1", "-2", " 4", "5\t", "007", "9223372036854775807", "0x10", "", "NULL", "N/A", "nan"],
     ["x1", "+3", "1.0", "1e3", "9223372036854775808"]),
    (pa.int8(), ["127", "-128"], ["128"]),
    (pa.uint16(), ["65535"], ["-1"]),
    (pa.float64(), ["1.5", "1e3", "-inf", "inf", "nan", "NaN", " 2.5", "+1.5", ".5", "5."], ["1;5", "abc"]),
    (pa.float32(), ["1.5"], ["one"]),
    (pa.decimal128(12, 2), ["1.5", "1.25", "-0.01", "1e2", "+1.00", ".5", " 1.5", "1234567890.12"],
     ["1.255", "abc", "12345678901234.56", "1" * 39]),
    (pa.bool_(), ["true", "false", "True", "FALSE", "1", "0"], ["yes", "t", "tRue"]),
    (pa.date32(), ["2024-01-31", "2024-02-29"], ["2024-02-30", "20240131", "2024-1-5"]),
    (pa.time64("us"), ["12:34:56", "12:34:56.123456", "12:34"], ["25:00:00", "12:34:56.1234567", "noon"]),
    (pa.timestamp("us"), ["2024-01-01T10:00:00", "2024-01-01 10:00:00", "2024-01-01", "2024-01-01T10:00"],
     ["2024-01-01T10:00:00.123456789", "yesterday"]),
    (pa.timestamp("us", tz="UTC"), ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00+02:00",
                                    "2024-01-01 10:00:00+0200"], ["2024-01-01T10:00:00", "2024-13-01T00:00:00Z"]),
    (pa.timestamp("ms", tz="Europe/Paris"), ["2024-01-01T10:00:00.5Z"], ["2024-01-01T10:00:00"]),
    (pa.string(), ["a", "", "NULL", "é漢"], []),
    (pa.binary(), ["a", ""], []),
]


@pytest.mark.parametrize("t, good, bad", CONVERSIONS, ids=[str(c[0]) for c in CONVERSIONS])
def test_per_record_conversion_matches_the_csv_reader(t, good, bad):
    """The per-record path converts exactly what pyarrow's CSV reader converts, to the same values, and
    refuses, row by row, exactly what it refuses."""
    from integrations.sources.files_text import NULL_TEXTS, convert_batch

    for v in bad:
        with pytest.raises(pa.ArrowInvalid):
            csv_column([v], t)
    values = good + bad
    raw = pa.RecordBatch.from_arrays([csv_column(values, None).combine_chunks()], names=["x"])
    out, failed = convert_batch(raw, pa.schema([("x", t)]), None if pa.types.is_string(t) or pa.types.is_binary(t)
                                else NULL_TEXTS)
    assert sorted(failed) == list(range(len(good), len(values)))
    assert [col for col, _v, _e in failed.values()] == ["x"] * len(bad)
    assert [v for _c, v, _e in failed.values()] == [b.encode() for b in bad]
    assert out.column(0).slice(0, len(good)).to_pylist() == csv_column(good, t).to_pylist()
    assert out.column(0).slice(len(good)).null_count == len(bad)


def test_decimal_past_its_precision_is_bad_in_both_paths(tmp_path, spool):
    """pyarrow's CSV reader lets 12345678901.5 into decimal(12,2) (it checks the digits as written); the
    file source refuses it as the per-record path does."""
    (spool / "a.csv").write_text("id,amount\n1,1234567890.5\n2,12345678901.5\n3,3\n")
    c = cfg(tmp_path, value_schema={"id": "int64", "amount": "decimal(12,2)"}, errors_tolerance="all")
    src = FileSource(c)
    src.partitions()
    (batch,) = list(src.poll({"file": "a.csv"}, None))
    assert batch.records.column("id").to_pylist() == [1, 3]
    assert [(r.value, r.position) for r in batch.rejects] == [(b"2,12345678901.5", "line 3")]
    assert "value '12345678901.5' does not convert to decimal128(12, 2)" in str(batch.rejects[0].error)


def test_bad_values_and_malformed_lines_are_filed_per_record(tmp_path, spool, monkeypatch):
    """Bad values and malformed lines, in small blocks: good rows flow with consecutive record numbers,
    each bad line comes with the batch of the good records around it, with its original text (quotes,
    separators and all) and its line number; a resume mid-file files them the same way."""
    from integrations.sources import files_readers

    monkeypatch.setattr(files_readers, "CSV_BLOCK", 128)
    rows = [f"{i},\"n,{i}\",{i}.5" for i in range(30)]
    rows[3] = '3,"n,3",x.5'  # bad decimal
    rows[4] = "4,too,many,fields"  # malformed
    rows[12] = '12x,"n,12",12.5'  # bad int (a later block)
    rows[13] = '13,"bad\x1fsep",1e999999'  # bad decimal; the line holds the line reader's separator
    rows[25] = "25,\"n,25\"  ,25.5"  # malformed for the parser? no: a quoted value then spaces is kept
    (spool / "a.csv").write_text("# comment\nid,name,amount\n" + "\n".join(rows[:10]) + "\n\n"
                                 + "\n".join(rows[10:]) + "\n")
    c = cfg(tmp_path, batch_size=5, csv_skip_lines=1, errors_tolerance="all",
            value_schema={"id": "int64", "name": "string", "amount": "decimal(6,1)"})
    src = FileSource(c)
    src.partitions()
    got = list(src.poll({"file": "a.csv"}, None))
    ids = [i for b in got for i in b.records.column("id").to_pylist()]
    assert ids == [i for i in range(30) if i not in (3, 4, 12, 13)]
    assert [b.offset["record"] for b in got] == [5, 10, 15, 20, 25, 26]
    rejects = [(r.value, r.position, type(r.error).__name__, b.offset["record"]) for b in got for r in b.rejects]
    # rows 0-9 are lines 3-12; the empty line after them is not counted, so row 12 is line 15
    assert rejects == [(b'3,"n,3",x.5', "line 6", "BadRecord", 5), (b"4,too,many,fields", "line 7",
                                                                       "MalformedCsvLine", 5),
                       (b'12x,"n,12",12.5', "line 15", "BadRecord", 15),
                       (b'13,"bad\x1fsep",1e999999', "line 16", "BadRecord", 15)]
    assert str(got[0].rejects[0].error) == ("a.csv line 6: column 'amount': value 'x.5' does not convert to "
                                            "decimal128(6, 1) (The string 'x.5' is not a valid decimal128 number)")
    assert got[2].records.column("name").to_pylist()[:2] == ["n,14", "n,15"]

    # resume at record 8 (mid-batch, before both later bad lines): the same lines, filed the same way
    again = list(src.poll({"file": "a.csv"}, {**got[0].offset, "record": 8}))
    assert [i for b in again for i in b.records.column("id").to_pylist()] == ids[8:]
    assert [(r.position, b.offset["record"]) for b in again for r in b.rejects] == [("line 15", 13), ("line 16", 13)]


def test_a_bad_value_under_none_stops_after_the_rows_before_it(tmp_path, spool):
    (spool / "a.csv").write_text("id,v\n" + "".join(f"{i},{i}\n" for i in range(7)) + "7,seven\n8,8\n")
    c = cfg(tmp_path, batch_size=3, value_schema={"id": "int64", "v": "int32"})
    src = FileSource(c)
    src.partitions()
    delivered = []
    with pytest.raises(FileSourceError) as e:
        for b in src.poll({"file": "a.csv"}, None):
            delivered.append((b.records.column("id").to_pylist(), b.offset))
    assert [ids for ids, _ in delivered] == [[0, 1, 2], [3, 4, 5], [6]]
    last = delivered[-1][1]
    assert last["record"] == 7 and last["done"] is False and last["stopped"]["line"] == 9
    assert str(e.value).startswith(
        "file source files: bad record in a.csv line 9: column 'v': value 'seven' does not convert to int32 "
        "(Failed to parse string: 'seven' as a scalar of type int32); the records before it are delivered "
        "(offset record 7); halt_on_error is true")

    # unchanged: it stops at the same line, sending nothing again
    with pytest.raises(FileSourceError, match="a.csv line 9"):
        assert drive(src, {"file": "a.csv"}, last) == []
    # fixed (the lines before it unchanged): it resumes after the records already delivered
    (spool / "a.csv").write_text("id,v\n" + "".join(f"{i},{i}\n" for i in range(7)) + "7,7\n8,8\n")
    src.partitions()
    assert [(rows, off["record"], off["done"]) for rows, off in drive(src, {"file": "a.csv"}, last)] == [
        ([{"id": 7, "v": 7}, {"id": 8, "v": 8}], 9, True)]
    # changed before the bad line too: a different file, read from the start
    (spool / "a.csv").write_text("id,v\n" + "".join(f"{i},{i}\n" for i in range(1, 7)) + "7,7\n")
    src.partitions()
    assert [r["id"] for rows, _ in drive(src, {"file": "a.csv"}, last) for r in rows] == [1, 2, 3, 4, 5, 6, 7]


def test_inferred_column_empty_in_the_first_block_becomes_text(tmp_path, spool, monkeypatch):
    from integrations.sources import files_readers

    monkeypatch.setattr(files_readers, "CSV_BLOCK", 64)
    (spool / "a.csv").write_text("id,note\n" + "".join(f"{i},\n" for i in range(20)) + "20,hello\n21,\n")
    src = FileSource(cfg(tmp_path, batch_size=100))
    src.partitions()
    ((rows, off),) = drive(src, {"file": "a.csv"})
    # from the block where it has a value on, it is a text column, whose null texts stay null
    assert [r["note"] for r in rows] == [None] * 20 + ["hello", None] and off["record"] == 22


def test_invalid_utf8_in_a_text_column_is_a_bad_record(tmp_path, spool):
    (spool / "a.csv").write_bytes(b"id,name\n1,ann\n2,b\xffb\n3,cyd\n")
    src = FileSource(cfg(tmp_path, errors_tolerance="all", value_schema={"id": "int64", "name": "string"}))
    src.partitions()
    (batch,) = list(src.poll({"file": "a.csv"}, None))
    assert batch.records.to_pylist() == [{"id": 1, "name": "ann"}, {"id": 3, "name": "cyd"}]
    assert [(r.value, r.position) for r in batch.rejects] == [(b"2,b\xffb", "line 3")]


def test_quoted_newlines_dead_letter_the_row_as_json(tmp_path, spool):
    (spool / "a.csv").write_text('id,note\n1,"one\nline"\nx2,"two"\n3,three\n')
    src = FileSource(cfg(tmp_path, errors_tolerance="all", csv_newlines_in_values=True,
                         value_schema={"id": "int64", "note": "string"}))
    src.partitions()
    (batch,) = list(src.poll({"file": "a.csv"}, None))
    assert batch.records.column("id").to_pylist() == [1, 3]
    assert [(r.value, r.position) for r in batch.rejects] == [(b'{"id":"x2","note":"two"}', "line 3")]


@pytest.mark.parametrize("declared", [None, {"id": "int64", "amt": "decimal(5,2)"}])
def test_json_lines_that_do_not_parse_are_bad_records(tmp_path, spool, declared):
    lines = ['{"id": 1, "amt": "1.5"}', '{"id": "x", "amt": "2"}', "", '{"id": 3, "amt": "3"',
             '{"id": 4, "amt": "4.25"}', '{"id": 5, "amt": "5"}']
    (spool / "a.jsonl").write_text("\n".join(lines) + "\n")
    src = FileSource(cfg(tmp_path, format="jsonl", batch_size=2, errors_tolerance="all", value_schema=declared))
    src.partitions()
    got = list(src.poll({"file": "a.jsonl"}, None))
    assert [r["id"] for b in got for r in b.records.to_pylist()] == [1, 4, 5]
    assert [b.offset["record"] for b in got] == [2, 3]
    assert [(r.value, r.position, b.offset["record"]) for b in got for r in b.rejects] == [
        (lines[1].encode(), "line 2", 2), (lines[3].encode(), "line 4", 2)]
    assert all(type(r.error).__name__ == "BadRecord" for r in got[0].rejects)

    none = FileSource(cfg(tmp_path, format="jsonl", batch_size=2, value_schema=declared))
    none.partitions()
    delivered = []
    with pytest.raises(FileSourceError, match=r"bad record in a\.jsonl line 2: JSON parse error"):
        for b in none.poll({"file": "a.jsonl"}, None):
            delivered.append((b.records.column("id").to_pylist(), b.offset["record"]))
    assert delivered == [([1], 1)]
