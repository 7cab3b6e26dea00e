"""Routing transforms on sinks, on the real broker: RegexRouter and TimestampRouter change the topic a
record is written under (the Parquet folder and file names, the table ``table_name_format`` names),
while offsets stay per source topic-partition. Window rebuilds and SIGKILL re-runs stay exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.errors import ConfigError, HeadraceError
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.parquet import source_topic
from integrations.sinks.windows import rebuild_window
from tests.conftest import run_cli
from tests.helpers import write_connector
from tests.integration.sink_helpers import file_rows, produce, stored_offsets
from tests.integration.test_table_sink import _fetch, _url

DAY = 86_400_000
T0 = int(dt.datetime(2024, 3, 9, 12, tzinfo=dt.UTC).timestamp() * 1000)  # 2024-03-09 12:00 UTC
REGEX = {"type": "RegexRouter", "regex": r"(.*)\.orders", "replacement": "$1_orders_v2"}
BY_DAY = {"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"}


def _name(n: int, topic: str, partition: int = 0) -> str:
    return f"{topic}+{partition}+{n:020d}.parquet"


@pytest.fixture
def orders_topic(kafka):
    """Make ``eu<hex>.orders`` topics (the RegexRouter's input); deleted afterwards."""
    made: list[str] = []

    def make(partitions: int = 1, prefix: str = "eu") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:8]}.orders"
        kafka.ensure_topic(name, partitions=partitions)
        made.append(name)
        return name

    yield make
    kafka.delete_topics(made)


def _tables(url: str) -> list[str]:
    return [r[0] for r in _fetch(url, "SELECT table_name FROM information_schema.tables "
                                      "WHERE table_schema = current_schema() ORDER BY 1")]


# -- Parquet ----------------------------------------------------------------------------------------


def test_regex_router_parquet_files_under_the_routed_topic(kafka, orders_topic, unique, tmp_path):
    topic = orders_topic(partitions=2)
    routed = topic.replace(".orders", "_orders_v2")
    produce(kafka, topic, [(i % 2, None, {"id": i}, T0 + i) for i in range(10)])
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"rt-{unique}", topics=[topic], path=str(tmp_path),
                            flush_size=2, transforms=[REGEX])
    res = run_sink(cfg, kafka)
    assert (res.rows_per_topic, res.rows_per_target) == ({topic: 10}, {routed: 10})
    assert not (tmp_path / topic).exists()
    assert file_rows(str(tmp_path), routed) == {
        f"partition=0/{_name(0, routed)}": [0, 2], f"partition=0/{_name(2, routed)}": [4, 6],
        f"partition=0/{_name(4, routed)}": [8],
        f"partition=1/{_name(0, routed, 1)}": [1, 3], f"partition=1/{_name(2, routed, 1)}": [5, 7],
        f"partition=1/{_name(4, routed, 1)}": [9],
    }
    first = str(tmp_path / routed / "partition=0" / _name(0, routed))
    assert pq.read_schema(first).metadata[b"headrace.source_topic"] == topic.encode()
    assert source_topic(None, first) == topic
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5, 1: 5}  # per source topic-partition
    assert run_sink(cfg, kafka).rows == 0


def test_timestamp_router_parquet_splits_a_partition_into_two_topics(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("tsr")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])  # days 9,10,9,10,9
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"tsr-{unique}", topics=[topic], path=str(tmp_path),
                            transforms=[BY_DAY])
    res = run_sink(cfg, kafka)
    d9, d10 = f"{topic}-20240309", f"{topic}-20240310"
    assert res.rows_per_target == {d9: 3, d10: 2}
    assert file_rows(str(tmp_path), d9) == {f"partition=0/{_name(0, d9)}": [0, 2, 4]}
    assert file_rows(str(tmp_path), d10) == {f"partition=0/{_name(1, d10)}": [1, 3]}
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5}
    assert run_sink(cfg, kafka).rows == 0


def _time_cfg(topic: str, unique: str, root: Path, transforms: list[dict]) -> ParquetSinkConfig:
    return ParquetSinkConfig(type="parquet_sink", name=f"rtw-{unique}", topics=[topic], path=str(root),
                             partitioner="time", path_format="'dt'=YYYY-MM-dd", transforms=transforms)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*.parquet"))
            if not any(p.startswith(".") for p in f.relative_to(root).parts)}


