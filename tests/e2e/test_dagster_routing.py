"""Sinks with routing transforms, through Dagster, on the real broker.

Static routing (a RegexRouter without predicate) makes the routed dataset or table the asset; dynamic
routing (a TimestampRouter) keeps one asset per source topic whose materializations list every routed
file and the rows per routed topic. Time-partitioned routed sinks record their partitions against the
asset that owns each routed folder, from the streaming job and from window rebuilds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import build_definitions
from assets.keys import clean
from integrations.errors import ConfigError
from tests.helpers import write_connector
from tests.integration.sink_helpers import file_rows, produce
from tests.integration.test_table_sink import _fetch

DAY = 86_400_000
T0 = int(dt.datetime(2024, 3, 9, 12, tzinfo=dt.UTC).timestamp() * 1000)  # 2024-03-09 12:00 UTC
REGEX = {"type": "RegexRouter", "regex": r"(.*)\.orders", "replacement": "$1_orders_v2"}
BY_DAY = {"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"}


@pytest.fixture
def orders_topic(kafka):
    """Make ``<prefix><hex>.orders`` topics (the RegexRouter's input); deleted afterwards."""
    made: list[str] = []

    def make(partitions: int = 1, prefix: str = "eu") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:8]}.orders"
        kafka.ensure_topic(name, partitions=partitions)
        made.append(name)
        return name

    yield make
    kafka.delete_topics(made)


def _path(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def _specs(defs: dg.Definitions) -> tuple[dict[str, dg.AssetSpec], dict[str, list[str]]]:
    specs = {_path(s.key): s for s in defs.resolve_all_asset_specs()}
    return specs, {k: sorted(_path(d.asset_key) for d in s.deps) for k, s in specs.items()}


def _mats(result: dg.ExecuteInProcessResult) -> dict[str, list[tuple[str | None, dict]]]:
    """``{asset key: [(partition, metadata values)]}`` of every materialization of a run."""
    out: dict[str, list[tuple[str | None, dict]]] = {}
    for ev in result.get_asset_materialization_events():
        m = ev.step_materialization_data.materialization
        out.setdefault(_path(m.asset_key), []).append((m.partition, {k: v.value for k, v in m.metadata.items()}))
    return out


def _checks(defs: dg.Definitions) -> list[tuple[str, str]]:
    """Every asset check, as (asset key, check name)."""
    return sorted((_path(k.asset_key), k.name) for k in defs.resolve_asset_graph().asset_check_keys)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.resolve()) for p in folder.rglob("*.parquet"))


def _resolved(files: list[str]) -> list[str]:
    return sorted(str(Path(f).resolve()) for f in files)


def _name(n: int, topic: str, partition: int = 0) -> str:
    return f"{topic}+{partition}+{n:020d}.parquet"


def test_regex_router_parquet_asset_is_the_routed_dataset(kafka, orders_topic, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = orders_topic(partitions=2)
    routed = topic.replace(".orders", "_orders_v2")
    produce(kafka, topic, [(i % 2, None, {"id": i}, T0 + i) for i in range(10)])
    name = f"rr-{unique}"
    c = tmp_path / "c"
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake", "flush_size": 2,
                        "transforms": [REGEX]})
    defs = build_definitions(c)
    specs, deps = _specs(defs)
    key = f"parquet/{clean(name)}/{clean(name)}__{clean(routed)}"
    assert [k for k in specs if k.startswith("parquet/")] == [key]  # no asset named after the source topic
    assert deps[key] == [f"kafka/{clean(topic)}"]
    assert specs[key].metadata["path"].value == str(tmp_path / "lake" / routed)
    assert f"routed from topic {topic!r} by RegexRouter" in specs[key].description
    assert _checks(defs) == [(key, "dead_letters_within_threshold"), (key, "lag_within_threshold"),
                             (key, "reconciled")]  # a router may only drop records from this dataset: a bound

    with dg.instance_for_test() as instance:
        res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        assert res.success
        [(_, meta)] = _mats(res)[key]
        on_disk = _files(tmp_path / "lake")
        assert on_disk == [str((tmp_path / "lake" / routed / f"partition={p}" / _name(s, routed, p)).resolve())
                           for p in (0, 1) for s in (0, 2, 4)]
        assert _resolved(meta["files"]) == on_disk and meta["files_written"] == 6
        assert (meta["rows"], meta["routed_targets"], meta["offsets"]) == (10, {routed: 10},
                                                                           {"0": [0, 5], "1": [0, 5]})
        assert meta["lag"] == 0
        assert all(ev.passed for ev in res.get_asset_check_evaluations())
        [rec] = [ev for ev in res.get_asset_check_evaluations() if ev.check_name == "reconciled"]
        assert rec.description.startswith(f"source not countable, topic {topic!r} 10 records, dataset 10 rows (at most "
                                          "the records read): agree; the sink's transform RegexRouter may drop")
        assert file_rows(str(tmp_path / "lake"), routed)[f"partition=1/{_name(4, routed, 1)}"] == [9]

        again = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        [(_, meta)] = _mats(again)[key]
        assert (meta["rows"], meta["files"], meta["routed_targets"]) == (0, [], {})


