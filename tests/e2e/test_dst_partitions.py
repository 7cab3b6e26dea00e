"""Issue 12 item 1 through Dagster: an hourly Parquet sink in Europe/Berlin on the DST fall-back night.

The streaming job puts both 02:00 hours into folder ``hour=02`` and records both Dagster partitions
(``2024-10-27-02:00`` and ``2024-10-27-02:00+0100``) as touched. Materializing either partition, or a
range across the night in one run, rewrites the whole folder with every one of its records. A daily
sink's 23-hour spring-forward day is rebuilt whole as well.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import dagster as dg

from assets.definitions import build_definitions
from assets.keys import clean
from tests.helpers import write_connector
from tests.integration.sink_helpers import file_rows, produce

FALL = dt.datetime(2024, 10, 27, tzinfo=dt.UTC)  # 02:00 CEST = 00:00 UTC; 02:00 CET = 01:00 UTC
SPRING = dt.datetime(2024, 3, 31, tzinfo=dt.UTC)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _by_folder(lake: Path, topic: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for rel, ids in file_rows(str(lake), topic).items():
        out.setdefault(rel.rsplit("/", 1)[0], []).extend(ids)
    return {k: sorted(v) for k, v in out.items()}


def _mats(result: dg.ExecuteInProcessResult) -> list[tuple[str | None, dict]]:
    return [(m.partition, {k: v.value for k, v in m.metadata.items()})
            for m in (ev.step_materialization_data.materialization for ev in result.get_asset_materialization_events())]


def test_fall_back_partitions_rebuild_the_shared_hour_whole(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("dstd")
    minutes = [10, 50, 70, 110, -30, 150]  # ids 0-1: first 02:00 hour, 2-3: second, 4: 01:00, 5: 03:00
    produce(kafka, topic, [(0, None, {"id": i}, _ms(FALL + dt.timedelta(minutes=m))) for i, m in enumerate(minutes)])
    name = f"dstd-{unique}"
    write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                                     "partitioner": "time", "partition_duration": "hourly",
                                     "timezone": "Europe/Berlin", "partition_start_date": "2024-10-01"})
    defs = build_definitions(tmp_path / "c")
    key = dg.AssetKey(["parquet", clean(name), f"{clean(name)}__{clean(topic)}"])
    lake = tmp_path / "lake"
    day = "year=2024/month=10/day=27"
    expected = {f"{day}/hour=01": [4], f"{day}/hour=02": [0, 1, 2, 3], f"{day}/hour=03": [5]}
    with dg.instance_for_test() as instance:
        res = defs.resolve_job_def(f"{clean(name)}_job").execute_in_process(instance=instance)
        assert res.success
        assert _by_folder(lake, topic) == expected
        assert instance.get_materialized_partitions(key) == {
            "2024-10-27-01:00", "2024-10-27-02:00", "2024-10-27-02:00+0100", "2024-10-27-03:00"}

        backfill = defs.resolve_job_def(f"{clean(name)}_backfill_job")
        for pk in ("2024-10-27-02:00+0100", "2024-10-27-02:00"):  # the issue: ids 2-3 only, and a failure
            back = backfill.execute_in_process(instance=instance, partition_key=pk)
            assert back.success
            [(part, meta)] = _mats(back)
            assert part == pk
            assert meta["rows"] == 4 and meta["paths_replaced"] == [f"{topic}/{day}/hour=02"]
            assert meta["rebuilt_window"] == "[2024-10-27T02:00:00+02:00, 2024-10-27T03:00:00+01:00)"
            assert meta["partitions_rewritten"] == ["2024-10-27-02:00", "2024-10-27-02:00+0100"]
            assert _by_folder(lake, topic) == expected, pk

        # one run over a range of partitions (single-run backfill): 01:00 to 03:00
        ranged = backfill.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "2024-10-27-01:00",
            "dagster/asset_partition_range_end": "2024-10-27-03:00"})
        assert ranged.success
        assert [p for p, _m in _mats(ranged)] == [
            "2024-10-27-01:00", "2024-10-27-02:00", "2024-10-27-02:00+0100", "2024-10-27-03:00"]
        figures = {p: (m["rows"], m["files"], m["paths_replaced"], m["partitions_rewritten"]) for p, m in _mats(ranged)}
        both = ["2024-10-27-02:00", "2024-10-27-02:00+0100"]
        assert figures == {  # each partition its own figures; both 02:00 partitions share the one folder
            "2024-10-27-01:00": (1, 1, [f"{topic}/{day}/hour=01"], ["2024-10-27-01:00"]),
            "2024-10-27-02:00": (4, 1, [f"{topic}/{day}/hour=02"], both),
            "2024-10-27-02:00+0100": (4, 1, [f"{topic}/{day}/hour=02"], both),
            "2024-10-27-03:00": (1, 1, [f"{topic}/{day}/hour=03"], ["2024-10-27-03:00"])}
    assert _by_folder(lake, topic) == expected
    assert sorted(i for v in _by_folder(lake, topic).values() for i in v) == list(range(6))


def test_spring_forward_day_rebuilds_its_23_hours(kafka, topic_factory, tmp_path, unique, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    topic = topic_factory("dsts", partitions=2)
    times = [SPRING - dt.timedelta(hours=1, minutes=1) + dt.timedelta(minutes=30 * i) for i in range(50)]
    produce(kafka, topic, [(i % 2, None, {"id": i}, _ms(t)) for i, t in enumerate(times)])
    name = f"dsts-{unique}"
    write_connector(tmp_path / "c", {"name": name, "type": "parquet_sink", "topics": [topic], "path": "lake",
                                     "partitioner": "time", "timezone": "Europe/Berlin",
                                     "partition_start_date": "2024-03-01", "flush_size": 5})
    defs = build_definitions(tmp_path / "c")
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    expected: dict[str, list[int]] = {}
    for i, t in enumerate(times):
        expected.setdefault(t.astimezone(berlin).strftime("year=%Y/month=%m/day=%d"), []).append(i)
    assert [len(v) for v in expected.values()] == [1, 46, 3]  # 23:29 on the 30th; 46 half-hours on the 31st
    lake = tmp_path / "lake"
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def(f"{clean(name)}_job").execute_in_process(instance=instance).success
        assert _by_folder(lake, topic) == expected
        back = defs.resolve_job_def(f"{clean(name)}_backfill_job").execute_in_process(
            instance=instance, partition_key="2024-03-31")
        assert back.success
        [(_p, meta)] = _mats(back)
        assert meta["rows"] == 46
        assert meta["rebuilt_window"] == "[2024-03-31T00:00:00+01:00, 2024-04-01T00:00:00+02:00)"
    assert _by_folder(lake, topic) == expected
