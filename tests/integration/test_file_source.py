"""File source against the real broker: bad files, SIGKILL mid-file, JSON lines and Parquet, cleanup."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition

from integrations.config import FileSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.source_runner import run_source
from integrations.sources.files import FileSourceError
from tests.conftest import run_cli, start_moto_s3
from tests.helpers import read_topic, write_connector


def values(kafka: KafkaSettings, topic: str) -> list[dict]:
    return [orjson.loads(v) for _k, v, _p, _o in read_topic(kafka, topic)]


def topic_ids(kafka: KafkaSettings, topic: str, timeout: float = 120) -> pa.Array:
    """The ``id`` of every record of a one-partition topic, parsed in bulk (short consume timeouts)."""
    c = kafka.consumer(group_id=f"test-ids-{uuid.uuid4().hex[:8]}")
    chunks: list[pa.Array] = []
    try:
        high = kafka.watermarks(topic)[0][1]
        if high == 0:
            return pa.array([], pa.int64())
        c.assign([TopicPartition(topic, 0, 0)])
        seen, deadline = 0, time.monotonic() + timeout
        while seen < high:
            assert time.monotonic() < deadline, f"timed out reading {topic} ({seen}/{high})"
            msgs = [m for m in c.consume(num_messages=200_000, timeout=0.2) if not m.error()]
            if not msgs:
                continue
            seen = msgs[-1].offset() + 1
            blob = b"\n".join(m.value() for m in msgs) + b"\n"
            chunks.append(pajson.read_json(pa.BufferReader(blob)).column("id").combine_chunks())
    finally:
        c.close()
    return pa.concat_arrays(chunks)


def source_cfg(tmp_path: Path, unique: str, topic: str, **kw) -> FileSourceConfig:
    base = {"name": f"files-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"), "topic": topic}
    return FileSourceConfig(**{**base, **kw})


@pytest.fixture
def offsets_topic(topic_factory) -> str:
    return topic_factory("offsets", create=False)


def three_csv_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("id,name\n1,ann\n2,bob\n3,cyd\n")
    (folder / "b.csv").write_text("id,name\n10,dan\n11,eve,EXTRA\n12,fay\n")  # malformed: 3 fields
    (folder / "c.csv").write_text("id,name\n4,gus\n5,hal\n6,ida\n")


def test_malformed_file_goes_to_error_path_and_the_others_flow(kafka, topic_factory, offsets_topic, tmp_path,
                                                               unique):
    topic = topic_factory("files")
    three_csv_files(tmp_path / "in")
    cfg = source_cfg(tmp_path, unique, topic, input_file_pattern=r".*\.csv", halt_on_error=False,
                     error_path=str(tmp_path / "err"), cleanup_policy="move", finished_path=str(tmp_path / "done"))
    res = run_source(cfg, kafka, offsets_topic=offsets_topic)
    assert values(kafka, topic) == [{"id": i, "name": n} for i, n in
                                    [(1, "ann"), (2, "bob"), (3, "cyd"), (4, "gus"), (5, "hal"), (6, "ida")]]
    assert res.rows == 6
    assert {k: s.rows for k, s in res.per_partition.items()} == {
        '{"file":"a.csv"}': 3, '{"file":"b.csv"}': 0, '{"file":"c.csv"}': 3}
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.csv", "c.csv"]
    assert [p.name for p in (tmp_path / "err").iterdir()] == ["b.csv"]
    assert list((tmp_path / "in").iterdir()) == []
    stored = OffsetStore(kafka, offsets_topic).read(cfg.name)
    assert {k: (v["record"], v["done"]) for k, v in stored.items()} == {
        '{"file":"a.csv"}': (3, True), '{"file":"c.csv"}': (3, True)}
    again = run_source(cfg, kafka, offsets_topic=offsets_topic)
    assert again.rows == 0 and again.per_partition == {}


def test_malformed_file_halts_the_run_and_nothing_is_finished(kafka, topic_factory, offsets_topic, tmp_path,
                                                               unique):
    topic = topic_factory("files")
    three_csv_files(tmp_path / "in")
    cfg = source_cfg(tmp_path, unique, topic, input_file_pattern=r".*\.csv", halt_on_error=True,
                     cleanup_policy="move", finished_path=str(tmp_path / "done"))
    with pytest.raises(FileSourceError) as e:
        run_source(cfg, kafka, offsets_topic=offsets_topic)
    msg = str(e.value)
    assert f"file source {cfg.name}: cannot read b.csv" in msg and "Expected 2 columns, got 3" in msg
    assert "halt_on_error is true, so the connector stopped and the file stays in" in msg
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.csv", "b.csv", "c.csv"]
    assert not (tmp_path / "done").exists()
    assert values(kafka, topic) == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 3, "name": "cyd"}]
    stored = OffsetStore(kafka, offsets_topic).read(cfg.name)
    assert {k: (v["record"], v["done"]) for k, v in stored.items()} == {'{"file":"a.csv"}': (3, True)}

    # through the CLI: exit code 1 (a runtime failure, docs/errors.md) and the message on stderr
    path = write_connector(tmp_path / "c", cfg.model_dump(exclude_defaults=True) | {"type": "file_source"})
    proc = run_cli("run", str(path), env={"HEADRACE_OFFSETS_TOPIC": offsets_topic})
    assert proc.returncode == 1 and "cannot read b.csv" in proc.stderr and "halt_on_error is true" in proc.stderr

    # fixed: a.csv is only cleaned up (no duplicates), b.csv and c.csv flow
    (tmp_path / "in" / "b.csv").write_text("id,name\n10,dan\n11,eve\n12,fay\n")
    res = run_source(cfg, kafka, offsets_topic=offsets_topic)
    assert res.rows == 6
    assert [v["id"] for v in values(kafka, topic)] == [1, 2, 3, 10, 11, 12, 4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.csv", "b.csv", "c.csv"]


def write_big_csv(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(f"""COPY (SELECT g AS id, (g % 1000)::INT AS qty, 'name-' || g AS name
                        FROM range({rows}) t(g)) TO '{path}' (HEADER, DELIMITER ',')""")


def test_sigkill_mid_file_resumes_each_row_exactly_once(kafka, topic_factory, offsets_topic, tmp_path, unique):
    rows = 1_000_000
    topic = topic_factory("files-crash")
    write_big_csv(tmp_path / "in" / "big.csv", rows)
    conf = {"name": f"files-crash-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
            "topic": topic, "batch_size": 100_000, "cleanup_policy": "move", "finished_path": str(tmp_path / "done")}
    path = write_connector(tmp_path / "c", conf)
    env = {"HEADRACE_OFFSETS_TOPIC": offsets_topic}

    crashed = run_cli("run", str(path), env={**env, "HEADRACE_FAULT": "file_source_after_batch_3"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert kafka.watermarks(topic)[0][1] == 300_000
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf["name"]).values()
    assert stored["record"] == 300_000 and stored["done"] is False
    assert (tmp_path / "in" / "big.csv").exists() and not (tmp_path / "done").exists()

    out = json.loads(run_cli("run", str(path), env=env, check=True).stdout)
    assert out["rows"] == 700_000
    ids = topic_ids(kafka, topic)
    assert len(ids) == rows
    assert pc.count_distinct(ids).as_py() == rows
    assert pc.min(ids).as_py() == 0 and pc.max(ids).as_py() == rows - 1
    assert ids.to_numpy().tolist()[:3] == [0, 1, 2]
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf["name"]).values()
    assert stored["record"] == rows and stored["done"] is True
    assert (tmp_path / "done" / "big.csv").exists() and not (tmp_path / "in" / "big.csv").exists()


def test_sigkill_between_produce_and_offset_store_is_at_least_once(kafka, topic_factory, offsets_topic, tmp_path,
                                                                   unique):
    """The runner's own fault point: the batch in flight is produced again (no loss, one batch duplicated)."""
    rows = 200_000
    topic = topic_factory("files-crash")
    write_big_csv(tmp_path / "in" / "big.csv", rows)
    conf = {"name": f"files-crash2-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
            "topic": topic, "batch_size": 50_000}
    path = write_connector(tmp_path / "c", conf)
    env = {"HEADRACE_OFFSETS_TOPIC": offsets_topic}
    crashed = run_cli("run", str(path), env={**env, "HEADRACE_FAULT": "source_after_produce"})
    assert crashed.returncode == -signal.SIGKILL
    assert OffsetStore(kafka, offsets_topic).read(conf["name"]) == {}
    out = json.loads(run_cli("run", str(path), env=env, check=True).stdout)
    assert out["rows"] == rows
    ids = topic_ids(kafka, topic)
    assert len(ids) == rows + 50_000 and pc.count_distinct(ids).as_py() == rows
    assert ids.slice(0, 50_000).equals(ids.slice(50_000, 50_000))  # exactly the first batch, twice


