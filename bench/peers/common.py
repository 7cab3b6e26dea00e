"""Shared pieces of the peer cases: running Headrace's CLI and the Python peers, and checking outputs.

Every run returns a ``Run``: the timed process plus what its output holds (rows and the sum of a numeric
column), checked against the case's expected values after the clock stops, so a peer that drops or
duplicates data is reported WRONG rather than fast.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pj
import yaml
from confluent_kafka import TopicPartition

from bench.common import high_watermark
from bench.peers.install import venv_python
from bench.peers.proc import Timed, run_batch
from integrations.kafka.cluster import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
HEADRACE = ROOT / ".venv" / "bin" / "headrace"


@dataclass
class Run:
    """One timed run and its checked output."""

    side: str
    seconds: float
    peak_rss_mb: float
    load_avg: float
    load_max: float
    rows: int | None
    total: int | None
    ok: bool
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def finish(side: str, timed: Timed, got: tuple[int, ...] | None, expected: tuple[int, ...]) -> Run:
    """A ``Run`` from a timed process and its output (``got`` = rows, sum of qty[, non-null names]),
    compared with ``expected``."""
    if timed.returncode != 0:
        tail = [ln for ln in timed.log.strip().splitlines() if ln.strip()][-3:]
        return Run(side, timed.seconds, timed.peak_rss_mb, timed.load_avg, timed.load_max, None, None, False,
                   f"exit {timed.returncode}: {' | '.join(tail)[-400:]}")
    rows, total = (got[0], got[1]) if got else (None, None)
    ok = got is not None and tuple(got) == tuple(expected)
    labels = ("rows", "sum of qty", "non-null names")
    err = "" if ok else "WRONG output: " + ", ".join(
        f"{lab} {g:,} (expected {e:,})" for lab, g, e in zip(labels, got or (), expected, strict=False))
    return Run(side, timed.seconds, timed.peak_rss_mb, timed.load_avg, timed.load_max, rows, total, ok, err)


def headrace(config: dict[str, Any], timeout: float = 1800) -> Timed:
    """Run one connector through ``headrace run <file>`` (a fresh process: start-up and imports timed)."""
    with tempfile.TemporaryDirectory(prefix="headrace-peers-") as d:
        path = Path(d) / f"{config['name']}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return run_batch([str(HEADRACE), "run", str(path)], cwd=str(ROOT), timeout=timeout)


def python_peer(script: str, args: dict[str, Any], timeout: float = 1800) -> Timed:
    """Run ``bench/peers/scripts/<script>`` in the peers' virtualenv with its arguments as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return run_batch([str(venv_python()), str(SCRIPTS / script), json.dumps(args)], env=env,
                     cwd=tempfile.gettempdir(), timeout=timeout)


def unique(prefix: str) -> str:
    """A short unique name."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def topic_stats(topic: str, path: tuple[str, ...] = ("qty",)) -> tuple[int, int]:
    """(messages, sum of the JSON field at ``path``) over a whole one-partition topic; null values count
    as messages without a sum. Read after the run, untimed."""
    high = high_watermark(topic)
    fld: pa.DataType = pa.int64()
    for name in reversed(path[1:]):
        fld = pa.struct([pa.field(name, fld)])
    schema = pa.schema([pa.field(path[0], fld)])
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    c = KafkaSettings.from_env().consumer(group_id=unique("peers-check-"))
    c.assign([TopicPartition(topic, 0, 0)])
    count, total, pos = 0, 0, 0
    try:
        while pos < high:
            msgs = [m for m in c.consume(num_messages=100_000, timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            pos = msgs[-1].offset() + 1
            count += len(msgs)
            vals = [v for m in msgs if (v := m.value()) is not None]
            if not vals:
                continue
            blob = b"\n".join(vals)
            t = pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=len(blob) + 1),
                             parse_options=opts)
            col = t.column(path[0]).combine_chunks()
            for name in path[1:]:
                col = col.field(name)
            total += int(pa.compute.sum(col).as_py() or 0)
    finally:
        c.close()
    return count, total


def parquet_stats(folder: str | Path, column: str = "qty") -> tuple[int, int]:
    """(rows, sum of ``column``) over every Parquet file under ``folder`` (hidden files ignored)."""
    files = [p for p in Path(folder).rglob("*.parquet") if not any(s.startswith((".", "_")) for s in p.parts[-2:])]
    if not files:
        return 0, 0
    t = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[column])
    return t.num_rows, int(pa.compute.sum(t.column(column)).as_py() or 0)


def pg_stats(url: str, table: str) -> tuple[int, int, int]:
    """(rows, sum of qty, non-null names) of a PostgreSQL table."""
    with psycopg.connect(url) as c:
        n, s, names = c.execute(f'SELECT count(*), coalesce(sum(qty), 0), count(name) FROM "{table}"').fetchone()
    return int(n), int(s), int(names)


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)
