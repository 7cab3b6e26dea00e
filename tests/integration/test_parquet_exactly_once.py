"""Parquet sink exactly-once: SIGKILL between rename and commit on local disk and on S3 (moto),
window rebuilds that replace one day atomically and idempotently, and memory with 500 open days."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from collections.abc import Iterator

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from integrations.config import ParquetSinkConfig
from integrations.sinks.windows import ranges_for_window, rebuild_window
from tests.conftest import REPO, run_cli, start_moto_s3
from tests.integration.sink_helpers import file_rows, produce

DAY = 86_400_000
D0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
T0 = int(D0.timestamp() * 1000)


def _expected_names(topic: str, per_part: int, flush: int, parts: int) -> list[str]:
    return sorted(f"partition={p}/{topic}+{p}+{s:020d}.parquet" for p in range(parts) for s in range(0, per_part, flush))


def test_sigkill_after_rename_local(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqk", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(5000)])
    conf = {"type": "parquet_sink", "name": f"pqk-{unique}", "topics": [topic], "path": str(tmp_path / "out"),
            "flush_size": 1000}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    assert run_cli("run", str(path), env={"HEADRACE_FAULT": "sink_after_write"}).returncode == -9
    assert len(file_rows(str(tmp_path / "out"), topic)) == 1
    assert kafka.committed(f"headrace-pqk-{unique}", topic) == {0: None, 1: None}
    run_cli("run", str(path), check=True)
    files = file_rows(str(tmp_path / "out"), topic)
    assert sorted(files) == _expected_names(topic, 2500, 1000, 2)
    ids = [i for rows in files.values() for i in rows]
    assert sorted(ids) == list(range(5000))
    assert not list((tmp_path / "out").rglob("*.tmp"))


@pytest.fixture
def moto_s3() -> Iterator[dict[str, str]]:
    """moto's standalone S3 server on 127.0.0.1 with one bucket; stopped afterwards."""
    yield from start_moto_s3("headrace-test")


def test_sigkill_after_write_s3(kafka, topic_factory, unique, tmp_path, moto_s3):
    topic = topic_factory("pqs3", partitions=2)
    produce(kafka, topic, [(i % 2, None, {"id": i}, None) for i in range(3000)])
    conf = {"type": "parquet_sink", "name": f"pqs3-{unique}", "topics": [topic], "path": "s3://headrace-test/data",
            "flush_size": 500, "storage_options": moto_s3}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(conf))
    assert run_cli("run", str(path), env={"HEADRACE_FAULT": "sink_after_write"}).returncode == -9
    run_cli("run", str(path), check=True)
    fs = pafs.S3FileSystem(**moto_s3)
    base = f"headrace-test/data/{topic}/"
    infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if i.type == pafs.FileType.File]
    names = sorted(i.path[len(base):] for i in infos)
    assert names == _expected_names(topic, 1500, 500, 2)
    ids = [i for info in infos for i in pq.read_table(info.path, filesystem=fs).column("id").to_pylist()]
    assert sorted(ids) == list(range(3000))