def test_timestamp_router_time_partitions_and_window_rebuild(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("tsw")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])
    cfg = _time_cfg(topic, unique, tmp_path, [BY_DAY])
    assert run_sink(cfg, kafka).rows == 5
    d9, d10 = f"{topic}-20240309", f"{topic}-20240310"
    assert file_rows(str(tmp_path), d9) == {f"dt=2024-03-09/{_name(0, d9)}": [0, 2, 4]}
    assert file_rows(str(tmp_path), d10) == {f"dt=2024-03-10/{_name(1, d10)}": [1, 3]}
    before = _snapshot(tmp_path)

    day10 = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
    for _ in range(2):  # rebuilding the day again gives the same files
        res = rebuild_window(cfg, day10, day10 + dt.timedelta(days=1), kafka)
        assert (res.rows, res.paths) == (2, [f"{d10}/dt=2024-03-10"])
        assert [Path(f).name for f in res.files] == [_name(1, d10)]
        assert _snapshot(tmp_path) == before
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5}  # the rebuild never touches the group


def test_regex_router_window_rebuild_replaces_its_own_files(kafka, orders_topic, unique, tmp_path):
    topic = orders_topic()
    routed = topic.replace(".orders", "_orders_v2")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])
    cfg = _time_cfg(topic, unique, tmp_path, [REGEX])
    assert run_sink(cfg, kafka).rows == 5
    expected = {f"dt=2024-03-09/{_name(0, routed)}": [0, 2, 4], f"dt=2024-03-10/{_name(1, routed)}": [1, 3]}
    assert file_rows(str(tmp_path), routed) == expected
    before = _snapshot(tmp_path)
    # a stale file in the routed day folder (a crashed run's file of offset 3): the rebuild replaces it
    stale = tmp_path / routed / "dt=2024-03-10" / _name(3, routed)
    pq.write_table(pq.read_table(tmp_path / routed / "dt=2024-03-10" / _name(1, routed)).slice(1), stale)

    day10 = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
    res = rebuild_window(cfg, day10, day10 + dt.timedelta(days=1), kafka)
    assert (res.rows, res.paths) == (2, [f"{routed}/dt=2024-03-10"])
    assert file_rows(str(tmp_path), routed) == expected and _snapshot(tmp_path) == before

    # a day with no record in Kafka but files of this connector's topic in the routed folder: refused
    day12 = tmp_path / routed / "dt=2024-03-12"
    day12.mkdir()
    (day12 / _name(4, routed)).write_bytes((tmp_path / routed / "dt=2024-03-09" / _name(0, routed)).read_bytes())
    start = dt.datetime(2024, 3, 12, tzinfo=dt.UTC)
    with pytest.raises(HeadraceError, match=f"refusing to replace {routed}/dt=2024-03-12"):
        rebuild_window(cfg, start, start + dt.timedelta(days=1), kafka)
    assert (day12 / _name(4, routed)).exists()


def test_parquet_refuses_two_topics_routed_into_one(kafka, orders_topic, unique, tmp_path):
    a, b = orders_topic(prefix="a"), orders_topic(prefix="b")
    produce(kafka, a, [(0, None, {"id": i}, T0) for i in range(3)])
    produce(kafka, b, [(0, None, {"id": 10 + i}, T0) for i in range(3)])
    merge = [{"type": "RegexRouter", "regex": r".*\.orders", "replacement": "all_orders"}]
    both = ParquetSinkConfig(type="parquet_sink", name=f"mg-{unique}", topics=[a, b], path=str(tmp_path / "one"),
                             transforms=merge)
    with pytest.raises(ConfigError, match="both go to topic 'all_orders'"):
        run_sink(both, kafka)
    # across runs (one connector per topic): the file's recorded source topic gives it away
    lake = str(tmp_path / "two")
    only_a = both.model_copy(update={"name": f"mga-{unique}", "topics": [a], "path": lake})
    only_b = both.model_copy(update={"name": f"mgb-{unique}", "topics": [b], "path": lake})
    assert run_sink(only_a, kafka).rows == 3
    kept = file_rows(lake, "all_orders")
    assert kept == {f"partition=0/{_name(0, 'all_orders')}": [0, 1, 2]}
    with pytest.raises(ConfigError, match=f"records of '{b}' and '{a}' both go to topic 'all_orders'"):
        run_sink(only_b, kafka)
    assert file_rows(lake, "all_orders") == kept


