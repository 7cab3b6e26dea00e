"""The chaos suite's harness: numbered records, connector runs as real processes, counts per stage.

Every scenario moves uniquely numbered records (ids ``1..n``) and counts, per stage (source table →
topic → Parquet dataset / table), how many ids are missing and how many extra copies exist. The
connectors run as a user runs them: a YAML file and ``headrace run <file>`` in a child process, which
the scenario kills (SIGKILL), stops (SIGTERM), pauses (SIGSTOP/SIGCONT) or races against another run.

The scale comes from ``HEADRACE_CHAOS``: ``full`` (``make chaos``) follows issue 11's numbers (2M rows,
4 kills); anything else is the short variant that runs inside ``make test``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pj
import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec

from integrations.kafka.cluster import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
FULL = os.environ.get("HEADRACE_CHAOS", "short") == "full"
_EOF = -191  # librdkafka's _PARTITION_EOF


@dataclass(frozen=True)
class Scale:
    """How big a scenario is: rows, batch sizes, kills, and the spread of the random kill moments."""

    rows: int
    batch: int  # the source's batch_max_rows, the Parquet sink's flush_size, the table sink's batch_size
    kills: int
    small: int  # rows of the scenarios that only need a few batches (races, pauses, stops)


SCALE = (Scale(rows=2_000_000, batch=100_000, kills=4, small=400_000) if FULL
         else Scale(rows=60_000, batch=6_000, kills=2, small=30_000))


def pending(fix: str) -> pytest.MarkDecorator:
    """Mark a scenario whose fix has not landed on main yet (non-strict xfail: it reports XPASS once it
    holds; remove the mark then)."""
    return pytest.mark.xfail(reason=f"waiting for {fix}", strict=False)


# --------------------------------------------------------------------------------------------- counts
@dataclass
class Tally:
    """Missing ids and extra copies of ids ``1..expected`` in what one stage holds."""

    stage: str
    expected: int
    seen: int
    missing: int
    duplicates: int
    stray: int = 0  # ids outside 1..expected (never legitimate)
    stale: int = 0  # upsert tables: rows whose value is not the key's latest record
    note: str = ""


def tally(stage: str, ids: np.ndarray, expected: int) -> Tally:
    """Count missing ids and duplicates of ``1..expected`` in ``ids`` (vectorised, no Python loop per id)."""
    ids = np.asarray(ids, dtype=np.int64)
    ok = (ids >= 1) & (ids <= expected)
    counts = np.bincount(ids[ok], minlength=expected + 1)[1:]
    present = int(np.count_nonzero(counts))
    return Tally(stage, expected, int(ids.size), missing=expected - present,
                 duplicates=int(ok.sum()) - present, stray=int((~ok).sum()))


def _ids_from_json(values: list[bytes], column: str = "id") -> np.ndarray:
    if not values:
        return np.empty(0, dtype=np.int64)
    table = pj.read_json(io.BytesIO(b"\n".join(values)),
                         parse_options=pj.ParseOptions(explicit_schema=pa.schema([(column, pa.int64())]),
                                                       unexpected_field_behavior="ignore"))
    return table.column(column).to_numpy()


def topic_ids(kafka: KafkaSettings, topic: str, committed: bool = True, column: str = "id",
              timeout: float = 300) -> np.ndarray:
    """The ``column`` of every JSON value in ``topic``, read to the end of every partition.

    ``committed``: read_committed (what a downstream consumer sees; aborted and open transactions
    hidden), else read_uncommitted (every record written, aborted ones included)."""
    parts = kafka.partitions(topic)
    if not parts:
        return np.empty(0, dtype=np.int64)
    c: Consumer = kafka.consumer(group_id=f"chaos-count-{uuid.uuid4().hex[:8]}", **{
        "isolation.level": "read_committed" if committed else "read_uncommitted", "enable.partition.eof": True})
    chunks: list[np.ndarray] = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}")
            msgs = c.consume(num_messages=200_000, timeout=0.5)
            values = [m.value() for m in msgs if m.error() is None]
            done.update(m.partition() for m in msgs if m.error() is not None and m.error().code() == _EOF)
            chunks.append(_ids_from_json(values, column))
    finally:
        c.close()
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)


def parquet_files(folder: Path) -> list[Path]:
    """Published Parquet files under ``folder``: hidden staging/temporary files and folders excluded."""
    return sorted(p for p in folder.rglob("*.parquet")
                  if not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def temp_files(folder: Path) -> list[Path]:
    """Leftover temporary files (``.*.tmp``) of killed Parquet runs."""
    return sorted(folder.rglob("*.tmp"))


def parquet_ids(folder: Path, column: str = "id") -> np.ndarray:
    """The ``column`` of every published Parquet file under ``folder`` (pyarrow.dataset)."""
    files = parquet_files(folder)
    if not files:
        return np.empty(0, dtype=np.int64)
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[column])
    return table.column(column).to_numpy()


def table_tally(engine: sa.Engine, table: str, expected: int, stage: str | None = None,
                latest: str | None = None) -> Tally:
    """Missing ids and duplicates of ``1..expected`` in a database table's ``id`` column (one SQL query).

    ``latest`` (upserts): a SQL expression of ``id``, the ``n`` of the key's latest record; rows holding
    another ``n`` are counted as stale."""
    stale_sql = f"count(*) FILTER (WHERE n IS DISTINCT FROM {latest})" if latest else "0"
    with engine.connect() as c:
        seen, distinct, stray, stale = c.execute(sa.text(
            f'SELECT count(*), count(DISTINCT id) FILTER (WHERE id BETWEEN 1 AND :n), '
            f'count(*) FILTER (WHERE id NOT BETWEEN 1 AND :n OR id IS NULL), {stale_sql} FROM "{table}"'),
            {"n": expected}).one()
    return Tally(stage or "table", expected, seen, missing=expected - distinct,
                 duplicates=seen - stray - distinct, stray=stray, stale=stale,
                 note=f"stale {stale}" if latest else "")


# --------------------------------------------------------------------------------------------- data
def seed_table(engine: sa.Engine, table: str, rows: int, start: int = 1) -> None:
    """Create (if needed) ``table(id bigint primary key, v text)`` and add ids ``start..start+rows-1``."""
    with engine.begin() as c:
        c.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{table}" (id bigint PRIMARY KEY, v text NOT NULL)'))
        c.execute(sa.text(f"INSERT INTO \"{table}\" SELECT g, 'row ' || g FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g"),
                  {"a": start, "b": start + rows - 1})


def produce_numbered(kafka: KafkaSettings, topic: str, ids: Iterable[int], partitions: int = 3,
                     keys: int | None = None, timestamp: Callable[[int], int] | None = None) -> None:
    """Produce one JSON record per id, round-robin over partitions, checking every delivery.

    With ``keys`` (upsert data), record ``i`` has key and ``id`` ``(i - 1) % keys + 1`` and ``n = i``:
    every key appears several times, always in the same partition (Kafka orders records per
    partition only), and the latest record of key ``k`` has the largest ``n``. With
    ``timestamp``, record ``i`` gets that Kafka timestamp (epoch ms)."""
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    p = kafka.producer(on_delivery=report)
    for i in ids:
        kw: dict[str, Any] = {"partition": i % partitions}
        if keys:
            k = (i - 1) % keys + 1
            kw["partition"] = k % partitions  # one partition per key, as a keyed producer does: order per key
            kw["key"] = b'{"id":%d}' % k
            kw["value"] = b'{"id":%d,"n":%d,"v":"row %d"}' % (k, i, i)
        else:
            kw["value"] = b'{"id":%d,"v":"row %d"}' % (i, i)
        if timestamp is not None:
            kw["timestamp"] = timestamp(i)
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        if i & 0x3FFF == 0:
            p.poll(0)
    assert p.flush(120) == 0, f"records not delivered to {topic}"
    assert not failed, f"records were not delivered to {topic}: {failed[:3]}"


def write_connector(folder: Path, config: dict[str, Any]) -> Path:
    """Write one connector YAML file (named after the connector) as a user would."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------- runs