@pytest.mark.parametrize("db", ["duckdb", "postgres"])
def test_regex_router_table_sink_two_topics_one_table_one_asset(db, kafka, orders_topic, tmp_path, unique,
                                                                 monkeypatch, request):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    url = f"duckdb:///{tmp_path}/wh.duckdb" if db == "duckdb" else request.getfixturevalue("pg_url")
    a, b = orders_topic(prefix="a", partitions=2), orders_topic(prefix="b")
    produce(kafka, a, [(i % 2, None, {"id": i}, T0) for i in range(3)])
    produce(kafka, b, [(0, None, {"id": 10 + i}, T0) for i in range(2)])
    name = f"mg-{unique}"
    c = tmp_path / "c"
    write_connector(c, {"name": name, "type": "table_sink", "topics": [a, b], "connection_url": url,
                        "auto_create": True,
                        "transforms": [{"type": "RegexRouter", "regex": r".*\.orders", "replacement": "all_orders"}]})
    defs = build_definitions(c)
    specs, deps = _specs(defs)
    [key] = [k for k in specs if k.startswith("warehouse/")]
    root, db, label = key.split("/")
    assert (root, label) == ("warehouse", f"{db}__all_orders")
    assert deps[key] == sorted([f"kafka/{clean(a)}", f"kafka/{clean(b)}"])
    assert "routed from topics" in specs[key].description
    assert _checks(defs) == [(key, "dead_letters_within_threshold"), (key, "lag_within_threshold")]

    with dg.instance_for_test() as instance:
        res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        assert res.success
        [(_, meta)] = _mats(res)[key]
        assert (meta["rows"], meta["routed_targets"], meta["lag"]) == (5, {"all_orders": 5}, 0)
        assert meta["offsets"] == {a: {"0": [0, 2], "1": [0, 1]}, b: {"0": [0, 2]}}
        assert all(ev.passed for ev in res.get_asset_check_evaluations())
    assert _fetch(url, 'SELECT id FROM "all_orders" ORDER BY id') == [(0,), (1,), (2,), (10,), (11,)]


