"""``headrace`` on real failures: one line on stderr, no traceback, and the documented exit code.

0 success, 1 a runtime failure, 2 a configuration error, 128 + signal number when a signal stopped
the run (docs/errors.md). Issue 12 items 7, 9, 10 and 13; issue 11 item 6 (CLI side).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from integrations.kafka.cluster import KafkaSettings
from tests.conftest import REPO, free_port, run_cli
from tests.helpers import produce_all, read_topic, write_connector


def _one_line(stderr: str) -> str:
    """The single line an expected failure prints (fails when there are more, or a traceback)."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def _sqlite_table(path: Path, table: str, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute(f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, v TEXT)')
    con.executemany(f'INSERT INTO "{table}" VALUES (?, ?)', [(i, f"v{i}") for i in range(1, rows + 1)])
    con.commit()
    con.close()


def test_config_errors_exit_2_in_one_line(tmp_path, unique):
    path = write_connector(tmp_path, {"name": f"lake-{unique}", "type": "parquet_sink", "topics": ["orders"],
                                      "path": "../../somewhere"})
    for args in (["validate", str(tmp_path)], ["run", str(path)], ["run", f"lake-{unique}", "--dir", str(tmp_path)]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc.stderr)
        assert line.startswith(f"error: {path}: field 'path': '../../somewhere' contains a '..' segment"), line
        assert "relative to $HEADRACE_HOME" in line
    proc = run_cli("run", "no-such-connector", "--dir", str(tmp_path / "empty"))
    assert proc.returncode == 2 and _one_line(proc.stderr).startswith("error: no connector named 'no-such-connector'")
    proc = run_cli("run")  # argparse's usage error: 2 as well
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_run_named_connector_beside_broken_files(kafka, topic_factory, tmp_path, unique):
    offsets = topic_factory("offs")
    db = tmp_path / "s.db"
    _sqlite_table(db, "orders", 3)
    name = f"good-{unique}"
    folder = tmp_path / "connectors"
    write_connector(folder, {"name": name, "type": "sql_source", "connection_url": f"sqlite:///{db}",
                             "mode": "incrementing", "incrementing_column": "id", "tables": ["orders"],
                             "topic_prefix": f"good-{unique}-"})
    topic = f"good-{unique}-orders"
    (folder / "unparsable.yaml").write_text("name: other\ntype: parquet_sink\ntopics: [a\n")
    (folder / "invalid.yaml").write_text("name: invalid\ntype: parquet_sink\ntopics: [a]\npath: ../x\n")
    env = {"HEADRACE_OFFSETS_TOPIC": offsets}
    try:
        proc = run_cli("run", name, "--dir", str(folder), env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows"] == 3
        warnings = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(warnings) == 2, proc.stderr  # one line per broken file
        assert warnings[0].startswith(f"warning: skipped a broken connector file: {folder / 'invalid.yaml'}")
        assert warnings[1].startswith(f"warning: skipped a broken connector file: {folder / 'unparsable.yaml'}")
        assert len(read_topic(kafka, topic)) == 3
        for broken, needle in (("invalid", "invalid.yaml: field 'path'"), ("other", "unparsable.yaml: not valid YAML")):
            proc = run_cli("run", broken, "--dir", str(folder), env=env)  # its own file is broken: still exit 2
            assert proc.returncode == 2, proc.stderr
            assert needle in _one_line(proc.stderr)
        proc = run_cli("validate", str(folder))  # validate still reports every broken file
        assert proc.returncode == 2
        assert "invalid.yaml: field 'path'" in proc.stderr and "unparsable.yaml: not valid YAML" in proc.stderr
    finally:
        kafka.delete_topics([topic])


def test_table_name_that_is_not_a_topic_name_is_read_through_a_regex_router(kafka, topic_factory, pg_url, tmp_path,
                                                                            unique):
    offsets = topic_factory("offs")
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text('CREATE TABLE "order items" (id int PRIMARY KEY, v text)'))
        c.execute(sa.text('INSERT INTO "order items" SELECT g, \'v\' || g FROM generate_series(1, 25) g'))
    eng.dispose()
    topic = f"items-{unique}"
    cfg = {"name": f"spaced-{unique}", "type": "sql_source", "connection_url": pg_url, "mode": "incrementing",
           "incrementing_column": "id", "tables": ["order items"]}
    bare = write_connector(tmp_path / "bare", cfg)
    proc = run_cli("validate", str(bare))  # without a router the topic name is illegal: refused up front
    assert proc.returncode == 2
    assert "table 'order items' makes the topic 'order items', which is not a legal Kafka topic name" in proc.stderr
    routed = write_connector(tmp_path / "routed", cfg | {"transforms": [
        {"type": "RegexRouter", "regex": "order (.*)", "replacement": f"{topic.removesuffix('-' + unique)}-$1"},
        {"type": "RegexRouter", "regex": "items-items", "replacement": topic}]})
    try:
        proc = run_cli("run", str(routed), env={"HEADRACE_OFFSETS_TOPIC": offsets})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["topics"] == {topic: 25}
        ids = sorted(json.loads(v)["id"] for _k, v, _p, _o in read_topic(kafka, topic))
        assert ids == list(range(1, 26))
    finally:
        kafka.delete_topics([topic])


