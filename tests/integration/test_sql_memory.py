"""Bounded memory: a 5,000,000-row PostgreSQL table streams through the source with peak RSS < 1 GB."""

from __future__ import annotations

import json
import subprocess
import sys

import sqlalchemy as sa

from tests.conftest import REPO

# VmHWM: this process's own peak RSS (ru_maxrss of an exec'd child also counts the parent's peak at the
# fork on Linux: pytest's, grown past 1 GB over the whole suite)
CHILD = r"""
import json, sys
from integrations.config import SqlSourceConfig
from integrations.converters.json import JsonConverter
from integrations.sources.sql import SqlSource
cfg = SqlSourceConfig(name="mem", type="sql_source", connection_url=sys.argv[1], mode=sys.argv[2],
                      tables=["big"], incrementing_column="id", topic_prefix="mem-")
src, conv = SqlSource(cfg), JsonConverter()
rows, last, nbytes = 0, None, 0
for batch in src.poll({"table": "big"}, None):
    rows += batch.num_rows
    nbytes += len(conv.encode(batch.records)[-1])
    last = batch.offset
src.close()
print(json.dumps({"rows": rows, "last": last and last["incrementing"],
                  "peak_mb": int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024}))
"""


def test_five_million_rows_bounded_rss(pg_url: str) -> None:
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE big (id bigint PRIMARY KEY, qty int, amount numeric(12,2), name text, "
                          "created_at timestamptz)"))
        c.execute(sa.text("INSERT INTO big SELECT g, g % 1000, (g % 100000) / 100.0, 'name-' || g || '-é漢', "
                          "timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, 5000000) g"))
    eng.dispose()
    for mode in ("incrementing", "bulk"):
        proc = subprocess.run([sys.executable, "-c", CHILD, pg_url, mode], capture_output=True, text=True,
                              cwd=REPO, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["rows"] == 5_000_000
        if mode == "incrementing":
            assert out["last"] == 5_000_000
        assert out["peak_mb"] < 1024, out
        print(mode, out)
