"""Time partitions, folders and window rebuilds agree across DST, in both directions, daily and hourly.

Records with known times around Europe/Berlin's spring-forward (2024-03-31: 02:00 CET jumps to 03:00
CEST at 01:00 UTC, so there is no hour 02) and fall-back (2024-10-27: 03:00 CEST goes back to 02:00
CET at 01:00 UTC, so hour 02 happens twice) nights are streamed on the real broker, then every
Dagster partition touching the night is rebuilt with the engine's rebuild. After each rebuild every
folder must hold exactly the ids whose local time (Python's zoneinfo, independent of the sink's
Arrow code) falls in it, and the dataset must hold each id once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assets.factory import time_partitions
from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.windows import rebuild_window
from tests.helpers import produce_all
from tests.integration.sink_helpers import file_rows, produce

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
FALL = dt.datetime(2024, 10, 27, tzinfo=dt.UTC)  # 02:00 CEST = 00:00 UTC; 02:00 CET = 01:00 UTC
SPRING = dt.datetime(2024, 3, 31, tzinfo=dt.UTC)  # 01:00 UTC: 02:00 CET becomes 03:00 CEST
HOUR = dt.timedelta(hours=1)
FORMATS = {"daily": "year=%Y/month=%m/day=%d", "hourly": "year=%Y/month=%m/day=%d/hour=%H",
           "dt": "dt=%Y-%m-%d"}
PATH_FORMATS = {"dt": "'dt'=YYYY-MM-dd"}


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _times(night: dt.datetime) -> list[dt.datetime]:
    """Every 20 minutes from 20:00 UTC the evening before to 01:00 UTC the morning after (both local
    midnights of the day, and the DST hour, inside)."""
    first = night - dt.timedelta(hours=4)
    return [first + dt.timedelta(minutes=20 * i) for i in range(29 * 3)]


def _expected(times: list[dt.datetime], layout: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, t in enumerate(times):
        out.setdefault(t.astimezone(BERLIN).strftime(FORMATS[layout]), []).append(i)
    return out


def _by_folder(root: Path, topic: str) -> dict[str, list[int]]:
    """``{folder: sorted ids}`` over every file of the topic (duplicates kept, so they show)."""
    out: dict[str, list[int]] = {}
    for rel, ids in file_rows(str(root), topic).items():
        out.setdefault(rel.rsplit("/", 1)[0], []).extend(ids)
    return {k: sorted(v) for k, v in out.items()}


def _cfg(topic: str, root: Path, unique: str, duration: str, **kw) -> ParquetSinkConfig:
    return ParquetSinkConfig(**{"type": "parquet_sink", "name": f"dst-{unique}", "topics": [topic], "path": str(root),
                                "partitioner": "time", "partition_duration": duration, "timezone": "Europe/Berlin",
                                "partition_start_date": "2024-01-01", "flush_size": 7, **kw})


CASES = [  # night, partition duration, folder layout, record time from a field (else the Kafka timestamp)
    ("fall", "hourly", "hourly", False),
    ("fall", "hourly", "hourly", True),
    ("fall", "daily", "daily", False),
    ("fall", "hourly", "dt", False),  # daily folders under hourly partitions: a rebuild rewrites the day
    ("spring", "hourly", "hourly", False),
    ("spring", "daily", "daily", True),
]


@pytest.mark.parametrize(("night", "duration", "layout", "field"), CASES)
def test_dst_partitions_rebuild_exactly_their_folders(kafka, topic_factory, tmp_path, unique, night, duration,
                                                      layout, field):
    topic = topic_factory("dst", partitions=2)
    day = FALL if night == "fall" else SPRING
    times = _times(day)
    produce(kafka, topic, [(i % 2, None, {"id": i, "ts": _ms(t)}, _ms(t)) for i, t in enumerate(times)])
    extra = {"timestamp_field": "ts"} if field else {}
    if layout in PATH_FORMATS:
        extra["path_format"] = PATH_FORMATS[layout]
    cfg = _cfg(topic, tmp_path, unique, duration, **extra)
    expected = _expected(times, layout)
    assert run_sink(cfg, kafka).rows == len(times)
    assert _by_folder(tmp_path, topic) == expected  # streaming places records by local time
    if layout == "hourly":
        hour02 = f"year=2024/month={day:%m}/day={day:%d}/hour=02"
        assert (hour02 in expected) == (night == "fall")  # spring: no folder 02; fall: one folder, two hours
        if night == "fall":
            assert expected[hour02] == [i for i, t in enumerate(times) if day <= t < day + 2 * HOUR]

    parts = time_partitions(cfg)
    keys = [k for k in parts.get_partition_keys(current_time=day + dt.timedelta(days=3))
            if day - dt.timedelta(days=2) <= parts.time_window_for_partition_key(k).start < day + dt.timedelta(days=1)]
    if duration == "hourly":
        local = [k for k in keys if k.startswith(f"{day:%Y-%m-%d}-0")]
        if night == "fall":
            assert local[:5] == [f"{day:%Y-%m-%d}-00:00", f"{day:%Y-%m-%d}-01:00", f"{day:%Y-%m-%d}-02:00",
                                 f"{day:%Y-%m-%d}-02:00+0100", f"{day:%Y-%m-%d}-03:00"]
        else:
            assert local[:3] == [f"{day:%Y-%m-%d}-00:00", f"{day:%Y-%m-%d}-01:00", f"{day:%Y-%m-%d}-03:00"]
        # the night's partitions, and one on either side
        keys = [k for k in keys if day - 2 * HOUR <= parts.time_window_for_partition_key(k).start < day + 3 * HOUR]
    for k in keys:
        w = parts.time_window_for_partition_key(k)
        res = rebuild_window(cfg, w.start, w.end, kafka)
        s, e = res.window
        assert s <= w.start and w.end <= e
        # the rebuild rewrote whole folders, with every record of them, and nothing else
        folders = sorted({t.astimezone(BERLIN).strftime(FORMATS[layout]) for t in times if s <= t < e})
        assert sorted(p.split("/", 1)[1] for p in res.paths) == folders
        assert res.rows == sum(len(expected[f]) for f in folders)
        assert all(f.split("/", 1)[0] == topic for f in res.paths)
        assert _by_folder(tmp_path, topic) == expected, k  # exact ids per folder after every rebuild
        if night == "fall" and duration == "hourly" and k.endswith("02:00+0100") and layout == "hourly":
            assert (s, e) == (day, day + 2 * HOUR) and res.rows == 6  # both 02:00 hours, one folder
    ids = [i for v in _by_folder(tmp_path, topic).values() for i in v]
    assert sorted(ids) == list(range(len(times)))  # no gaps, no duplicates


def test_issue_fall_back_hour_rebuild_keeps_both_hours(kafka, topic_factory, tmp_path, unique):
    """Issue 12 item 1 as filed: ids 0-1 in the first 02:00 hour, 2-3 in the second; rebuilding either
    Dagster partition of the hour keeps all four, and `2024-10-27-02:00` is a valid window."""
    topic = topic_factory("dst")
    times = [FALL + dt.timedelta(minutes=10), FALL + dt.timedelta(minutes=50),
             FALL + dt.timedelta(minutes=70), FALL + dt.timedelta(minutes=110)]
    produce(kafka, topic, [(0, None, {"id": i}, _ms(t)) for i, t in enumerate(times)])
    cfg = _cfg(topic, tmp_path, unique, "hourly", flush_size=100)
    run_sink(cfg, kafka)
    folder = "year=2024/month=10/day=27/hour=02"
    assert _by_folder(tmp_path, topic) == {folder: [0, 1, 2, 3]}
    parts = time_partitions(cfg)
    for key in ("2024-10-27-02:00+0100", "2024-10-27-02:00", "2024-10-27-02:00+0100"):
        w = parts.time_window_for_partition_key(key)
        res = rebuild_window(cfg, w.start, w.end, kafka)
        assert (res.rows, res.paths) == (4, [f"{topic}/{folder}"]), key
        assert file_rows(str(tmp_path), topic) == {f"{folder}/{topic}+0+{0:020d}.parquet": [0, 1, 2, 3]}, key


def test_window_bounds_compare_as_instants(kafka, topic_factory, tmp_path, unique):
    """Aware datetimes of one zone compare by wall clock in Python (02:00+02:00 == 02:00+01:00): the
    rebuild takes bounds as instants. A window off the period boundaries grows to whole folders."""
    topic = topic_factory("dst")
    times = [FALL - dt.timedelta(minutes=30), FALL + dt.timedelta(minutes=30), FALL + dt.timedelta(minutes=90),
             FALL + dt.timedelta(minutes=150)]  # local 01:30, 02:30 (CEST), 02:30 (CET), 03:30
    produce(kafka, topic, [(0, None, {"id": i}, _ms(t)) for i, t in enumerate(times)])
    cfg = _cfg(topic, tmp_path, unique, "hourly")
    run_sink(cfg, kafka)
    start = dt.datetime(2024, 10, 27, 2, tzinfo=BERLIN)
    end = dt.datetime(2024, 10, 27, 2, fold=1, tzinfo=BERLIN)
    assert start == end and _ms(end) - _ms(start) == 3_600_000
    assert rebuild_window(cfg, start, end, kafka).rows == 2
    with pytest.raises(HeadraceError, match=r"is empty: its end is not after its start"):
        rebuild_window(cfg, end, start, kafka)
    res = rebuild_window(cfg, start - dt.timedelta(minutes=15), start + dt.timedelta(minutes=5), kafka)
    assert res.window == (FALL - HOUR, FALL + 2 * HOUR) and res.rows == 3  # hours 01 and 02, whole
    assert [p.rsplit("/", 1)[1] for p in res.paths] == ["hour=01", "hour=02"]
    assert _by_folder(tmp_path, topic) == {f"year=2024/month=10/day=27/hour={h}": ids for h, ids in
                                           (("01", [0]), ("02", [1, 2]), ("03", [3]))}


def test_guard_refuses_a_rebuild_that_would_drop_records(kafka, topic_factory, tmp_path, unique):
    """A rebuild whose new content lacks records of a file it replaces (here a Filter added to the
    config since streaming) refuses with one line, and the folder is left as it was."""
    topic = topic_factory("dst")
    t0 = FALL + 5 * HOUR
    produce_all(kafka, topic, ({"value": b'{"id": %d}' % i, "timestamp": _ms(t0) + i,
                                **({"headers": [("late", b"1")]} if i % 2 else {})} for i in range(6)))
    cfg = _cfg(topic, tmp_path, unique, "daily", flush_size=100)
    run_sink(cfg, kafka)
    before = {f: f.read_bytes() for f in (tmp_path / topic).rglob("*.parquet")}
    assert [pq.read_table(f).column("id").to_pylist() for f in before] == [[0, 1, 2, 3, 4, 5]]
    dropping = _cfg(topic, tmp_path, unique, "daily", flush_size=100,
                    transforms=[{"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "late"}}])
    w = time_partitions(cfg).time_window_for_partition_key("2024-10-27")
    with pytest.raises(HeadraceError, match=(
            rf"^refusing to replace {topic}/year=2024/month=10/day=27: {topic}\+0\+0{{20}}\.parquet holds 6 "
            rf"record\(s\) of {topic}/0 in offsets \[0, 6\), the rebuilt files only 3 of them; nothing was replaced")):
        rebuild_window(dropping, w.start, w.end, kafka)
    assert {f: f.read_bytes() for f in (tmp_path / topic).rglob("*.parquet")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # a file from before files recorded their end offset: its span is unknown, so it is not replaced
    (old,) = before
    pq.write_table(pq.read_table(old).replace_schema_metadata({}), old)
    with pytest.raises(HeadraceError, match=r"holds 6 record\(s\) .* offsets \[0, 1\) \(written before files "
                                            r"recorded headrace.end_offset; span unknown\), the rebuilt files only 1"):
        rebuild_window(cfg, w.start, w.end, kafka)
    assert pq.read_table(old).column("id").to_pylist() == [0, 1, 2, 3, 4, 5]


ZONES = [("Europe/Berlin", "2024-10-26", "2024-10-28"), ("Europe/Berlin", "2024-03-30", "2024-04-01"),
         ("America/New_York", "2024-11-02", "2024-11-04"), ("Australia/Lord_Howe", "2024-04-06", "2024-04-08"),
         ("America/Havana", "2024-11-02", "2024-11-04"), ("Asia/Kolkata", "2024-01-01", "2024-01-02")]


@pytest.mark.parametrize(("zone", "first", "last"), ZONES)
@pytest.mark.parametrize("duration", ["hourly", "daily"])
def test_rebuild_spans_are_exactly_their_folders(tmp_path, zone, first, last, duration):
    """For every Dagster partition around DST transitions (a 30-minute one and a midnight one among
    them), the rebuilt span holds exactly the instants whose folder (by Python's zoneinfo) is one of
    the rebuilt folders, and the streaming job's partition mapping of each folder covers the partition."""
    import dagster as dg

    from assets.factory import touched_partitions
    from integrations.sinks.parquet_partitioners import Partitioner

    cfg = ParquetSinkConfig(type="parquet_sink", name="spans", topics=["t"], path=str(tmp_path), partitioner="time",
                            partition_duration=duration, timezone=zone, partition_start_date="2024-01-01")
    part, tz, fmt = Partitioner(cfg), zoneinfo.ZoneInfo(zone), FORMATS[duration]
    defs = (dg.HourlyPartitionsDefinition(start_date=f"{first}-00:00", end_date=f"{last}-00:00", timezone=zone)
            if duration == "hourly" else dg.DailyPartitionsDefinition(start_date=first, end_date=last, timezone=zone))
    minute = dt.timedelta(minutes=1)
    for key in defs.get_partition_keys():
        w = defs.time_window_for_partition_key(key)
        folders, lo, hi = part.window_folders(_ms(w.start), _ms(w.end))
        assert lo <= _ms(w.start) and _ms(w.end) <= hi, key
        t = dt.datetime.fromtimestamp(lo / 1000, dt.UTC) - 3 * HOUR
        while _ms(t) < hi + 3 * 3_600_000:
            assert (t.astimezone(tz).strftime(fmt) in folders) == (lo <= _ms(t) < hi), (key, t)
            t += minute
        for f in folders:
            touched = touched_partitions(cfg, defs, [f"{tmp_path}/t/{f}/t+0+{0:020d}.parquet"], lambda _f, _d: "a")
            assert key in touched["a"], (key, f, touched)


def test_rebuild_does_not_dead_letter_again(kafka, topic_factory, tmp_path, unique):
    """A bad record was dead-lettered once by the streaming run; rebuilding its day skips it silently
    (the DLQ keeps one copy) and writes the good records back."""
    from tests.helpers import read_topic

    topic, dlq = topic_factory("dst"), topic_factory("dstdlq", create=False)
    t0 = _ms(FALL + 5 * HOUR)
    produce_all(kafka, topic, [{"value": b'{"id": 0}', "timestamp": t0}, {"value": b"not json", "timestamp": t0 + 1},
                               {"value": b'{"id": 2}', "timestamp": t0 + 2}])
    cfg = _cfg(topic, tmp_path, unique, "daily", flush_size=100, errors_tolerance="all", dlq_topic=dlq)
    assert run_sink(cfg, kafka).dead_lettered == 1
    w = time_partitions(cfg).time_window_for_partition_key("2024-10-27")
    for _ in range(2):
        assert rebuild_window(cfg, w.start, w.end, kafka).rows == 2
    assert [v for _k, v, _p, _o in read_topic(kafka, dlq)] == [b"not json"]
    assert _by_folder(tmp_path, topic) == {"year=2024/month=10/day=27": [0, 2]}