def test_jsonl_and_parquet_inputs_with_keys(kafka, topic_factory, offsets_topic, tmp_path, unique):
    topic = topic_factory("files-fmt")
    (tmp_path / "in" / "2024").mkdir(parents=True)
    (tmp_path / "in" / "2024" / "a.jsonl").write_text(
        '{"id": 1, "city": "Zürich", "tags": ["x"]}\n{"id": 2, "city": null, "tags": []}\n')
    pq.write_table(pa.table({"id": [3, 4], "city": ["東京", "Lyon"], "tags": [["y", "z"], None]}),
                   tmp_path / "in" / "b.parquet")
    (tmp_path / "in" / "skip.txt").write_text("not data")
    jcfg = source_cfg(tmp_path, unique, topic, format="jsonl", input_file_pattern=r".*\.jsonl", recursive=True,
                      key_columns=["id"], cleanup_policy="delete")
    assert run_source(jcfg, kafka, offsets_topic=offsets_topic).rows == 2
    pcfg = source_cfg(tmp_path, unique + "p", topic, format="parquet", input_file_pattern=r".*\.parquet",
                      key_columns=["id"], value_schema={"id": "int32", "city": "string"})
    res = run_source(pcfg, kafka, offsets_topic=offsets_topic)
    assert res.rows == 2 and list(res.per_partition) == ['{"file":"b.parquet"}']
    got = [(orjson.loads(k), orjson.loads(v)) for k, v, _p, _o in read_topic(kafka, topic)]
    assert got == [  # one key column: a primitive JSON key
        (1, {"id": 1, "city": "Zürich", "tags": ["x"]}),
        (2, {"id": 2, "city": None, "tags": []}),
        (3, {"id": 3, "city": "東京"}),
        (4, {"id": 4, "city": "Lyon"}),
    ]
    assert not (tmp_path / "in" / "2024" / "a.jsonl").exists()  # delete policy
    assert (tmp_path / "in" / "b.parquet").exists()  # cleanup_policy none
    assert run_source(pcfg, kafka, offsets_topic=offsets_topic).rows == 0  # done offset: not read again