class Run:
    """One ``headrace run <file.yaml>`` child process (its own session), with its output in files."""

    def __init__(self, cfg: Path, env: dict[str, str], label: str, args: list[str] | None = None) -> None:
        self.label = label
        folder = cfg.parent / "logs"
        folder.mkdir(exist_ok=True)
        tag = f"{label}-{uuid.uuid4().hex[:6]}"
        self.out_path, self.err_path = folder / f"{tag}.out", folder / f"{tag}.err"
        self.signals: list[str] = []
        cmd = args or [sys.executable, "-m", "headrace.cli", "run", str(cfg)]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **env}, cwd=REPO,
                                         start_new_session=True)

    def send(self, sig: signal.Signals) -> bool:
        """Send ``sig`` if the process is still running; True when it was sent."""
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, sig)
        self.signals.append(sig.name)
        return True

    def wait(self, timeout: float = 600) -> int:
        """Wait for the exit code (negative: killed by that signal)."""
        return self.proc.wait(timeout)

    @property
    def code(self) -> int | None:
        return self.proc.poll()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def result(self) -> dict[str, Any]:
        """The JSON line a successful run prints."""
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def error_lines(self) -> list[str]:
        """Lines of stderr other than log records (WARNING/INFO/DEBUG) and blank lines."""
        return [ln for ln in self.stderr.splitlines()
                if ln.strip() and not ln.startswith(("WARNING ", "INFO ", "DEBUG "))]

    def stop(self) -> None:
        """Make sure the process is gone (SIGCONT first, in case it is paused; then SIGKILL)."""
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(self.proc.pid, sig)
                except ProcessLookupError:
                    break
            self.proc.wait(30)

    def describe(self) -> str:
        return f"{self.label}: exit {self.code}, signals {self.signals}, stderr: {self.stderr.strip()[-600:]!r}"