def test_window_rebuild_replaces_one_day_idempotently(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqw", partitions=2)
    recs = [(i % 2, None, {"id": i}, T0 + (i * DAY) // 40) for i in range(120)]  # 40 records a day, 3 days
    produce(kafka, topic, recs)
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"pqw-{unique}", topics=[topic], path=str(tmp_path),
                            partitioner="time", flush_size=15)
    ranges = ranges_for_window(kafka, [topic], D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2))
    assert [(r.partition, r.start, r.end) for r in ranges] == [(0, 20, 40), (1, 20, 40)]
    day = tmp_path / topic / "year=2024/month=05/day=02"
    day.mkdir(parents=True)
    pq.write_table(_stale(), day / f"{topic}+0+{25:020d}.parquet")  # a crashed run's file of offset 25
    res = rebuild_window(cfg, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2), kafka)
    assert res.rows == 40 and res.paths == [f"{topic}/year=2024/month=05/day=02"]
    first = file_rows(str(tmp_path), topic)
    assert first == {
        f"year=2024/month=05/day=02/{topic}+0+00000000000000000020.parquet": list(range(40, 70, 2)),
        f"year=2024/month=05/day=02/{topic}+0+00000000000000000035.parquet": list(range(70, 80, 2)),
        f"year=2024/month=05/day=02/{topic}+1+00000000000000000020.parquet": list(range(41, 71, 2)),
        f"year=2024/month=05/day=02/{topic}+1+00000000000000000035.parquet": list(range(71, 81, 2)),
    }
    bytes_before = {f: f.read_bytes() for f in day.iterdir()}
    rebuild_window(cfg, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2), kafka)
    assert file_rows(str(tmp_path), topic) == first
    assert {f: f.read_bytes() for f in day.iterdir()} == bytes_before
    assert kafka.committed(cfg.consumer_group, topic) == {0: None, 1: None}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".headrace")]


def _stale():
    """A stale file of a crashed run that held the record of offset 25 (a rebuild verifies it re-read it)."""
    import pyarrow as pa

    return pa.table({"id": [999]}).replace_schema_metadata({"headrace.end_offset": "26"})


def test_500_days_bounded_memory(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("pqm")
    rnd = random.Random(1)
    n = 300_000
    recs = [(0, None, {"id": i, "ts": T0 + rnd.randrange(500) * DAY + 1000, "pad": "x" * 64}, None) for i in range(n)]
    produce(kafka, topic, recs)
    conf = {"type": "parquet_sink", "name": f"pqm-{unique}", "topics": [topic], "path": str(tmp_path),
            "partitioner": "time", "timestamp_field": "ts"}
    # VmHWM: the child's own peak RSS (its ru_maxrss would also count pytest's peak at the fork, on Linux)
    script = (
        "import json, sys\n"
        "from integrations.config import ParquetSinkConfig\n"
        "from integrations.runtime.sink_runner import run_sink\n"
        "r = run_sink(ParquetSinkConfig(**json.loads(sys.argv[1])))\n"
        "print(json.dumps({'rows': r.rows, 'files': len(r.stats.files),"
        " 'rss_mb': int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", script, json.dumps(conf)], capture_output=True, text=True, cwd=REPO,
                         timeout=600, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rows"] == n
    print("500 days:", got)
    assert got["rss_mb"] < 1024, got
    days = {p.parent for p in (tmp_path / topic).rglob("*.parquet")}
    assert len(days) == 500
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / topic).rglob("*.parquet"))
    assert total == n


def test_window_rebuild_on_s3(kafka, topic_factory, unique, moto_s3):
    topic = topic_factory("pqws3")
    produce(kafka, topic, [(0, None, {"id": i}, T0 + (i * DAY) // 10) for i in range(30)])  # 10 a day, 3 days
    cfg = ParquetSinkConfig(type="parquet_sink", name=f"pqws3-{unique}", topics=[topic], path="s3://headrace-test/w",
                            partitioner="time", storage_options=moto_s3)
    fs = pafs.S3FileSystem(**moto_s3)
    day = f"headrace-test/w/{topic}/year=2024/month=05/day=03"
    fs.create_dir(day)
    with fs.open_output_stream(f"{day}/{topic}+0+{25:020d}.parquet") as f:
        pq.write_table(_stale(), f)
    for _ in range(2):
        res = rebuild_window(cfg, D0 + dt.timedelta(days=2), D0 + dt.timedelta(days=3), kafka)
        infos = [i for i in fs.get_file_info(pafs.FileSelector(f"headrace-test/w/{topic}", recursive=True))
                 if i.type == pafs.FileType.File]
        assert [i.path for i in infos] == [f"{day}/{topic}+0+00000000000000000020.parquet"]
        assert pq.read_table(infos[0].path, filesystem=fs).column("id").to_pylist() == list(range(20, 30))
        assert res.rows == 10
