"""Malformed CSV lines, per line, against the real broker: dead-lettered under ``errors_tolerance: all``,
a clear stop under ``none``, and exact resume after a SIGKILL (malformed lines filed consistently)."""

from __future__ import annotations

import datetime as dt
import json
import signal
from decimal import Decimal
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


# -- values that do not convert: per record, not per file --------------------------------------------
START = dt.datetime(2024, 1, 1)
TYPED = {"id": "int64", "amount": "decimal(12,2)", "at": "timestamp[us, tz=UTC]"}
BAD_ROWS = {137: "13x7,137.37,2024-01-01T00:02:17Z",  # a letter in the int64 column
            500: "500,1234567890123.45,2024-01-01T00:08:20Z",  # 15 digits for decimal(12,2)
            862: "862,862.62,2024-02-30T00:14:22Z"}  # no such date


def good_line(i: int) -> str:
    return f"{i},{i}.{i % 100:02d},{START + dt.timedelta(seconds=i):%Y-%m-%dT%H:%M:%SZ}"


def typed_line(i: int) -> str:
    return BAD_ROWS.get(i) or good_line(i)


def expected_row(i: int) -> dict:
    """The JSON value the default converter writes for good row ``i`` (decimals as JSON numbers)."""
    at = START + dt.timedelta(seconds=i)
    return {"id": i, "amount": Decimal(f"{i}.{i % 100:02d}"), "at": f"{at:%Y-%m-%d %H:%M:%S}+00"}


def typed_values(kafka: KafkaSettings, topic: str) -> list[dict]:
    return [json.loads(m.value(), parse_float=Decimal) for m in read_messages(kafka, topic)]


