"""Clean stops of sources: SIGTERM (twice), SIGINT and Dagster's run termination end a source run at a
batch boundary with the offset of exactly what Kafka acknowledged stored; a rerun completes with zero
duplicates and zero gaps. Real PostgreSQL, real broker, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import dagster as dg
import orjson
import pytest

from assets.factory import source_defs
from integrations.config import FileSourceConfig, SqlSourceConfig
from integrations.offsets import DEFAULT_TOPIC, OffsetStore
from integrations.runtime import stopping
from integrations.runtime.source_runner import run_source
from resources.kafka import KafkaResource
from tests.integration.source_helpers import (
    REPO,
    finish,
    gaps_and_duplicates,
    numbered_table,
    read_ids,
    source_file,
    start_run,
    uncommitted_end,
    wait_for_growth,
)


def _stored(kafka, offsets: str, name: str, table: str) -> int:
    return OffsetStore(kafka, offsets).read(name)[orjson.dumps({"table": table}).decode()]["incrementing"]


def _assert_prefix(ids: list[int], upto: int) -> None:
    """The topic holds exactly ids 1..upto once each: the stored offset is what Kafka acknowledged."""
    assert upto > 0 and gaps_and_duplicates(ids, upto) == (0, 0) and len(ids) == upto, (len(ids), upto)


@pytest.mark.parametrize(("signals", "code"), [((signal.SIGTERM, signal.SIGTERM), 143), ((signal.SIGINT,), 130)])
def test_signals_stop_a_sql_source_at_a_batch_boundary(pg_url, kafka, topic_factory, unique, tmp_path, signals, code):
    rows, batch = 400_000, 10_000
    table, name = f"stop_{unique}", f"stop-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("stop", create=False), topic_factory("stop-offs", create=False)
    topic = prefix + table
    path = source_file(tmp_path, name, pg_url, table, prefix, batch_max_rows=batch)
    proc = start_run(path, offsets)
    assert wait_for_growth(kafka, topic, 0, proc), "the run ended before it could be stopped"
    for s in signals:
        os.killpg(proc.pid, s)
        time.sleep(0.05)
    got, _out, err = finish(proc)
    assert got == code, err
    assert err.startswith("stopped:") and "batch boundary" in err and len(err.strip().splitlines()) == 1, err
    upto = _stored(kafka, offsets, name, table)
    assert upto < rows, "the run finished before the stop reached it"
    _assert_prefix(read_ids(kafka, topic), upto)
    got, _out, err = finish(start_run(path, offsets))
    assert got == 0, err
    assert gaps_and_duplicates(read_ids(kafka, topic), rows) == (0, 0)


def test_sigterm_stops_a_file_source_between_batches(kafka, topic_factory, unique, tmp_path):
    rows, batch = 300_000, 5_000
    folder = tmp_path / "in"
    folder.mkdir()
    for f in range(3):
        lines = "\n".join(str(i) for i in range(f * rows // 3 + 1, (f + 1) * rows // 3 + 1))
        (folder / f"part{f}.csv").write_text("id\n" + lines + "\n")
    topic, offsets = topic_factory("fstop", create=False), topic_factory("fstop-offs", create=False)
    cfg = FileSourceConfig(name=f"fstop-{unique}", type="file_source", input_path=str(folder), topic=topic,
                           batch_size=batch, cleanup_policy="delete")
    path = tmp_path / "c.yaml"
    path.write_text(orjson.dumps(cfg.model_dump(exclude_defaults=True) | {"type": "file_source"}).decode())
    proc = start_run(path, offsets)
    assert wait_for_growth(kafka, topic, 0, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    got, _out, err = finish(proc)
    assert got == 143 and err.startswith("stopped:"), err
    stored = OffsetStore(kafka, offsets).read(cfg.name)
    done = sum(v["record"] for v in stored.values())
    assert 0 < done < rows
    ids = read_ids(kafka, topic)
    assert len(ids) == done and len(set(ids)) == done  # exactly what the stored offsets say, once
    got, _out, err = finish(start_run(path, offsets))
    assert got == 0, err
    assert gaps_and_duplicates(read_ids(kafka, topic), rows) == (0, 0)
    assert list(folder.iterdir()) == []  # every file finished and deleted


def _defs(cfg: SqlSourceConfig) -> dg.Definitions:
    return dg.Definitions(assets=source_defs(cfg).assets, resources={"kafka": KafkaResource()})


def test_dagster_run_termination_stops_the_source_op_at_a_batch_boundary(pg_url, kafka, topic_factory, unique):
    """The run marked CANCELING (what every launcher's terminate does first) reaches the op's watcher
    (it looks every 2 s: enough rows that the run lasts longer)."""
    rows, batch = 1_000_000, 10_000
    table, name = f"dstop_{unique}", f"dstop-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("dstop", create=False), DEFAULT_TOPIC  # the op uses the default offsets topic
    topic = prefix + table
    cfg = SqlSourceConfig(name=name, type="sql_source", connection_url=pg_url, mode="incrementing",
                          incrementing_column="id", tables=[table], topic_prefix=prefix, batch_max_rows=batch)
    defs = _defs(cfg)
    instance = dg.DagsterInstance.ephemeral()
    outcome: list[dg.ExecuteInProcessResult] = []

    def materialize() -> None:  # off the main thread: only the status watcher can tell the op
        outcome.append(dg.materialize(defs.assets, resources={"kafka": KafkaResource()}, instance=instance,
                                      raise_on_error=False))

    worker = threading.Thread(target=materialize)
    worker.start()
    deadline = time.monotonic() + 120
    while not uncommitted_end(kafka, topic):
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.05)
    (run,) = instance.get_runs()
    instance.report_run_canceling(run)
    worker.join(120)
    stopping.reset()
    assert not outcome[0].success
    failures = [e for e in outcome[0].all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1  # no retry of a terminated step
    assert "stopped at a batch boundary" in failures[0].event_specific_data.user_failure_data.description
    upto = _stored(kafka, offsets, name, table)
    assert upto < rows
    _assert_prefix(read_ids(kafka, topic), upto)
    stopping.reset()
    run_source(cfg, kafka, offsets)
    assert gaps_and_duplicates(read_ids(kafka, topic), rows) == (0, 0)


_SIGNALLED_RUN = textwrap.dedent("""
    import sys
    import dagster as dg
    from assets.factory import source_defs
    from integrations.config import SqlSourceConfig
    from resources.kafka import KafkaResource
    cfg = SqlSourceConfig.model_validate_json(sys.argv[1])
    res = dg.materialize(source_defs(cfg).assets, resources={"kafka": KafkaResource()}, raise_on_error=False)
    print("success" if res.success else "failed")
""")


def test_dagster_interrupt_signal_stops_the_source_op_at_a_batch_boundary(pg_url, kafka, topic_factory, unique):
    """Dagster interrupts a step with SIGINT (``send_interrupt``), a launcher with SIGTERM: the op's
    handlers turn either into a stop at the next batch boundary."""
    rows, batch = 400_000, 10_000
    table, name = f"dsig_{unique}", f"dsig-{unique}"
    numbered_table(pg_url, table, rows)
    prefix, offsets = topic_factory("dsig", create=False), topic_factory("dsig-offs", create=False)
    topic = prefix + table
    cfg = SqlSourceConfig(name=name, type="sql_source", connection_url=pg_url, mode="incrementing",
                          incrementing_column="id", tables=[table], topic_prefix=prefix, batch_max_rows=batch)
    proc = subprocess.Popen([sys.executable, "-c", _SIGNALLED_RUN, cfg.model_dump_json()], cwd=REPO,
                            env={**os.environ, "HEADRACE_OFFSETS_TOPIC": offsets}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for_growth(kafka, topic, 0, proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 0 and out.strip() == "failed", err[-2000:]
    assert "stopped at a batch boundary (received SIGINT)" in err
    upto = _stored(kafka, offsets, name, table)
    assert upto < rows
    _assert_prefix(read_ids(kafka, topic), upto)
