"""Issue 14 item 9: long runs show progress.

A source run and a sink run through Dagster log ``headrace.progress`` lines (rows, share of the total,
rate, time left) into the Dagster run log when the instance manages the ``headrace`` loggers, as the
project's dagster.yaml does. The CLI's progress bar (tqdm) is drawn on a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import sqlite3
import struct
import subprocess
import sys
import termios

import dagster as dg

from assets.definitions import build_definitions
from tests.conftest import REPO
from tests.helpers import write_connector

MANAGED = {"python_logs": {"managed_python_loggers": ["headrace"], "python_log_level": "INFO"}}
SINK_LINE = re.compile(r"^sink (?P<name>\S+): (?P<done>[\d,]+)/(?P<total>[\d,]+) records \((?P<pct>\d+)%\), "
                       r"[\d,]+/s, about \S+ left$")
#: "source → <topic>: …", or "source <connector>: …" when the source runner names its producer
SOURCE_LINE = re.compile(r"^source (?:→ )?(?P<what>\S+): (?P<done>[\d,]+) rows, [\d,]+/s$")


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.dagster_event is None]


def test_progress_lines_in_the_dagster_run_log(kafka, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    monkeypatch.setenv("HEADRACE_PROGRESS_INTERVAL", "0")  # every batch reports
    monkeypatch.setenv("HEADRACE_OFFSETS_TOPIC", f"headrace-offsets-test-{unique}")
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 2001)])
    con.commit()
    con.close()
    topic = f"prog{unique}.items"
    kafka.ensure_topic(topic)
    c = tmp_path / "c"
    write_connector(c, {"name": f"src-{unique}", "type": "sql_source", "connection_url": f"sqlite:///{db}",
                        "mode": "incrementing", "incrementing_column": "id", "tables": ["items"],
                        "topic_prefix": f"prog{unique}.", "batch_max_rows": 500})
    write_connector(c, {"name": f"lake-{unique}", "type": "parquet_sink", "topics": [topic], "path": "lake"})
    try:
        defs = build_definitions(c)
        with dg.instance_for_test(overrides=MANAGED) as instance:
            src = defs.resolve_job_def(f"src_{unique}_job").execute_in_process(instance=instance)
            assert src.success
            lines = [SOURCE_LINE.match(m) for m in _messages(instance, src.run_id)]
            done = [int(m["done"].replace(",", "")) for m in lines if m]
            assert done == [500, 1000, 1500, 2000], lines  # one line per batch of batch_max_rows
            sink = defs.resolve_job_def(f"lake_{unique}_job").execute_in_process(instance=instance)
            assert sink.success
            # the sink may have run in the source's run already (a source job that chains its sinks)
            lines = [m for r in (src, sink) for m in _messages(instance, r.run_id) if m.startswith("sink ")]
            matches = [SINK_LINE.match(m) for m in lines]
            assert lines and all(matches), lines
            assert {m["name"] for m in matches} == {f"lake-{unique}"}
            assert {m["total"] for m in matches} == {"2,000"}
            done = [int(m["done"].replace(",", "")) for m in matches]
            assert done == sorted(done) and done[-1] == 2000 and all(d > 0 for d in done)
    finally:
        kafka.delete_topics([topic, f"headrace-offsets-test-{unique}"])


BAR = """
import time
from integrations.runtime import progress
progress.use_bar()
p = progress.Progress("sink demo", total=300, unit="records")
for _ in range(3):
    p.add(100)
    time.sleep(0.05)
p.close()
"""


def test_progress_bar_on_a_terminal():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen([sys.executable, "-c", BAR], cwd=REPO, stdin=follower, stdout=follower,
                            stderr=follower)
    os.close(follower)
    assert proc.wait(30) == 0
    out = os.read(leader, 65536)  # what the bar drew (kept by the terminal after the process ended)
    os.close(leader)
    text = out.decode(errors="replace")
    assert "sink demo" in text and "300/300" in text, text
