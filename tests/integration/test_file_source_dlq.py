"""Malformed CSV lines, per line, against the real broker: dead-lettered under ``errors_tolerance: all``,
a clear stop under ``none``, and exact resume after a SIGKILL (malformed lines filed consistently)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import orjson
import pytest

from integrations.config import FileSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.source_runner import run_source
from integrations.sources.files import FileSourceError
from tests.conftest import run_cli
from tests.helpers import read_messages, write_connector

#: 10 data lines, 2 malformed: line 4 (3 fields) and line 7 (1 field); line 1 is the header.
LINES = ["1,a", "2,b", "3,c,EXTRA", "4,d", "5,e", "6", "7,g", "8,h", "9,i", "10,j"]
GOOD = [1, 2, 4, 5, 7, 8, 9, 10]
BAD = [(b"3,c,EXTRA", 4, 3), (b"6", 7, 1)]  # (bytes, line number, fields)


def write_csv(folder: Path, name: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("id,name\n" + "\n".join(lines) + "\n")


def ids(kafka: KafkaSettings, topic: str) -> list[int]:
    return [orjson.loads(m.value())["id"] for m in read_messages(kafka, topic)]


def dlq_lines(kafka: KafkaSettings, topic: str) -> list[tuple[bytes, str]]:
    """(value, position header) of every dead-lettered record."""
    return [(m.value(), dict(m.headers())["__headrace.errors.position"].decode()) for m in read_messages(kafka, topic)]


def cfg(tmp_path: Path, unique: str, topic: str, **kw) -> FileSourceConfig:
    base = {"name": f"files-dlq-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
            "topic": topic}
    return FileSourceConfig(**{**base, **kw})


@pytest.fixture
def offsets_topic(topic_factory) -> str:
    return topic_factory("offsets", create=False)


def test_all_sends_good_lines_to_the_topic_and_each_malformed_line_to_the_dlq(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    topic, dlq = topic_factory("files"), topic_factory("files-dlq", create=False)
    write_csv(tmp_path / "in", "lines.csv", LINES)
    # nothing good: the line still goes and the file finishes (its empty batch has the header's columns,
    # so a transform naming one still runs)
    write_csv(tmp_path / "in", "only-bad.csv", ["1,x,y"])
    conf = cfg(tmp_path, unique, topic, errors_tolerance="all", dlq_topic=dlq, batch_size=3,
               cleanup_policy="move", finished_path=str(tmp_path / "done"),
               transforms=[{"type": "MaskField.Value", "fields": ["name"]}])
    res = run_source(conf, kafka, offsets_topic=offsets_topic)

    assert ids(kafka, topic) == GOOD
    assert res.rows == 8 and res.dead_lettered == 3 and res.failed == 3
    msgs = read_messages(kafka, dlq)
    assert [m.value() for m in msgs] == [b"3,c,EXTRA", b"6", b"1,x,y"]
    assert [m.key() for m in msgs] == [None, None, None]
    expected = [("lines.csv", 4, 3), ("lines.csv", 7, 1), ("only-bad.csv", 2, 3)]
    for m, (name, line, fields), record in zip(msgs, expected, (3, 6, 0), strict=True):
        h = {k: v.decode() for k, v in m.headers()}
        assert h["__headrace.errors.position"] == f"line {line}"
        assert h["__connect.errors.topic"] == topic
        assert h["__connect.errors.partition"] == json.dumps({"file": name}, separators=(",", ":"))
        assert h["__connect.errors.connector.name"] == conf.name
        assert h["__connect.errors.stage"] == "TASK_POLL"
        assert h["__connect.errors.class.name"] == "FileSource"
        assert h["__connect.errors.exception.class.name"] == "integrations.sources.files_readers.MalformedCsvLine"
        assert h["__connect.errors.exception.message"] == f"{name} line {line}: expected 2 fields, got {fields}"
        assert "MalformedCsvLine" in h["__connect.errors.exception.stacktrace"]
        assert json.loads(h["__connect.errors.offset"])["record"] == record  # the offset stored after it

    # both files count as finished: cleaned up, offsets done, a re-run sends nothing
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["lines.csv", "only-bad.csv"]
    assert list((tmp_path / "in").iterdir()) == []
    stored = OffsetStore(kafka, offsets_topic).read(conf.name)
    assert {k: (v["record"], v["done"]) for k, v in stored.items()} == {
        '{"file":"lines.csv"}': (8, True), '{"file":"only-bad.csv"}': (0, True)}
    again = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert again.rows == 0 and again.dead_lettered == 0
    assert len(read_messages(kafka, dlq)) == 3
    kafka.delete_topics([dlq])


def test_none_with_halt_stops_naming_the_file_and_line(kafka, topic_factory, offsets_topic, tmp_path, unique):
    topic, dlq = topic_factory("files"), topic_factory("files-dlq", create=False)
    write_csv(tmp_path / "in", "lines.csv", LINES)
    conf = cfg(tmp_path, unique, topic, halt_on_error=True, dlq_topic=dlq, cleanup_policy="move",
               finished_path=str(tmp_path / "done"))
    with pytest.raises(FileSourceError) as e:
        run_source(conf, kafka, offsets_topic=offsets_topic)
    msg = str(e.value)
    assert f"file source {conf.name}: cannot read lines.csv: ArrowInvalid: CSV parse error" in msg
    assert "Expected 2 columns, got 3: 3,c,EXTRA (at lines.csv line 4); halt_on_error is true" in msg
    assert kafka.watermarks(topic)[0][1] == 0  # nothing of the file was produced
    assert OffsetStore(kafka, offsets_topic).read(conf.name) == {}
    assert (tmp_path / "in" / "lines.csv").exists() and not (tmp_path / "done").exists()
    assert dlq not in kafka.admin().list_topics(timeout=10).topics


def test_sigkill_after_a_stored_batch_resumes_exactly_once(kafka, topic_factory, offsets_topic, tmp_path, unique):
    """The file source's own fault point fires after batch 2's offset is stored: nothing is repeated.
    An empty line is skipped and not counted: ``line N`` is pyarrow's row number (non-empty lines)."""
    topic, dlq = topic_factory("files"), topic_factory("files-dlq")
    lines = ["1,a", "2,b", "3,c,EXTRA", "4,d", "", "5,e", "6", "7,g", "8,h", "9,i,EXTRA", "10,j"]
    write_csv(tmp_path / "in", "lines.csv", lines)
    conf = {"name": f"files-dlq-crash-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
            "topic": topic, "batch_size": 3, "errors_tolerance": "all", "dlq_topic": dlq}
    path = write_connector(tmp_path / "c", conf)
    env = {"HEADRACE_OFFSETS_TOPIC": offsets_topic}

    crashed = run_cli("run", str(path), env={**env, "HEADRACE_FAULT": "file_source_after_batch_2"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf["name"]).values()
    assert stored["record"] == 6 and stored["done"] is False
    assert ids(kafka, topic) == [1, 2, 4, 5, 7, 8]
    assert dlq_lines(kafka, dlq) == [(b"3,c,EXTRA", "line 4"), (b"6", "line 7")]

    # the resumed run reads from record 6: only the last good row and the last malformed line are new
    out = json.loads(run_cli("run", str(path), env=env, check=True).stdout)
    assert out["rows"] == 1
    assert ids(kafka, topic) == [1, 2, 4, 5, 7, 8, 10]
    assert dlq_lines(kafka, dlq) == [(b"3,c,EXTRA", "line 4"), (b"6", "line 7"), (b"9,i,EXTRA", "line 10")]


def test_sigkill_between_produce_and_offset_store_repeats_one_batch_and_its_lines(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    """The runner's fault point: batch 1 and its malformed line are sent again (at-least-once), no loss."""
    topic, dlq = topic_factory("files"), topic_factory("files-dlq")
    write_csv(tmp_path / "in", "lines.csv", LINES)
    conf = {"name": f"files-dlq-crash2-{unique}", "type": "file_source", "input_path": str(tmp_path / "in"),
            "topic": topic, "batch_size": 3, "errors_tolerance": "all", "dlq_topic": dlq}
    path = write_connector(tmp_path / "c", conf)
    env = {"HEADRACE_OFFSETS_TOPIC": offsets_topic}

    crashed = run_cli("run", str(path), env={**env, "HEADRACE_FAULT": "source_after_produce"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert OffsetStore(kafka, offsets_topic).read(conf["name"]) == {}
    assert ids(kafka, topic) == [1, 2, 4]
    assert dlq_lines(kafka, dlq) == [(b"3,c,EXTRA", "line 4")]

    out = json.loads(run_cli("run", str(path), env=env, check=True).stdout)
    assert out["rows"] == 8
    got = ids(kafka, topic)
    assert got == [1, 2, 4] + GOOD  # exactly the first batch twice
    assert sorted(set(got)) == GOOD and len(got) - len(set(got)) == 3
    assert dlq_lines(kafka, dlq) == [(b"3,c,EXTRA", "line 4"), (b"3,c,EXTRA", "line 4"), (b"6", "line 7")]


def test_batches_cut_by_max_rows_per_run_report_their_lines_later_exactly_once(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    """The runner cuts a batch at ``max_rows_per_run`` and drops its rejects: the stored ``rejects_from``
    makes a later run report them, so each malformed line is dead-lettered exactly once."""
    topic, dlq = topic_factory("files"), topic_factory("files-dlq")
    write_csv(tmp_path / "in", "lines.csv", LINES)
    conf = cfg(tmp_path, unique, topic, errors_tolerance="all", dlq_topic=dlq, batch_size=3, max_rows_per_run=2)
    runs = []
    for _ in range(6):
        res = run_source(conf, kafka, offsets_topic=offsets_topic)
        runs.append((res.rows, res.dead_lettered))
    assert runs == [(2, 0), (2, 0), (2, 0), (2, 2), (0, 0), (0, 0)]
    assert ids(kafka, topic) == GOOD
    assert dlq_lines(kafka, dlq) == [(b"3,c,EXTRA", "line 4"), (b"6", "line 7")]
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf.name).values()
    assert stored["record"] == 8 and stored["done"] is True and "rejects_from" not in stored