def test_table_include_discovers_a_routed_table_on_sqlite(kafka, topic_factory, tmp_path, unique):
    offsets = topic_factory("offs")
    db = tmp_path / "s.db"
    _sqlite_table(db, "daily sales", 4)
    topic = f"sales-{unique}"
    path = write_connector(tmp_path, {
        "name": f"inc-{unique}", "type": "sql_source", "connection_url": f"sqlite:///{db}", "mode": "bulk",
        "table_include": ["daily .*"], "transforms": [{"type": "RegexRouter", "regex": "daily sales",
                                                       "replacement": topic}]})
    try:
        proc = run_cli("run", str(path), env={"HEADRACE_OFFSETS_TOPIC": offsets})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["topics"] == {topic: 4}
    finally:
        kafka.delete_topics([topic])


def test_database_unreachable_exits_1_naming_the_host_never_the_password(tmp_path, unique):
    port = free_port()
    cfg = {"name": f"pgdown-{unique}", "type": "sql_source", "mode": "bulk", "tables": ["t"],
           "connection_url": f"postgresql://app:hunter2secret@127.0.0.1:{port}/shop",
           "topic_prefix": f"pgdown-{unique}-", "connection_retry_timeout": 0}
    proc = run_cli("run", str(write_connector(tmp_path, cfg)))
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr)
    assert line.startswith(f"error: connector pgdown-{unique}: postgresql database at 127.0.0.1:{port}/shop failed"), line
    assert "Connection refused" in line
    assert "hunter2secret" not in proc.stderr + proc.stdout
    # with a retry budget: one warning per retry, then one error line naming the database
    proc = run_cli("run", str(write_connector(tmp_path, cfg | {"connection_retry_timeout": 8})))
    assert proc.returncode == 1, proc.stderr
    *retries, last = [x for x in proc.stderr.splitlines() if x.strip()]
    assert retries and all(" retry " in r for r in retries), proc.stderr
    assert last.startswith(f"error: connector pgdown-{unique}: "), last
    assert f"postgresql database at 127.0.0.1:{port}/shop" in last
    assert "Traceback" not in proc.stderr and "hunter2secret" not in proc.stderr + proc.stdout


def test_kafka_unreachable_exits_1(tmp_path, unique):
    db = tmp_path / "s.db"
    _sqlite_table(db, "t", 2)
    path = write_connector(tmp_path, {"name": f"nokafka-{unique}", "type": "sql_source", "mode": "bulk",
                                      "tables": ["t"], "connection_url": f"sqlite:///{db}",
                                      "topic_prefix": f"nokafka-{unique}-"})
    port = free_port()
    proc = run_cli("run", str(path), env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                                          "HEADRACE_KAFKA_CONNECT_RETRIES": "1"}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert _one_line(proc.stderr).startswith(f"error: Kafka at 127.0.0.1:{port} is unreachable after 1 attempts")
    proc = run_cli("offsets", "show", f"nokafka-{unique}", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert proc.returncode == 1, proc.stderr
    assert _one_line(proc.stderr).startswith(f"error: Kafka at 127.0.0.1:{port} failed: "), proc.stderr


def test_parquet_write_error_exits_1_in_one_line_naming_the_connector(kafka, topic_factory, tmp_path, unique):
    topic = topic_factory("pq")
    produce_all(kafka, topic, [{"value": json.dumps({"id": i}).encode()} for i in range(5)])
    blocker = tmp_path / "lake"
    blocker.write_text("a file where the dataset folder should be")
    name = f"pqfail-{unique}"
    path = write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic],
                                            "path": str(blocker)})
    proc = run_cli("run", str(path))
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr)
    assert line.startswith(f"error: connector {name}: ") and f"{topic}[0]" in line, line
    assert blocker.read_text().startswith("a file")


