"""Helpers for the source fencing, exactly-once, stop and retry tests: numbered rows in PostgreSQL,
source runs as real ``headrace run`` processes, and topic reads that count gaps and duplicates under
either isolation level (transactional topics end in control records, so reads stop at EOF events)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from confluent_kafka import Consumer, KafkaException, TopicPartition

from integrations.kafka.cluster import KafkaSettings
from tests.integration.sink_race import process_state

REPO = Path(__file__).resolve().parents[2]
_EOF = -191  # librdkafka's _PARTITION_EOF


def numbered_table(pg_url: str, table: str, rows: int, start: int = 1) -> None:
    """``table(id bigint primary key, v text)`` holding ids ``start .. start + rows - 1``."""
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{table}" (id bigint PRIMARY KEY, v text)'))
        c.execute(sa.text(f"INSERT INTO \"{table}\" SELECT g, repeat('x', 40) || g "
                          f"FROM generate_series({start}, {start + rows - 1}) g"))
    eng.dispose()


def source_file(folder: Path, name: str, pg_url: str, table: str, prefix: str, **extra: Any) -> Path:
    """A SQL source connector file (incrementing on ``id``, keyed by ``id``) for ``headrace run``."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = {"name": name, "type": "sql_source", "connection_url": pg_url, "mode": "incrementing",
            "incrementing_column": "id", "tables": [table], "topic_prefix": prefix, "key_columns": ["id"],
            **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def start_run(path: Path, offsets_topic: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``headrace run <path>`` in a child process (its own session, output captured)."""
    return subprocess.Popen([sys.executable, "-m", "headrace.cli", "run", str(path)], cwd=REPO,
                            env={**os.environ, "HEADRACE_OFFSETS_TOPIC": offsets_topic, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def start_paused_run(path: Path, offsets_topic: str, once: Path, point: str = "source_after_produce",
                     timeout: float = 120) -> subprocess.Popen:
    """``headrace run <path>`` that stops itself (SIGSTOP) at fault point ``point`` of its first batch;
    returned once it is stopped there. ``once`` (a file that must not exist yet) makes later runs pass."""
    proc = start_run(path, offsets_topic, {"HEADRACE_FAULT": point, "HEADRACE_FAULT_ACTION": "pause",
                                           "HEADRACE_FAULT_ONCE": str(once)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it reached {point}: {proc.communicate()}"
        if process_state(proc.pid) == "T" and once.exists():
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run did not stop at {point} within {timeout}s")


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """Wait for a run; (exit code, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def uncommitted_end(kafka: KafkaSettings, topic: str) -> int:
    """Records (and control records) written to ``topic`` so far, committed or not; 0 when it does not exist."""
    parts = kafka.partitions(topic)
    if not parts:
        return 0
    c = Consumer({**kafka.base(), "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_uncommitted"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in parts)
    except KafkaException:
        return 0
    finally:
        c.close()


def wait_for_growth(kafka: KafkaSettings, topic: str, above: int, proc: subprocess.Popen,
                    timeout: float = 120) -> bool:
    """Wait until ``topic`` holds more than ``above`` records (committed or not); False if ``proc`` ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if uncommitted_end(kafka, topic) > above:
            return True
        time.sleep(0.02)
    raise AssertionError(f"nothing new in {topic} within {timeout}s")


def read_ids(kafka: KafkaSettings, topic: str, isolation: str = "read_committed", timeout: float = 120) -> list[int]:
    """The ``id`` of every record of ``topic`` visible under ``isolation``, read to the end of every partition."""
    parts = kafka.partitions(topic)
    c = Consumer({**kafka.base(), "group.id": f"ids-{uuid.uuid4().hex[:8]}", "isolation.level": isolation,
                  "enable.partition.eof": True, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ids: list[int] = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for m in c.consume(num_messages=100_000, timeout=0.5):
                if m.error():
                    if m.error().code() == _EOF:
                        done.add(m.partition())
                    continue
                done.discard(m.partition())
                ids.append(orjson.loads(m.value())["id"])
    finally:
        c.close()
    return ids


def gaps_and_duplicates(ids: list[int], rows: int) -> tuple[int, int]:
    """(ids of 1..rows missing, extra copies) in ``ids``."""
    counts = collections.Counter(ids)
    missing = sum(1 for i in range(1, rows + 1) if i not in counts)
    return missing, sum(n - 1 for n in counts.values() if n > 1)
