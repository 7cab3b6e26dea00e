"""Bad configuration and an unreachable Kafka: clear errors, non-zero exits, nothing produced or moved."""

from __future__ import annotations

import sqlite3

import pytest

from integrations.config import load_connector
from integrations.errors import ConfigError, KafkaUnavailable
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.source_runner import run_source
from tests.conftest import run_cli

BAD = {
    "bad_mode.yaml": (
        "name: bad-mode\ntype: sql_source\nconnection_url: sqlite:///x.db\nmode: incremental\n"
        "incrementing_column: id\ntables: [t]\ntopic_prefix: badcfg-\n",
        ["bad_mode.yaml", "field 'mode'", "'incremental'",
         "'bulk', 'incrementing', 'timestamp' or 'timestamp+incrementing'"],
    ),
    "missing_column.yaml": (
        "name: missing-col\ntype: sql_source\nconnection_url: sqlite:///x.db\nmode: timestamp+incrementing\n"
        "incrementing_column: id\ntables: [t]\ntopic_prefix: badcfg-\n",
        ["missing_column.yaml", "mode 'timestamp+incrementing' needs 'timestamp_column'"],
    ),
    "bad_sink.yaml": (
        "name: bad-sink\ntype: parquet_sink\ntopics: [ok, 'no spaces allowed']\npath: lake\nflush_size: 0\n",
        ["bad_sink.yaml", "field 'topics'", "'no spaces allowed' is not a legal Kafka topic name",
         "field 'flush_size'", "greater than 0", "(got 0)"],
    ),
}


@pytest.mark.parametrize("fname", sorted(BAD))
def test_malformed_connector_file_gives_clear_error_and_nothing_is_produced(fname, tmp_path, kafka):
    text, needles = BAD[fname]
    path = tmp_path / fname
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_connector(path)
    for needle in needles:
        assert needle in str(exc.value)
    for args in (["validate", str(tmp_path)], ["run", str(path)]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ")
        for needle in needles:
            assert needle in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not [t for t in kafka.admin().list_topics(timeout=10).topics if t.startswith("badcfg-")]


def test_unknown_type_and_unknown_field(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\ntype: jdbc\n")
    with pytest.raises(ConfigError, match=r"field 'type': got 'jdbc'; allowed: sql_source, parquet_sink"):
        load_connector(p)
    p.write_text("name: x\ntype: parquet_sink\ntopics: [a]\npath: p\nflush_sise: 3\n")
    with pytest.raises(ConfigError, match=r"field 'flush_sise' is not a known option"):
        load_connector(p)


def test_kafka_unreachable_fails_after_bounded_retries_and_moves_no_offset(kafka, tmp_path, unique):
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1, 11)])
    con.commit()
    con.close()
    p = tmp_path / "s.yaml"
    name = f"unreach-{unique}"
    p.write_text(f"name: {name}\ntype: sql_source\nconnection_url: sqlite:///{db}\nmode: incrementing\n"
                 f"incrementing_column: id\ntables: [t]\ntopic_prefix: unreach-{unique}-\n")
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:1", connect_retries=3, connect_backoff=0.1)
    with pytest.raises(KafkaUnavailable, match=r"Kafka at 127.0.0.1:1 is unreachable after 3 attempts"):
        run_source(load_connector(p), dead)
    proc = run_cli("run", str(p), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                                       "HEADRACE_KAFKA_CONNECT_RETRIES": "2"})
    assert proc.returncode == 1  # a runtime failure, not a config error (docs/errors.md)
    assert "unreachable after 2 attempts" in proc.stderr and "Traceback" not in proc.stderr
    assert OffsetStore(kafka).read(name) == {}  # no offset moved
    assert f"unreach-{unique}-t" not in kafka.admin().list_topics(timeout=10).topics