def test_sigterm_stops_a_sql_source_at_a_batch_boundary_exit_143(kafka, topic_factory, pg_url, tmp_path, unique):
    """Needs the source runner to call ``stopping.check`` between batches (issue 11 item 3)."""
    offsets = topic_factory("offs")
    rows = 600_000
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE big (id bigint PRIMARY KEY, v text)"))
        c.execute(sa.text(f"INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"))
    eng.dispose()
    topic = f"big-{unique}-big"
    path = write_connector(tmp_path, {"name": f"big-{unique}", "type": "sql_source", "connection_url": pg_url,
                                      "mode": "incrementing", "incrementing_column": "id", "tables": ["big"],
                                      "topic_prefix": f"big-{unique}-", "batch_max_rows": 10_000})
    env = {**os.environ, "HEADRACE_OFFSETS_TOPIC": offsets}
    proc = subprocess.Popen([sys.executable, "-m", "headrace.cli", "run", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sum(hi for _lo, hi in _marks(kafka, topic)) < 20_000:  # running, and well before its end
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the source produced nothing in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
        assert _one_line(err).startswith("stopped: "), err
        produced = sum(hi for _lo, hi in _marks(kafka, topic))
        assert produced < rows  # it stopped early ...
        rerun = run_cli("run", str(path), env={"HEADRACE_OFFSETS_TOPIC": offsets})  # ... and a rerun finishes
        assert rerun.returncode == 0, rerun.stderr
        ids = [json.loads(v)["id"] for _k, v, _p, _o in read_topic(kafka, topic, timeout=120)]
        assert len(set(ids)) == rows and len(ids) == rows  # nothing lost, nothing twice
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kafka.delete_topics([topic])


def _marks(kafka: KafkaSettings, topic: str) -> list[tuple[int, int]]:
    """The topic's (low, high) watermarks per partition; none while it does not exist yet."""
    try:
        return list(kafka.watermarks(topic).values())
    except Exception:  # noqa: BLE001  (not created yet)
        return []


def test_report_failure_classifies_every_kind_of_exception(capsys):
    """The CLI's last resort, on real exception objects: codes, one line, a traceback only for bugs."""
    import pyarrow as pa

    from headrace.cli import report_failure
    from integrations.runtime.stopping import StopRequested

    class Cfg:
        name = "orders-src"
        connection_url = "postgresql://app:hunter2secret@db.internal:5432/shop"

    def run(e: BaseException) -> tuple[int, str]:
        try:
            raise e
        except BaseException as raised:  # noqa: BLE001
            code = report_failure(raised, Cfg())
        return code, capsys.readouterr().err

    code, err = run(StopRequested("connector orders-src: stopped at a batch boundary", signal.SIGINT))
    assert code == 130 and _one_line(err).startswith("stopped: connector orders-src")
    code, err = run(pa.ArrowInvalid("Could not convert 'x' with type str: tried to convert to int64"))
    assert code == 1
    assert _one_line(err) == ("error: connector orders-src: the data could not be converted or written: "
                              "ArrowInvalid: Could not convert 'x' with type str: tried to convert to int64")
    orig = sa.exc.OperationalError("SELECT 1", {}, Exception(
        "connection to postgresql://app:hunter2secret@db.internal:5432/shop failed\nDETAIL: more"))
    code, err = run(orig)
    assert code == 1 and "hunter2secret" not in err
    assert _one_line(err).startswith("error: connector orders-src: postgresql database at db.internal:5432/shop failed")
    code, err = run(ValueError("an unexpected state"))
    assert code == 1 and "Traceback" in err
    assert err.rstrip().splitlines()[-1] == ("error: connector orders-src: this is a bug in Headrace, not a problem "
                                             "with your setup: ValueError: an unexpected state. Please report it "
                                             "with the traceback above.")