def test_values_that_do_not_convert_are_dead_lettered_row_by_row(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    """1,000 rows with a declared int64 + decimal + timestamp schema, 3 bad values: the topic holds exactly
    the 997 good rows, the DLQ exactly the 3 bad lines, as written, with their line numbers."""
    topic, dlq = topic_factory("files"), topic_factory("files-dlq", create=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("id,amount,at\n" + "\n".join(map(typed_line, range(1000))) + "\n")
    conf = cfg(tmp_path, unique, topic, errors_tolerance="all", dlq_topic=dlq, batch_size=250,
               value_schema=TYPED, cleanup_policy="move", finished_path=str(tmp_path / "done"))
    res = run_source(conf, kafka, offsets_topic=offsets_topic)

    good = [i for i in range(1000) if i not in BAD_ROWS]
    assert res.rows == 997 and res.dead_lettered == 3 and res.failed == 3
    assert typed_values(kafka, topic) == [expected_row(i) for i in good]
    msgs = read_messages(kafka, dlq)
    assert [m.value() for m in msgs] == [BAD_ROWS[i].encode() for i in sorted(BAD_ROWS)]
    details = {137: "column 'id': value '13x7' does not convert to int64 (Failed to parse string: '13x7' as a "
                    "scalar of type int64)",
               500: "column 'amount': value '1234567890123.45' does not convert to decimal128(12, 2) (Decimal "
                    "value does not fit in precision 12)",
               862: "column 'at': value '2024-02-30T00:14:22Z' does not convert to timestamp[us, tz=UTC]"}
    # each line is sent with the batch of the good records around it (250 a batch; 997 in all)
    for m, i, record in zip(msgs, sorted(BAD_ROWS), (250, 500, 997), strict=True):
        h = {k: v.decode() for k, v in m.headers()}
        assert h["__headrace.errors.position"] == f"line {i + 2}"
        assert h["__connect.errors.stage"] == "TASK_POLL" and h["__connect.errors.class.name"] == "FileSource"
        assert h["__connect.errors.exception.class.name"] == "integrations.sources.files_readers.BadRecord"
        assert h["__connect.errors.exception.message"].startswith(f"rows.csv line {i + 2}: {details[i]}")
        assert h["__connect.errors.partition"] == '{"file":"rows.csv"}'
        assert json.loads(h["__connect.errors.offset"])["record"] == record

    (stored,) = OffsetStore(kafka, offsets_topic).read(conf.name).values()
    assert stored["record"] == 997 and stored["done"] is True
    assert [p.name for p in (tmp_path / "done").iterdir()] == ["rows.csv"]
    again = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert again.rows == 0 and again.dead_lettered == 0 and len(read_messages(kafka, dlq)) == 3
    kafka.delete_topics([dlq])


def test_none_stops_at_the_bad_value_with_the_rows_before_it_then_the_fixed_file_resumes(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    topic = topic_factory("files")
    bad = {i: BAD_ROWS[i] for i in (500, 862)}
    lines = [bad.get(i) or good_line(i) for i in range(1000)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("id,amount,at\n" + "\n".join(lines) + "\n")
    conf = cfg(tmp_path, unique, topic, batch_size=300, value_schema=TYPED, cleanup_policy="move",
               finished_path=str(tmp_path / "done"))
    with pytest.raises(FileSourceError) as e:
        run_source(conf, kafka, offsets_topic=offsets_topic)
    assert str(e.value).startswith(
        f"file source {conf.name}: bad record in rows.csv line 502: column 'amount': value '1234567890123.45' does "
        "not convert to decimal128(12, 2) (Decimal value does not fit in precision 12); the records before it are "
        "delivered (offset record 500); halt_on_error is true, so the connector stopped")
    assert typed_values(kafka, topic) == [expected_row(i) for i in range(500)]
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf.name).values()
    assert stored["record"] == 500 and stored["done"] is False and stored["stopped"]["line"] == 502

    # run again unchanged: the same stop, nothing sent twice
    with pytest.raises(FileSourceError, match="rows.csv line 502"):
        run_source(conf, kafka, offsets_topic=offsets_topic)
    assert kafka.watermarks(topic)[0][1] == 500

    # fix line 502 in place: the file resumes after the 500 rows already sent and stops at the next bad one
    lines[500] = good_line(500)
    (tmp_path / "in" / "rows.csv").write_text("id,amount,at\n" + "\n".join(lines) + "\n")
    with pytest.raises(FileSourceError, match=r"bad record in rows\.csv line 864: column 'at'"):
        run_source(conf, kafka, offsets_topic=offsets_topic)
    lines[862] = good_line(862)
    (tmp_path / "in" / "rows.csv").write_text("id,amount,at\n" + "\n".join(lines) + "\n")
    res = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert res.rows == 138
    assert typed_values(kafka, topic) == [expected_row(i) for i in range(1000)]  # each row exactly once
    assert [p.name for p in (tmp_path / "done").iterdir()] == ["rows.csv"]


def test_halt_false_moves_the_file_to_error_path_and_the_fixed_file_moved_back_resumes(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    """Kafka Connect's SpoolDir with halt.on.error false: the bad file goes to error.path, the others flow;
    put back fixed, it resumes at its stored record (here: only if the lines before the bad one are
    unchanged)."""
    topic = topic_factory("files")
    (tmp_path / "in").mkdir()
    a = [good_line(i) for i in range(10)]
    a[5] = "5,5.05,yesterday"
    (tmp_path / "in" / "a.csv").write_text("id,amount,at\n" + "\n".join(a) + "\n")
    (tmp_path / "in" / "b.csv").write_text("id,amount,at\n" + "\n".join(good_line(i) for i in range(10, 13)) + "\n")
    conf = cfg(tmp_path, unique, topic, value_schema=TYPED, halt_on_error=False, error_path=str(tmp_path / "err"))
    res = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert res.rows == 8 and [v["id"] for v in typed_values(kafka, topic)] == [0, 1, 2, 3, 4, 10, 11, 12]
    assert [p.name for p in (tmp_path / "err").iterdir()] == ["a.csv"]

    a[5] = good_line(5)
    (tmp_path / "err" / "a.csv").write_text("id,amount,at\n" + "\n".join(a) + "\n")
    (tmp_path / "err" / "a.csv").rename(tmp_path / "in" / "a.csv")
    res = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert res.rows == 5
    assert typed_values(kafka, topic) == [expected_row(i) for i in [0, 1, 2, 3, 4, 10, 11, 12, 5, 6, 7, 8, 9]]


def test_bad_values_in_later_blocks_of_a_large_file_keep_record_numbers_through_a_kill(
        kafka, topic_factory, offsets_topic, tmp_path, unique):
    """~2.9 MB (three 1 MiB blocks), inferred schema, a bad value in block 2 and one in block 3; SIGKILL
    after the third batch's offset is stored, then resume: every good row and every bad line exactly once."""
    topic, dlq = topic_factory("files"), topic_factory("files-dlq")
    n = 120_000
    bad = {50_000: "5000x,0.00,name-50000", 100_000: "100000,zero,name-100000"}
    folder = tmp_path / "in"
    folder.mkdir()
    text = "id,amount,name\n" + "".join(bad.get(i, f"{i},{i % 1000}.{i % 100:02d},name-{i}") + "\n" for i in range(n))
    (folder / "big.csv").write_text(text)
    per_block = text[:1 << 20].count("\n")  # rows per 1 MiB block (about 44,000)
    assert per_block < 50_000 < 2 * per_block - 1000 and 2 * per_block + 1000 < 100_000 < 3 * per_block
    conf = {"name": f"files-big-{unique}", "type": "file_source", "input_path": str(folder), "topic": topic,
            "batch_size": 20_000, "errors_tolerance": "all", "dlq_topic": dlq}
    path = write_connector(tmp_path / "c", conf)
    env = {"HEADRACE_OFFSETS_TOPIC": offsets_topic}

    crashed = run_cli("run", str(path), env={**env, "HEADRACE_FAULT": "file_source_after_batch_3"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf["name"]).values()
    assert stored["record"] == 60_000 and stored["done"] is False
    assert dlq_lines(kafka, dlq) == [(b"5000x,0.00,name-50000", "line 50002")]

    out = json.loads(run_cli("run", str(path), env=env, check=True).stdout)
    assert out["rows"] == n - 2 - 60_000
    got = ids(kafka, topic)
    assert got == [i for i in range(n) if i not in bad]  # each good row once, in order
    assert dlq_lines(kafka, dlq) == [(b"5000x,0.00,name-50000", "line 50002"),
                                     (b"100000,zero,name-100000", "line 100002")]
    (stored,) = OffsetStore(kafka, offsets_topic).read(conf["name"]).values()
    assert stored["record"] == n - 2 and stored["done"] is True


def test_json_lines_that_do_not_parse_are_dead_lettered(kafka, topic_factory, offsets_topic, tmp_path, unique):
    topic, dlq = topic_factory("files"), topic_factory("files-dlq")
    lines = ['{"id": 1, "v": "a"}', '{"id": "two", "v": "b"}', '{"id": 3, "v": "c"', '{"id": 4, "v": "d"}']
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    conf = cfg(tmp_path, unique, topic, format="jsonl", errors_tolerance="all", dlq_topic=dlq,
               value_schema={"id": "int64", "v": "string"})
    res = run_source(conf, kafka, offsets_topic=offsets_topic)
    assert res.rows == 2 and res.dead_lettered == 2
    assert ids(kafka, topic) == [1, 4]
    msgs = read_messages(kafka, dlq)
    assert [(m.value(), dict(m.headers())["__headrace.errors.position"]) for m in msgs] == [
        (lines[1].encode(), b"line 2"), (lines[2].encode(), b"line 3")]
    assert dict(msgs[1].headers())["__connect.errors.exception.message"].decode().startswith(
        "a.jsonl line 3: JSON parse error: ")