def test_path_escape_is_refused(kafka, tmp_path, unique):
    (tmp_path / "secret.csv").write_text("id\n42\n")
    path = write_connector(tmp_path / "c", {
        "name": f"escape-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
        "topic": f"escape-{unique}", "input_file_pattern": r"\.\./secret\.csv"})
    proc = run_cli("run", str(path))
    assert proc.returncode == 2
    assert "field 'input_file_pattern'" in proc.stderr and "parent or absolute path" in proc.stderr
    path = write_connector(tmp_path / "c", {
        "name": f"escape-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
        "topic": f"escape-{unique}", "cleanup_policy": "move", "finished_path": str(tmp_path / "in" / ".." / "..")})
    proc = run_cli("run", str(path))
    assert proc.returncode == 2 and "field 'finished_path'" in proc.stderr and "'..' segment" in proc.stderr
    assert (tmp_path / "secret.csv").exists()


@pytest.fixture
def s3_bucket() -> Iterator[dict[str, str]]:
    """moto's standalone S3 server on a free local port, with a bucket ``spool``; stopped afterwards."""
    yield from start_moto_s3("spool")


def test_s3_input_with_move(kafka, topic_factory, offsets_topic, unique, s3_bucket):
    topic = topic_factory("files-s3")
    fs = pafs.S3FileSystem(**s3_bucket)
    for name, ids in (("in/x/1.csv", (1, 2)), ("in/x/2.csv", (3,)), ("in/x/notes.md", ())):
        with fs.open_output_stream(f"spool/{name}") as f:
            f.write(("id,v\n" + "".join(f"{i},s3-{i}\n" for i in ids)).encode())
    cfg = FileSourceConfig(name=f"files-s3-{unique}", type="file_source", input_path="s3://spool/in",
                           input_file_pattern=r".*\.csv", recursive=True, topic=topic, cleanup_policy="move",
                           finished_path="s3://spool/done", storage_options=s3_bucket)
    res = run_source(cfg, kafka, offsets_topic=offsets_topic)
    assert res.rows == 3 and sorted(res.per_partition) == ['{"file":"x/1.csv"}', '{"file":"x/2.csv"}']
    assert values(kafka, topic) == [{"id": i, "v": f"s3-{i}"} for i in (1, 2, 3)]
    left = sorted(i.path for i in fs.get_file_info(pafs.FileSelector("spool", recursive=True))
                  if i.type == pafs.FileType.File)
    assert left == ["spool/done/x/1.csv", "spool/done/x/2.csv", "spool/in/x/notes.md"]
    assert run_source(cfg, kafka, offsets_topic=offsets_topic).rows == 0