def test_parquet_refuses_an_illegal_routed_topic(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("bad")
    produce(kafka, topic, [(0, None, {"id": 1}, T0)])
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"bad-{unique}", topics=[topic], path=str(tmp_path),
                            transforms=[{"type": "RegexRouter", "regex": ".*", "replacement": "../up"}])
    with pytest.raises(HeadraceError, match="routed to '../up', which is not a legal topic name"):
        run_sink(cfg, kafka)
    assert not list(tmp_path.parent.glob("up"))


def test_routed_parquet_sink_killed_after_write_reruns_exactly_once(kafka, orders_topic, tmp_path, unique):
    topic = orders_topic(partitions=2)
    routed = topic.replace(".orders", "_orders_v2")
    n = 6000
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(n)])
    cfg = write_connector(tmp_path / "c", {
        "name": f"rtc-{unique}", "type": "parquet_sink", "topics": [topic], "path": str(tmp_path / "lake"),
        "flush_size": 1000, "value_schema": {"id": "int64"}, "transforms": [REGEX]})
    crashed = run_cli("run", str(cfg), env={"HEADRACE_FAULT": "sink_after_write"})
    assert crashed.returncode == -signal.SIGKILL
    assert len(list((tmp_path / "lake").rglob("*.parquet"))) == 1
    assert kafka.committed(f"headrace-rtc-{unique}", topic) == {0: None, 1: None}

    out = json.loads(run_cli("run", str(cfg), check=True).stdout)
    assert out["rows"] == n
    rows = file_rows(str(tmp_path / "lake"), routed)
    assert sorted(rows) == sorted(f"partition={p}/{_name(s, routed, p)}" for p in (0, 1) for s in (0, 1000, 2000))
    ids = sorted(i for v in rows.values() for i in v)
    assert ids == list(range(n))  # every record exactly once
    assert kafka.committed(f"headrace-rtc-{unique}", topic) == {0: n // 2, 1: n // 2}
    assert not list((tmp_path / "lake").rglob("*.tmp")) and not (tmp_path / "lake" / topic).exists()


# -- tables ----------------------------------------------------------------------------------------


def test_regex_router_table_sink_writes_the_routed_table(db_url, kafka, orders_topic, unique):
    topic = orders_topic()
    routed = topic.replace(".orders", "_orders_v2")
    produce(kafka, topic, [(0, {"id": 1}, {"id": 1, "v": "a"}, T0), (0, {"id": 2}, {"id": 2, "v": "b"}, T0),
                           (0, {"id": 3}, {"id": 3, "v": "c"}, T0), (0, {"id": 2}, {"id": 2, "v": "B"}, T0),
                           (0, {"id": 1}, None, T0)])  # a routed tombstone deletes from the routed table
    cfg = TableSinkConfig(type="table_sink", name=f"rtt-{unique}", topics=[topic], connection_url=db_url,
                          table_name_format="raw_${topic}", auto_create=True, insert_mode="upsert",
                          pk_mode="record_key", delete_enabled=True, transforms=[REGEX])
    res = run_sink(cfg, kafka)
    assert (res.rows, res.tombstones, res.rows_per_target) == (4, 1, {routed: 4})
    assert _tables(db_url) == ["headrace_sink_offsets", f"raw_{routed}"]
    assert _fetch(db_url, f'SELECT id, v FROM "raw_{routed}" ORDER BY id') == [(2, "B"), (3, "c")]
    assert stored_offsets(cfg) == {(topic, 0): 5}  # keyed by the source topic-partition
    assert kafka.committed(cfg.consumer_group, topic) == {0: 5}
    assert run_sink(cfg, kafka).rows == 0


def test_timestamp_router_table_sink_one_transaction_two_tables(db_url, kafka, topic_factory, unique):
    topic = topic_factory("tst")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])
    cfg = TableSinkConfig(type="table_sink", name=f"tst-{unique}", topics=[topic], connection_url=db_url,
                          auto_create=True, auto_evolve=True, pk_mode="kafka", transforms=[BY_DAY])
    res = run_sink(cfg, kafka)
    d9, d10 = f"{topic}-20240309", f"{topic}-20240310"
    assert res.rows_per_target == {d9: 3, d10: 2}
    assert sorted(res.stats.files) == [d9, d10]
    cols = 'id, "__connect_topic", "__connect_partition", "__connect_offset"'
    assert _fetch(db_url, f'SELECT {cols} FROM "{d9}" ORDER BY id') == [(0, d9, 0, 0), (2, d9, 0, 2), (4, d9, 0, 4)]
    assert _fetch(db_url, f'SELECT {cols} FROM "{d10}" ORDER BY id') == [(1, d10, 0, 1), (3, d10, 0, 3)]
    assert stored_offsets(cfg) == {(topic, 0): 5}

    # auto_evolve per target table: only the table that receives the new field gains the column
    produce(kafka, topic, [(0, None, {"id": 5, "note": "x"}, T0 + DAY + 5)])
    assert run_sink(cfg, kafka).rows == 1
    assert _fetch(db_url, f'SELECT id, note FROM "{d10}" ORDER BY id') == [(1, None), (3, None), (5, "x")]
    assert [c for (c,) in _fetch(db_url, "SELECT column_name FROM information_schema.columns WHERE table_name = "
                                         f"'{d9}' ORDER BY ordinal_position")] == [
        "id", "__connect_topic", "__connect_partition", "__connect_offset"]
    assert stored_offsets(cfg) == {(topic, 0): 6}


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])  # SQLite: the SQLAlchemy backend
def test_table_sink_merges_two_topics_into_one_table(backend, kafka, orders_topic, unique, tmp_path):
    url = _url(backend, tmp_path, None)
    a, b = orders_topic(prefix="a"), orders_topic(prefix="b")
    produce(kafka, a, [(0, None, {"id": i}, T0) for i in range(3)])
    produce(kafka, b, [(0, None, {"id": 10 + i}, T0) for i in range(2)])
    cfg = TableSinkConfig(type="table_sink", name=f"mgt-{unique}", topics=[a, b], connection_url=url,
                          auto_create=True, transforms=[{"type": "RegexRouter", "regex": ".*", "replacement": "all"}])
    assert run_sink(cfg, kafka).rows_per_target == {"all": 5}
    assert _fetch(url, 'SELECT id FROM "all" ORDER BY id') == [(0,), (1,), (2,), (10,), (11,)]
    assert stored_offsets(cfg) == {(a, 0): 3, (b, 0): 2}


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_routed_table_sink_killed_after_commit_reruns_exactly_once(backend, kafka, topic_factory, unique,
                                                                  tmp_path, request):
    """Insert mode without a key, two tables per transaction: a batch applied twice would show."""
    pg = request.getfixturevalue("pg_url") if backend == "postgres" else None
    url = _url(backend, tmp_path, pg)
    topic = topic_factory("tsk")
    n = 3000
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY) for i in range(n)])
    path = write_connector(tmp_path / "c", {
        "type": "table_sink", "name": f"tsk-{unique}", "topics": [topic], "connection_url": url,
        "auto_create": True, "batch_size": 1000, "transforms": [BY_DAY]})
    assert run_cli("run", str(path), env={"HEADRACE_FAULT": "sink_after_write"}).returncode == -signal.SIGKILL
    d9, d10 = f"{topic}-20240309", f"{topic}-20240310"
    # the first transaction wrote offsets 0..999 into both tables, then the process died
    assert _fetch(url, f'SELECT count(*) FROM "{d9}"') == [(500,)]
    assert _fetch(url, f'SELECT count(*) FROM "{d10}"') == [(500,)]
    assert kafka.committed(f"headrace-tsk-{unique}", topic) == {0: None}
    run_cli("run", str(path), check=True)
    q = 'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{}"'
    assert _fetch(url, q.format(d9)) == [(n // 2, n // 2, 0, n - 2)]
    assert _fetch(url, q.format(d10)) == [(n // 2, n // 2, 1, n - 1)]
    assert kafka.committed(f"headrace-tsk-{unique}", topic) == {0: n}
