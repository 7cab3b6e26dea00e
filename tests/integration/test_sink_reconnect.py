"""Reliability matrix row 11 for the table sink: its PostgreSQL session is killed with
pg_terminate_backend in the middle of a run. The run retries on a new session from the offsets
stored in the target, and the final table is exactly the expected one."""

from __future__ import annotations

import threading
import time

import orjson
import psycopg
import sqlalchemy as sa

from integrations.config import TableSinkConfig
from integrations.runtime.sink_runner import run_sink


def _kill_first_writer(pg_url: str, table: str, stop: threading.Event, killed: list[int]) -> None:
    """Terminate the first other session seen running a statement that names ``table``."""
    eng = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            while not stop.is_set() and not killed:
                for pid in c.execute(sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' "
                        "AND query ILIKE :q AND query NOT ILIKE '%pg_stat_activity%'"),
                        {"q": f"%{table}%"}).scalars().all():
                    if c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar():
                        killed.append(pid)
                time.sleep(0.005)
    finally:
        eng.dispose()


def test_table_sink_resumes_after_its_session_is_terminated(pg_url, kafka, topic_factory, unique):
    n, batch = 200_000, 20_000
    topic = topic_factory("tkill")
    table = f"tkill_{unique}"
    p = kafka.producer()
    for i in range(n):
        # every key twice over the run (ids wrap at n/2): an upsert keeps the later value
        k = i % (n // 2)
        p.produce(topic, key=orjson.dumps({"id": k}), value=orjson.dumps({"id": k, "v": f"v{i}", "n": i}))
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    cfg = TableSinkConfig(type="table_sink", name=f"tkill-{unique}", topics=[topic], connection_url=pg_url,
                          auto_create=True, insert_mode="upsert", pk_mode="record_key", pk_fields=["id"],
                          table_name_format=table, batch_size=batch, errors_retry_timeout=60,
                          errors_retry_delay_max=1)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_writer, args=(pg_url, table, stop, killed))
    killer.start()
    try:
        res = run_sink(cfg, kafka)
    finally:
        stop.set()
        killer.join()
    try:
        assert len(killed) == 1, "the sink's session was never seen writing"
        assert res.rows == n  # the rows of the final, successful attempt
        with psycopg.connect(pg_url) as c:
            got = c.execute(f'SELECT id, v, n FROM "{table}" ORDER BY id').fetchall()
        assert got == [(k, f"v{k + n // 2}", k + n // 2) for k in range(n // 2)]
        again = run_sink(cfg, kafka)  # nothing left: the stored offsets are at the end
        assert again.rows == 0
    finally:
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f'DROP TABLE IF EXISTS "{table}"')
