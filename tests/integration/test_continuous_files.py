"""Continuous mode for the file (spooling) source through Dagster (issue 14 item 2): CSV files land in
the folder while one long-lived ``<connector>_continuous_job`` run reads them; it is terminated
mid-stream (the run marked CANCELING, as the UI's "Terminate" does) and stops at a batch boundary; a
new run resumes from the stored offsets while files keep arriving. With ``exactly_once`` every record
is in the topic once, read committed. Finished files are deleted while the run goes on (after each
turn), not only when it ends. Real Kafka, real files."""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path

import orjson

from integrations.config import FileSourceConfig
from tests.integration.continuous_helpers import (
    materialized_rows,
    read_records,
    start_continuous_job,
    stop_line,
    tear_down,
    wait_for,
)

PER_FILE = 120  # records per file: 3 batches of 50 (the last one short)


class FileWriter(threading.Thread):
    """Drops one CSV file after another into ``folder`` (written under a hidden name, then renamed: the
    source never sees half a file) until told to stop; ``files`` is how many it wrote."""

    def __init__(self, folder: Path) -> None:
        super().__init__(name="file-writer", daemon=True)
        self.folder = folder
        self.files = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            n = self.files
            ids = range(n * PER_FILE + 1, (n + 1) * PER_FILE + 1)
            tmp = self.folder / f".part-{n:05d}.csv.tmp"
            tmp.write_text("id,v\n" + "".join(f"{i},v{i}\n" for i in ids))
            os.replace(tmp, self.folder / f"part-{n:05d}.csv")
            self.files = n + 1
            time.sleep(0.05)  # pacing only: the assertions count records, never time


def test_continuous_file_source_terminated_mid_stream_resumes_exactly_once(kafka, topic_factory, unique,
                                                                           tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    topic = topic_factory("cfiles", create=False)  # the source creates it
    config = FileSourceConfig(name=f"cfiles-{unique}", type="file_source", input_path=str(folder), topic=topic,
                              batch_size=50, cleanup_policy="delete", exactly_once=True,
                              value_schema={"id": "int64", "v": "string"},
                              continuous={"max_run_seconds": 600, "idle_sleep_seconds": 0.1})
    writer = FileWriter(folder)

    def ids() -> list[int]:
        return [orjson.loads(v)["id"] for _k, v in read_records(kafka, topic)]

    first, second = start_continuous_job(config), None
    try:
        writer.start()
        wait_for("records streaming", lambda: len(ids()) >= 3 * PER_FILE, alive=first.alive)
        result = first.terminate()
        stop_line(result)
        assert len(materialized_rows(first)) > 1 and all(n > 0 for n in materialized_rows(first))
        seen = ids()
        assert len(seen) == len(set(seen))  # nothing twice so far
        stopped_at = writer.files

        second = start_continuous_job(config)  # files keep arriving while it starts and runs
        wait_for("records after the restart", lambda: len(ids()) > len(seen), alive=second.alive)
        wait_for("more files during the second run", lambda: writer.files >= stopped_at + 10)
        writer.halt.set()
        writer.join(60)
        total = writer.files * PER_FILE
        wait_for(f"all {total} records", lambda: len(ids()) >= total, alive=second.alive)
        # cleanup after each turn: every file is gone while the run still goes on
        wait_for("the folder emptied by the running job", lambda: not any(folder.iterdir()), alive=second.alive)
        stop_line(second.terminate())
    finally:
        tear_down(kafka, config.name, writer.halt, first, second)
    got = ids()
    dups = sum(n - 1 for n in collections.Counter(got).values())
    assert (len(got), dups, sorted(set(got))) == (total, 0, list(range(1, total + 1)))
    assert not any(folder.iterdir())