def test_timestamp_router_parquet_one_asset_per_source_topic(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    a, b = topic_factory("tsa", partitions=2), topic_factory("tsb")
    produce(kafka, a, [(i % 2, None, {"id": i}, T0 + (i // 2 % 2) * DAY + i) for i in range(6)])  # days 9,9,10,10,9,9
    produce(kafka, b, [(0, None, {"id": 100 + i}, T0 + (1 + i % 2) * DAY + i) for i in range(3)])  # days 10,11,10
    name = f"ts-{unique}"
    c = tmp_path / "c"
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": [a, b], "path": "lake",
                        "transforms": [BY_DAY]})
    defs = build_definitions(c)
    specs, deps = _specs(defs)
    ka, kb = f"parquet/{clean(name)}/{clean(name)}__{clean(a)}", f"parquet/{clean(name)}/{clean(name)}__{clean(b)}"
    assert sorted(k for k in specs if k.startswith("parquet/")) == sorted([ka, kb])
    assert (deps[ka], deps[kb]) == ([f"kafka/{clean(a)}"], [f"kafka/{clean(b)}"])
    for k in (ka, kb):
        assert "TimestampRouter(topic_format '${topic}-${timestamp}', timestamp_format 'yyyyMMdd')" in \
            specs[k].description
        assert "routed_targets" in specs[k].description

    with dg.instance_for_test() as instance:
        res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        assert res.success
        mats = _mats(res)
        [(_, ma)], [(_, mb)] = mats[ka], mats[kb]
    lake = tmp_path / "lake"
    a9, a10, b10, b11 = f"{a}-20240309", f"{a}-20240310", f"{b}-20240310", f"{b}-20240311"
    assert sorted(p.name for p in lake.iterdir()) == sorted([a9, a10, b10, b11])
    assert ma["routed_targets"] == {a9: 4, a10: 2} and mb["routed_targets"] == {b10: 2, b11: 1}
    assert (ma["rows"], mb["rows"]) == (6, 3)
    assert _resolved(ma["files"]) == _files(lake / a9) + _files(lake / a10)
    assert _resolved(mb["files"]) == _files(lake / b10) + _files(lake / b11)
    assert (ma["files_written"], mb["files_written"]) == (4, 2)  # a: days 9 and 10 in both partitions
    assert file_rows(str(lake), a9) == {f"partition=0/{_name(0, a9)}": [0, 4], f"partition=1/{_name(0, a9, 1)}": [1, 5]}
    assert file_rows(str(lake), b11) == {f"partition=0/{_name(1, b11)}": [101]}
    assert ma["offsets"] == {"0": [0, 3], "1": [0, 3]} and mb["offsets"] == {"0": [0, 3]}


def test_definitions_refuse_two_topics_routed_into_one_parquet_topic(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    c = tmp_path / "c"
    write_connector(c, {"name": "merge-lake", "type": "parquet_sink", "topics": ["eu.orders", "us.orders", "x"],
                        "path": "lake",
                        "transforms": [{"type": "RegexRouter", "regex": r".*\.orders", "replacement": "all_orders"}]})
    with pytest.raises(ConfigError, match=r"connector merge-lake: field 'transforms' routes topics 'eu.orders', "
                                          r"'us.orders' into one topic 'all_orders'"):
        build_definitions(c)
    # one topic per routed topic loads (the same regex, one source topic)
    write_connector(c, {"name": "merge-lake", "type": "parquet_sink", "topics": ["eu.orders", "x"], "path": "lake",
                        "transforms": [{"type": "RegexRouter", "regex": r".*\.orders", "replacement": "all_orders"}]})
    _, deps = _specs(build_definitions(c))
    assert {k: v for k, v in deps.items() if k.startswith("parquet/")} == {
        "parquet/merge_lake/merge_lake__all_orders": ["kafka/eu_orders"], "parquet/merge_lake/merge_lake__x": ["kafka/x"]}


def _time_sink(c: Path, name: str, topics: list[str], transforms: list[dict]) -> dg.Definitions:
    write_connector(c, {"name": name, "type": "parquet_sink", "topics": topics, "path": "lake",
                        "partitioner": "time", "partition_start_date": "2024-03-01", "transforms": transforms})
    return build_definitions(c)


def test_time_partitioned_static_routing_records_the_routed_asset(kafka, orders_topic, tmp_path, unique,
                                                                  monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = orders_topic()
    routed = topic.replace(".orders", "_orders_v2")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])  # days 9,10,9,10,9
    name = f"trr-{unique}"
    defs = _time_sink(tmp_path / "c", name, [topic], [REGEX])
    key = f"parquet/{clean(name)}/{clean(name)}__{clean(routed)}"
    specs, deps = _specs(defs)
    assert [k for k in specs if k.startswith("parquet/")] == [key] and deps[key] == [f"kafka/{clean(topic)}"]
    with dg.instance_for_test() as instance:
        res = defs.resolve_job_def(f"{clean(name)}_job").execute_in_process(instance=instance)
        assert res.success
        mats = _mats(res)
        assert list(mats) == [key]
        assert sorted(p for p, _ in mats[key]) == ["2024-03-09", "2024-03-10"]
        assert all(m["offsets"] == {"0": [0, 5]} for _, m in mats[key])
        assert instance.get_materialized_partitions(dg.AssetKey(key.split("/"))) == {"2024-03-09", "2024-03-10"}

        back = defs.resolve_job_def(f"{clean(name)}_backfill_job").execute_in_process(
            instance=instance, partition_key="2024-03-10")
        assert back.success
        [(part, meta)] = _mats(back)[key]
        assert part == "2024-03-10"
        assert meta["paths_replaced"] == [f"{routed}/year=2024/month=03/day=10"]
        assert (meta["rows"], meta["files"]) == (2, 1)
    assert file_rows(str(tmp_path / "lake"), routed) == {
        f"year=2024/month=03/day=09/{_name(0, routed)}": [0, 2, 4],
        f"year=2024/month=03/day=10/{_name(1, routed)}": [1, 3]}


def test_time_partitioned_dynamic_routing_records_the_source_topic_asset(kafka, topic_factory, tmp_path, unique,
                                                                         monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    a, b = topic_factory("tpa"), topic_factory("tpb")
    produce(kafka, a, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])  # days 9,10,9,10,9
    # days 10,10,11: in order, since a rebuild finds a window's offsets by offsets_for_times
    produce(kafka, b, [(0, None, {"id": 100 + i}, T0 + (1 + i // 2) * DAY + i) for i in range(3)])
    name = f"tpd-{unique}"
    defs = _time_sink(tmp_path / "c", name, [a, b], [BY_DAY])
    ka, kb = f"parquet/{clean(name)}/{clean(name)}__{clean(a)}", f"parquet/{clean(name)}/{clean(name)}__{clean(b)}"
    a9, a10, b10, b11 = f"{a}-20240309", f"{a}-20240310", f"{b}-20240310", f"{b}-20240311"
    with dg.instance_for_test() as instance:
        res = defs.resolve_job_def(f"{clean(name)}_job").execute_in_process(instance=instance)
        assert res.success
        mats = _mats(res)
        assert sorted(mats) == sorted([ka, kb])
        assert sorted(p for p, _ in mats[ka]) == ["2024-03-09", "2024-03-10"]
        assert sorted(p for p, _ in mats[kb]) == ["2024-03-10", "2024-03-11"]
        assert all(m["offsets"] == {"0": [0, 5]} for _, m in mats[ka])
        assert all(m["offsets"] == {"0": [0, 3]} for _, m in mats[kb])

        back = defs.resolve_job_def(f"{clean(name)}_backfill_job").execute_in_process(
            instance=instance, partition_key="2024-03-10")
        assert back.success
        mats = _mats(back)
        [(pa_, ma)], [(pb, mb)] = mats[ka], mats[kb]
        assert (pa_, pb) == ("2024-03-10", "2024-03-10")
        assert ma["paths_replaced"] == [f"{a10}/year=2024/month=03/day=10"] and ma["files"] == 1
        assert mb["paths_replaced"] == [f"{b10}/year=2024/month=03/day=10"] and mb["files"] == 1
        assert (ma["offsets"], mb["offsets"]) == ({f"{a}[0]": [1, 5]}, {f"{b}[0]": [0, 2]})
        assert (ma["rows"], mb["rows"]) == (2, 2)
    lake = str(tmp_path / "lake")
    assert file_rows(lake, a9) == {f"year=2024/month=03/day=09/{_name(0, a9)}": [0, 2, 4]}
    assert file_rows(lake, a10) == {f"year=2024/month=03/day=10/{_name(1, a10)}": [1, 3]}
    assert file_rows(lake, b10) == {f"year=2024/month=03/day=10/{_name(0, b10)}": [100, 101]}
    assert file_rows(lake, b11) == {f"year=2024/month=03/day=11/{_name(2, b11)}": [102]}


def test_a_router_behind_a_predicate_is_dynamic(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    c = tmp_path / "c"
    write_connector(c, {"name": "pred", "type": "parquet_sink", "topics": ["eu.orders", "us.orders"], "path": "lake",
                        "transforms": [{**REGEX, "predicate": {"type": "HasHeaderKey", "name": "v2"}}]})
    specs, deps = _specs(build_definitions(c))
    assert {k: v for k, v in deps.items() if k.startswith("parquet/")} == {
        "parquet/pred/pred__eu_orders": ["kafka/eu_orders"], "parquet/pred/pred__us_orders": ["kafka/us_orders"]}
    assert "RegexRouter(regex '(.*)\\\\.orders', replacement '$1_orders_v2') if HasHeaderKey routes each record" \
        in specs["parquet/pred/pred__eu_orders"].description


def test_timestamp_router_table_sink_lists_rows_per_routed_table(kafka, topic_factory, tmp_path, unique,
                                                                 monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    url = f"duckdb:///{tmp_path}/wh.duckdb"
    topic = topic_factory("tst")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i % 2) * DAY + i) for i in range(5)])  # days 9,10,9,10,9
    name = f"tst-{unique}"
    c = tmp_path / "c"
    write_connector(c, {"name": name, "type": "table_sink", "topics": [topic], "connection_url": url,
                        "auto_create": True, "table_name_format": "t_${topic}", "transforms": [BY_DAY]})
    defs = build_definitions(c)
    specs, deps = _specs(defs)
    [key] = [k for k in specs if k.startswith("warehouse/")]
    assert key.split("/")[-1] == "duckdb_wh__" + clean(f"t_{topic}") and deps[key] == [f"kafka/{clean(topic)}"]
    assert "the tables 't_${topic}' gives for the routed topics" in specs[key].description
    with dg.instance_for_test() as instance:
        res = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        assert res.success
        [(_, meta)] = _mats(res)[key]
    d9, d10 = f"t_{topic}-20240309", f"t_{topic}-20240310"
    assert (meta["rows"], meta["routed_targets"], meta["files"]) == (5, {d9: 3, d10: 2}, [])
    assert _fetch(url, f'SELECT id FROM "{d9}" ORDER BY id') == [(0,), (2,), (4,)]
    assert _fetch(url, f'SELECT id FROM "{d10}" ORDER BY id') == [(1,), (3,)]