def one_line_failure(run: Run, code: int | None = None) -> None:
    """Assert that ``run`` failed (exit ``code`` if given, else any non-zero, not a signal) with one line."""
    assert run.code is not None and run.code > 0, f"expected a failure: {run.describe()}"
    if code is not None:
        assert run.code == code, f"expected exit {code}: {run.describe()}"
    lines = run.error_lines()
    assert "Traceback" not in run.stderr and len(lines) == 1, f"expected one line on stderr: {run.describe()}"


def wait_for(cond: Callable[[], bool], timeout: float, what: str, while_alive: Run | None = None) -> bool:
    """Poll ``cond`` every 50 ms; False when ``while_alive`` exited first; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if while_alive is not None and while_alive.code is not None:
            return cond()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
    return True


@dataclass
class Chaos:
    """One scenario's world: Kafka, a temp folder for YAML and output, the child-process environment,
    and everything to clean up. Collects the tallies and prints them as a table."""

    name: str
    kafka: KafkaSettings
    folder: Path
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    tallies: list[Tally] = field(default_factory=list)
    kills: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(os.environ.get("HEADRACE_CHAOS_SEED")))

    def connector(self, config: dict[str, Any]) -> Path:
        """Write a connector's YAML file; a sink's consumer group is deleted afterwards."""
        if config["type"].endswith("_sink"):
            self.groups.append(config.get("group_id") or f"headrace-{config['name']}")
        return write_connector(self.folder / "connectors", config)

    def topic(self, name: str, partitions: int = 3) -> str:
        """Create ``name`` with ``partitions`` (topics are never created by accident) and delete it afterwards."""
        self.kafka.ensure_topic(name, partitions=partitions)
        self.topics.append(name)
        return name

    def start(self, cfg: Path, label: str, env: dict[str, str] | None = None, args: list[str] | None = None) -> Run:
        run = Run(cfg, {**self.env, **(env or {})}, label, args)
        self.runs.append(run)
        return run

    def run(self, cfg: Path, label: str, timeout: float = 600, env: dict[str, str] | None = None) -> Run:
        """Run to the end and return the finished run."""
        r = self.start(cfg, label, env)
        r.wait(timeout)
        return r

    def kill_during(self, cfg: Path, progress: Callable[[], int], total: int, kills: int, label: str,
                    timeout: float = 900, sig: tuple[tuple[signal.Signals, ...], ...] = ((signal.SIGKILL,),)
                    ) -> list[Run]:
        """``kills`` times: start a run, wait for its first output (``progress()`` grows past its value at
        start), then send it signals at a random point of the work left: ``sig[k]`` (the last one for
        later kills), several of them 0.2 s apart. Then run until one run exits 0. ``Chaos.kills`` counts
        the runs the signals reached.

        ``progress`` counts output (records, rows, files) towards ``total``. Kill ``k`` lands where
        ``progress()`` first reaches a target drawn uniformly from the next ``1/(kills - k)`` of what is
        left, plus a random pause of up to 0.1 s, so every kill interrupts real work, at a random
        record, batch phase and moment."""
        done: list[Run] = []
        for k in range(kills):
            before = progress()
            r = self.start(cfg, f"{label}-kill{k + 1}")
            done.append(r)
            if not wait_for(lambda b=before: progress() > b, timeout, f"{label}'s first output", while_alive=r):
                break  # the run ended before writing anything new: nothing left to interrupt
            first = progress()
            # at most 80% of the way to the end: a signal that lands after the last batch interrupts nothing
            # (the run exits 0, or is killed by the default action while Python shuts down)
            target = first + self.rng.uniform(0, 0.8 * max(total - first, 0) / (kills - k))
            wait_for(lambda t=target: progress() >= t, timeout, f"{label} reaching {target:.0f}", while_alive=r)
            # output grows in steps (a whole produce request, a file, a transaction): a random pause moves
            # the kill off the step, anywhere in the next batch's phases
            time.sleep(self.rng.uniform(0, 0.1))
            signals = sig[min(k, len(sig) - 1)]
            if r.send(signals[0]):
                self.kills += 1
            for more in signals[1:]:
                time.sleep(0.2)
                r.send(more)
            r.wait(60)
            if r.code == 0:
                break  # it finished before the kill landed
        for attempt in range(3):
            r = self.run(cfg, f"{label}-final{attempt + 1}", timeout)
            done.append(r)
            if r.code == 0:
                return done
        raise AssertionError(f"{label}: no run completed: " + "\n".join(x.describe() for x in done))

    def record(self, *tallies: Tally) -> None:
        self.tallies.extend(tallies)

    def summary(self) -> str:
        head = f"{'scenario':<52} {'stage':<26} {'records':>9} {'seen':>9} {'kills':>5} {'missing':>8} {'dups':>8}"
        lines = [head, "-" * len(head)]
        for t in self.tallies:
            lines.append(f"{self.name:<52} {t.stage:<26} {t.expected:>9} {t.seen:>9} {self.kills:>5} "
                         f"{t.missing:>8} {t.duplicates:>8}" + (f"  stray {t.stray}" if t.stray else "")
                         + (f"  {t.note}" if t.note else ""))
        return "\n".join(lines)

    def report(self) -> None:
        """Print the summary table and append it to ``$HEADRACE_CHAOS_REPORT`` (JSON lines) when set."""
        print(f"\n[{'full' if FULL else 'short'}] {self.name}\n{self.summary()}", flush=True)
        out = os.environ.get("HEADRACE_CHAOS_REPORT")
        if out:
            with open(out, "a") as f:
                for t in self.tallies:
                    f.write(json.dumps({"scenario": self.name, "scale": "full" if FULL else "short",
                                        "kills": self.kills, **t.__dict__}) + "\n")

    def cleanup(self) -> None:
        for r in self.runs:
            r.stop()
        if self.topics:
            self.kafka.delete_topics(self.topics)
        if self.groups:
            admin = self.kafka.admin()
            for fut in admin.delete_consumer_groups(self.groups, request_timeout=10).values():
                with contextlib.suppress(Exception):  # a group that never committed does not exist
                    fut.result(timeout=10)


def partition_total(kafka: KafkaSettings, topic: str) -> int:
    """Records written to ``topic`` so far, open transactions included (sum of the high watermarks, as a
    read_uncommitted reader sees them; 0 if missing). A kill keyed to it lands anywhere inside an
    ``exactly_once`` source's transaction, not only right after a commit."""
    try:
        parts = kafka.partitions(topic)
        if not parts:
            return 0
        futures = kafka.admin().list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in parts},
                                             isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=10)
        return sum(f.result(timeout=15).offset for f in futures.values())
    except Exception:  # noqa: BLE001 - a probe while the topic is being created, or a broker restarting
        return 0


def table_rows(engine: sa.Engine, table: str, keys: int | None = None) -> int:
    """Records applied to ``table`` so far (0 while it does not exist): its rows; for upsert data
    (``keys``, see ``produce_numbered``) the rows plus those already updated by a later record."""
    with engine.connect() as c:
        if c.execute(sa.text("SELECT to_regclass(:t)"), {"t": f'"{table}"'}).scalar() is None:
            return 0
        extra = f" + count(*) FILTER (WHERE n > {keys})" if keys else ""
        return int(c.execute(sa.text(f'SELECT count(*){extra} FROM "{table}"')).scalar())
