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
    assert drive(src, {"file": "bad.jsonl"}) == []
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
    # the 64-byte block holding the bad line also holds records 38-39, so batch 30..39 cannot be built;
    # batch 20..29, held as the look-ahead, is not sent, and the error names the last record delivered
    assert [(ids[0], ids[-1], rec, done) for ids, rec, done in delivered] == [(0, 9, 10, False), (10, 19, 20, False)]
    assert "after record 20" in str(e.value)
