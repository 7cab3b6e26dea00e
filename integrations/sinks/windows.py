"""Time windows of a time-partitioned Parquet sink: find their offsets, rebuild them atomically.

``ranges_for_window`` maps ``[start, end)`` to offset ranges per topic-partition with the broker's
time index (``offsets_for_times`` on the Kafka timestamps). ``rebuild_window`` re-reads those ranges,
keeps the records whose record time falls in the window, writes their files into a hidden staging
folder and then swaps each time partition's folder in one rename (local disk) or replaces its objects
(object storage). It never touches the connector's consumer-group offsets, so a Dagster backfill of
past partitions can run beside the streaming sink, and re-running a window gives identical files.

With routing transforms the records land in their routed topics' folders. The rebuild swaps the
window's time partitions of every topic folder it staged, and of every other folder holding files of
the window whose source topic (``headrace.source_topic``) is one of the connector's; the latter are
never replaced with nothing, as for the connector's own topics.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
import zoneinfo
from dataclasses import dataclass, field

import pyarrow.fs as pafs
from confluent_kafka import TopicPartition

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.kafka.cluster import KafkaSettings
from integrations.sinks.base import TopicPartitionRange, routes
from integrations.sinks.parquet import ParquetSink, file_origin, source_topic
from integrations.sinks.parquet_partitioners import DURATION_MS, list_files


def _ms(t: dt.datetime | int) -> int:
    if isinstance(t, int):
        return t
    if t.tzinfo is None:
        raise HeadraceError(f"window bound {t} needs a time zone")
    return int(t.timestamp() * 1000)


def ranges_for_window(
    kafka: KafkaSettings, topics: list[str], start_ts: dt.datetime | int, end_ts: dt.datetime | int,
) -> list[TopicPartitionRange]:
    """Offsets ``[first record at/after start, first record at/after end)`` per topic-partition.

    Bounds are aware datetimes or epoch milliseconds, compared with the Kafka message timestamps. A
    partition with no record at or after a bound uses its high watermark there.
    """
    start_ms, end_ms = _ms(start_ts), _ms(end_ts)
    consumer = kafka.consumer(group_id="headrace-window-lookup")
    out: list[TopicPartitionRange] = []
    try:
        for topic in topics:
            marks = kafka.watermarks(topic)
            parts = sorted(marks)
            if not parts:
                continue
            found = {}
            for ms, tag in ((start_ms, "s"), (end_ms, "e")):
                for tp in consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in parts], timeout=30):
                    if tp.error is not None:
                        raise HeadraceError(f"offsets_for_times {topic}/{tp.partition}: {tp.error}")
                    found[(tag, tp.partition)] = tp.offset if tp.offset >= 0 else marks[tp.partition][1]
            for p in parts:
                s, e = found[("s", p)], found[("e", p)]
                if e > s:
                    out.append(TopicPartitionRange(topic, p, s, e))
    finally:
        consumer.close()
    return out


@dataclass
class WindowResult:
    """What a window rebuild read and wrote."""

    ranges: list[TopicPartitionRange]
    rows: int = 0
    files: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _check_window(config: ParquetSinkConfig, start: dt.datetime, end: dt.datetime, sink: ParquetSink) -> list[str]:
    if config.partitioner != "time":
        raise HeadraceError("a window rebuild needs partitioner 'time'")
    if start.tzinfo is None or end.tzinfo is None:
        raise HeadraceError("window bounds need a time zone")
    step_ms = DURATION_MS[config.partition_duration]
    local = start.astimezone(zoneinfo.ZoneInfo(config.timezone))
    aligned = local.minute == 0 and local.second == 0 and local.microsecond == 0
    if not aligned or (config.partition_duration == "daily" and local.hour != 0):
        raise HeadraceError(f"window start {start} is not on a {config.partition_duration} boundary in {config.timezone}")
    if end <= start or (_ms(end) - _ms(start)) % step_ms and config.timezone == "UTC":
        raise HeadraceError(f"window [{start}, {end}) is not a whole number of {config.partition_duration} periods")
    paths = sink.partitioner.window_paths(start, end)
    steps = -(-(_ms(end) - _ms(start)) // step_ms)
    if len(paths) < steps - 1:  # DST days may merge one hour; coarser formats merge many
        raise HeadraceError(f"path_format is coarser than partition_duration {config.partition_duration!r}")
    return paths


def rebuild_window(
    config: ParquetSinkConfig, start: dt.datetime, end: dt.datetime, kafka: KafkaSettings | None = None,
    slack: dt.timedelta | None = None,
) -> WindowResult:
    """Rebuild the time partitions of ``[start, end)`` from Kafka and swap them in; group offsets untouched.

    ``slack`` (default: the connector's ``rebuild_slack``) widens the Kafka-timestamp lookup when
    record times can lag or lead the Kafka timestamps. Whatever the lookup finds, the read also covers
    the offsets of every file already in the window's folders. Only complete windows should be rebuilt
    while the streaming sink runs beside it.
    """
    from integrations.runtime.sink_runner import run_sink

    kafka = kafka or KafkaSettings.from_env()
    kafka.wait_available()
    token = uuid.uuid4().hex[:12]
    probe = ParquetSink(config)
    fs, root = probe.fs, probe.root
    staging = f"{root}/.headrace-rebuild-{token}"
    sink = ParquetSink(config, root=staging, window=(_ms(start), _ms(end)))
    paths = _check_window(config, start, end, sink)
    slack = dt.timedelta(seconds=config.rebuild_slack) if slack is None else slack
    ranges = ranges_for_window(kafka, config.topics, start - slack, end + slack)
    ranges = _cover_existing(kafka, config, fs, root, paths, ranges)
    group = f"headrace-{config.name}-rebuild-{token}"
    cfg = config.model_copy(update={"group_id": group, "max_records_per_run": None})
    try:
        res = run_sink(cfg, kafka, ranges=ranges, sink=sink)
        out = WindowResult(ranges=res.ranges, rows=sink.stats.rows)
        routing = routes(config.transforms)
        folders = list(config.topics)
        if routing:  # the routed topics' folders: those staged now, and those holding the window's files
            folders += [d for d in _folders(fs, staging) if d not in folders]
            folders += [d for d in _folders(fs, root) if d not in folders and _holds_ours(fs, root, d, paths, config)]
        for topic in folders:
            staged = {f[len(staging) + len(topic) + 2:].rsplit("/", 1)[0] for f in list_files(fs, f"{staging}/{topic}")}
            emptied = [p for p in paths if p not in staged and next(list_files(fs, f"{root}/{topic}/{p}"), None)]
            if emptied:
                # Never replace existing files with nothing: the window's records may have expired from
                # Kafka, or the read came back short. Fail loudly (a Dagster retry re-reads) instead.
                raise HeadraceError(
                    f"refusing to replace {topic}/{emptied[0]} (and {len(emptied) - 1} more) with no files: the "
                    f"rebuild read {sink.stats.rows} record(s) for [{start}, {end}) from ranges "
                    f"{[(r.partition, r.start, r.end) for r in res.ranges if r.topic == topic]}; delete the "
                    "folder by hand if it really should be empty")
            for path in sorted(set(paths) | staged):
                had = _swap(fs, probe.atomic_rename, f"{staging}/{topic}/{path}", f"{root}/{topic}/{path}", root, token)
                if had or not routing:
                    out.paths.append(f"{topic}/{path}")
            out.files += list(_files_under(fs, root, topic, set(paths) | staged))
        return out
    finally:
        _delete_dir(fs, staging)
        with contextlib.suppress(Exception):
            admin = kafka.admin()  # keep the client alive until its futures resolve
            for fut in admin.delete_consumer_groups([group], request_timeout=10).values():
                fut.result(timeout=10)


def _cover_existing(kafka: KafkaSettings, config: ParquetSinkConfig, fs: pafs.FileSystem, root: str,
                    paths: list[str], ranges: list[TopicPartitionRange]) -> list[TopicPartitionRange]:
    """Widen ``ranges`` to every offset span that the window's existing files hold.

    ``offsets_for_times`` trusts the Kafka timestamps to grow with the offsets. When they do not (a
    producer's CreateTime going back), a record of the window can sit after the first record stamped
    past the window's end. The streaming sink placed it in the window's folder all the same, so the
    rebuild reads each existing file's span ``[start, end)`` too and never replaces a record it did
    not read again. A file whose records have expired from Kafka cannot be rebuilt: that is an error.
    """
    spans = {(r.topic, r.partition): [r.start, r.end] for r in ranges}
    folders = list(config.topics) + ([d for d in _folders(fs, root) if d not in config.topics]
                                     if routes(config.transforms) else [])
    marks: dict[str, dict[int, tuple[int, int]]] = {}
    for folder in folders:
        for p in paths:
            for f in list_files(fs, f"{root}/{folder}/{p}"):
                origin = file_origin(fs, f)
                if origin is None or origin[0] not in config.topics:
                    continue
                topic, partition, first, after = origin
                low = marks.setdefault(topic, kafka.watermarks(topic)).get(partition, (0, 0))[0]
                if first < low:
                    raise HeadraceError(
                        f"refusing to rebuild {folder}/{p}: {f.rsplit('/', 1)[1]} holds records from offset {first} "
                        f"of {topic}/{partition}, which Kafka no longer has (its log starts at {low}); a rebuild "
                        "would lose them")
                span = spans.setdefault((topic, partition), [first, after])
                span[0], span[1] = min(span[0], first), max(span[1], after)
    return [TopicPartitionRange(t, n, s, e) for (t, n), (s, e) in sorted(spans.items()) if e > s]


def _folders(fs: pafs.FileSystem, base: str) -> list[str]:
    """The topic folders directly under ``base`` (hidden and ``_`` folders excluded), sorted."""
    sel = pafs.FileSelector(base, recursive=False, allow_not_found=True)
    names = (i.base_name for i in fs.get_file_info(sel) if i.type == pafs.FileType.Directory)
    return sorted(n for n in names if not n.startswith((".", "_")))


def _holds_ours(fs: pafs.FileSystem, root: str, folder: str, paths: list[str], config: ParquetSinkConfig) -> bool:
    """Whether a topic folder has files of the window written from one of the connector's source topics."""
    for p in paths:
        first = next(list_files(fs, f"{root}/{folder}/{p}"), None)
        if first is not None and source_topic(fs, first) in config.topics:
            return True
    return False


def _files_under(fs: pafs.FileSystem, root: str, topic: str, paths: set[str]) -> list[str]:
    out = []
    for p in sorted(paths):
        out += list(list_files(fs, f"{root}/{topic}/{p}"))
    return out


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        shutil.rmtree(path, ignore_errors=True)
    elif _exists(fs, path):
        fs.delete_dir(path)


def _swap(fs: pafs.FileSystem, local: bool, src: str, dst: str, root: str, token: str) -> bool:
    """Replace folder ``dst`` by ``src`` (absent ``src``: remove ``dst``); False when neither existed."""
    has_src = _exists(fs, src)
    if local:
        trash = f"{root}/.headrace-trash-{token}"
        os.makedirs(trash, exist_ok=True)
        old = f"{trash}/{uuid.uuid4().hex}"
        had_dst = os.path.isdir(dst)
        if had_dst:
            os.rename(dst, old)  # the folder is absent for the instant between the two renames
        if has_src:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.rename(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
        return has_src or had_dst
    new = {f.rsplit("/", 1)[1] for f in list_files(fs, src)} if has_src else set()
    if has_src:
        fs.create_dir(dst, recursive=True)
        for name in sorted(new):  # each object appears atomically; readers may briefly see old and new
            fs.copy_file(f"{src}/{name}", f"{dst}/{name}")
    old_files = [f for f in list_files(fs, dst) if f.rsplit("/", 1)[1] not in new]
    for f in old_files:
        fs.delete_file(f)
    return has_src or bool(old_files)
