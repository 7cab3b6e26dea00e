"""Time windows of a time-partitioned Parquet sink: find their offsets, rebuild them atomically.

``ranges_for_window`` maps ``[start, end)`` to offset ranges per topic-partition with the broker's
time index (``offsets_for_times`` on the Kafka timestamps). ``rebuild_window`` rewrites whole folders:

1. The window grows to the *span* of its folders (``Partitioner.window_folders``): the repeated 02:00
   of a DST fall-back night is one folder for two hours, so rebuilding either hour rewrites both.
2. The connector's committed offsets are read, then the folders' files are listed. Each file records
   its offset span (name and ``headrace.end_offset``). Files from before the committed offset are read
   again whole; files from at or after it belong to a streaming run, are not read, and are kept.
3. The ranges (lookup, widened to the re-read files, capped at the committed offsets) are read with a
   throw-away consumer group into a hidden staging folder, keeping the records of the span; the
   connector's own group is never touched. Records past the committed offsets are left to streaming.
4. The guard: before any folder is swapped, every re-read file of every folder must have each of its
   records in the staged files (counted per file within its offset span), else nothing is swapped.
5. Each folder is swapped (one rename on local disk). Whatever the live folder holds then that the
   guard did not verify (files a streaming run wrote meanwhile) is moved into the new folder. On
   object storage the new objects are copied in and only verified old objects are deleted.

So a rebuild never removes a record it does not write back, and it can run beside streaming runs of
the same sink. With routing transforms the records land in their routed topics' folders, and the
rebuild swaps the span's folders of every topic folder it staged or that holds the connector's files.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from confluent_kafka import TopicPartition

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.kafka.cluster import KafkaSettings
from integrations.sinks.base import TopicPartitionRange, routes
from integrations.sinks.parquet import (
    END_OFFSET_KEY,
    FILE_RE,
    SOURCE_TOPIC_KEY,
    ParquetSink,
)
from integrations.sinks.parquet_partitioners import list_files
from integrations.sinks.window_swap import delete_dir, swap_folder

OFFSET_COLUMN = "__headrace_rebuild_offset"  # carried through staging only, never written


def _ms(t: dt.datetime | int) -> int:
    if isinstance(t, int):
        return t
    if t.tzinfo is None:
        raise HeadraceError(f"window bound {t} needs a time zone")
    return int(t.timestamp() * 1000)  # the instant, whatever the fold: never compare aware datetimes directly


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
    """What a window rebuild read and wrote.

    ``window`` is the span rebuilt (UTC), which contains the requested window; ``carried`` are files
    written by streaming runs (at or after the committed offsets) kept as they were."""

    ranges: list[TopicPartitionRange]
    rows: int = 0
    files: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    window: tuple[dt.datetime, dt.datetime] | None = None
    carried: list[str] = field(default_factory=list)


class _StagingSink(ParquetSink):
    """The streaming sink's writer, remembering the offsets of the records of every file it writes."""

    def __init__(self, config: ParquetSinkConfig, root: str, window: tuple[int, int]) -> None:
        super().__init__(config, root=root, window=window)
        self.offsets: dict[tuple[str, str], dict[tuple[str, int], list[np.ndarray]]] = {}

    def _add(self, key, table: pa.Table, offsets: pa.Array, *rest, **kw):  # noqa: ANN001, ANN202
        if OFFSET_COLUMN in table.column_names:
            raise HeadraceError(f"records of {key[0]} have a field {OFFSET_COLUMN!r}, which a rebuild uses itself")
        return super()._add(key, table.append_column(OFFSET_COLUMN, offsets), offsets, *rest, **kw)

    def _write_file(self, topic: str, partition: int, path: str, table: pa.Table, start: int, *rest, **kw) -> None:
        offs = table.column(OFFSET_COLUMN).to_numpy()
        super()._write_file(topic, partition, path, table.drop_columns([OFFSET_COLUMN]), start, *rest, **kw)
        source = kw.get("source") or (rest[0] if rest else None) or topic
        self.offsets.setdefault((topic, path), {}).setdefault((source, partition), []).append(offs)

    def held(self, topic: str, path: str) -> dict[tuple[str, int], np.ndarray]:
        """Sorted offsets of the staged records of folder ``topic/path``, per source topic-partition."""
        return {k: np.sort(np.concatenate(v)) for k, v in self.offsets.get((topic, path), {}).items()}


@dataclass
class _Live:
    """A file in a live folder, and what the rebuild does with it: ``reread`` (its records are written
    back, verified by the guard), ``streamed`` (at or after the committed offset: kept as is) or
    ``foreign`` (not this connector's: the rebuild refuses to replace its folder)."""

    name: str
    kind: str
    origin: tuple[str, int, int, int] | None = None  # source topic, partition, start, end offset
    rows: int = 0
    note: str = ""


def _classify(fs: pafs.FileSystem, path: str, config: ParquetSinkConfig, limits: dict[tuple[str, int], int],
              unlimited: bool) -> _Live:
    """What to do with a file: re-read it when it starts before its topic-partition's limit (``unlimited``
    says what to do without one), else it is streamed; files of other writers are foreign."""
    name = path.rsplit("/", 1)[1]
    m = FILE_RE.fullmatch(name)
    if m is None:
        return _Live(name, "foreign", note="it is not named <topic>+<partition>+<20-digit offset>.parquet")
    md = pq.read_metadata(path, filesystem=fs)
    kv = md.metadata or {}
    src, part, start = kv.get(SOURCE_TOPIC_KEY, m["topic"].encode()).decode(), int(m["partition"]), int(m["start"])
    if src not in config.topics:
        return _Live(name, "foreign", note=f"it holds records of topic {src!r}, not one of {config.name}'s")
    end = int(kv[END_OFFSET_KEY]) if END_OFFSET_KEY in kv else start + 1
    note = "" if END_OFFSET_KEY in kv else " (written before files recorded headrace.end_offset; span unknown)"
    limit = limits.get((src, part))
    reread = unlimited if limit is None else start < limit
    return _Live(name, "reread" if reread else "streamed", (src, part, start, end), md.num_rows, note)


def _have(held: dict[tuple[str, int], np.ndarray], live: _Live) -> int:
    """How many staged records of the file's topic-partition lie in its offset span."""
    src, part, s, e = live.origin
    got = held.get((src, part), np.empty(0, np.int64))
    return int(np.searchsorted(got, e) - np.searchsorted(got, s))


def _check_window(config: ParquetSinkConfig, start: dt.datetime, end: dt.datetime) -> tuple[int, int]:
    """The window in epoch ms: aware bounds, compared as instants, end after start.

    Bounds need not be period boundaries in the sink's zone: the rebuild grows any window to whole
    folders anyway. Dagster's own hourly windows are not always local hours (after Lord Howe Island's
    half-hour fall-back they start at :30), and such a window rewrites the two folders it touches."""
    if config.partitioner != "time":
        raise HeadraceError("a window rebuild needs partitioner 'time'")
    if start.tzinfo is None or end.tzinfo is None:
        raise HeadraceError("window bounds need a time zone")
    s, e = _ms(start), _ms(end)
    if e <= s:
        raise HeadraceError(f"window [{start.isoformat()}, {end.isoformat()}) is empty: its end is not after its start")
    return s, e


def _committed(kafka: KafkaSettings, config: ParquetSinkConfig, sink: ParquetSink) -> dict[tuple[str, int], int]:
    """The connector's next offset per topic-partition (its stored offsets, else its group's)."""
    stored = sink.stored_offsets(list(config.topics))
    if stored is not None:
        return {k: v for k, v in stored.items() if v is not None}
    return {(t, p): o for t in config.topics for p, o in kafka.committed(config.consumer_group, t).items()
            if o is not None}


def rebuild_window(
    config: ParquetSinkConfig, start: dt.datetime, end: dt.datetime, kafka: KafkaSettings | None = None,
    slack: dt.timedelta | None = None,
) -> WindowResult:
    """Rebuild the folders of ``[start, end)`` from Kafka and swap them in; group offsets untouched.

    The window grows to the span of its folders (see the module docstring). ``slack`` (default: the
    connector's ``rebuild_slack``) widens the Kafka-timestamp lookup when record times can lag or lead
    the Kafka timestamps; the read also covers every file the folders already hold. Records past the
    connector's committed offsets are left to its streaming runs, which may run meanwhile.
    """
    from integrations.runtime.sink_runner import run_sink

    kafka = kafka or KafkaSettings.from_env()
    kafka.wait_available()
    start_ms, end_ms = _check_window(config, start, end)
    token = uuid.uuid4().hex[:12]
    probe = ParquetSink(config)
    fs, root = probe.fs, probe.root
    paths, lo, hi = probe.partitioner.window_folders(start_ms, end_ms)
    # first the committed offsets: a file listed after this that starts past them is a streaming run's
    committed = _committed(kafka, config, probe)
    routing = routes(config.transforms)
    candidates = list(config.topics) + ([d for d in _folders(fs, root) if d not in config.topics] if routing else [])
    live = {(d, p): [_classify(fs, f, config, committed, True) for f in list_files(fs, f"{root}/{d}/{p}")]
            for d in candidates for p in paths}
    slack_ms = int(((dt.timedelta(seconds=config.rebuild_slack) if slack is None else slack).total_seconds()) * 1000)
    ranges = ranges_for_window(kafka, config.topics, lo - slack_ms, hi + slack_ms)
    ranges = _cover_existing(kafka, ranges, live, committed)
    staging = f"{root}/.headrace-rebuild-{token}"
    sink = _StagingSink(config, staging, (lo, hi))
    group = f"headrace-{config.name}-rebuild-{token}"
    # dead letters went to dlq_topic when streaming read them: a rebuild skips them without sending them again
    cfg = config.model_copy(update={"group_id": group, "max_records_per_run": None, "dlq_topic": None})
    try:
        res = run_sink(cfg, kafka, ranges=ranges, sink=sink)
        span = (dt.datetime.fromtimestamp(lo / 1000, dt.UTC), dt.datetime.fromtimestamp(hi / 1000, dt.UTC))
        out = WindowResult(ranges=res.ranges, rows=sink.stats.rows, window=span)
        # from here a file is the rebuild's when it starts before the end of what was read of its partition
        read_to = {(r.topic, r.partition): r.end for r in res.ranges}
        folders = list(config.topics)
        if routing:  # the routed topics' folders: those staged now, and those holding the connector's files
            folders += [d for d in _folders(fs, staging) if d not in folders]
            folders += [d for d in candidates if d not in folders
                        and any(f.kind != "foreign" for p in paths for f in live[(d, p)])]
        plan = []
        for topic in folders:  # the guard, for every folder before any is swapped
            staged = {f[len(staging) + len(topic) + 2:].rsplit("/", 1)[0] for f in list_files(fs, f"{staging}/{topic}")}
            for path in sorted(set(paths) | staged):
                why = f"the rebuild read {sink.stats.rows} record(s) for {_span_text(lo, hi)} from ranges " + str(
                    [(r.partition, r.start, r.end) for r in res.ranges if r.topic in config.topics])
                plan.append((topic, path, _guard(fs, config, root, topic, path, sink, read_to, why)))
        clashes: list[str] = []
        for topic, path, verified in plan:

            def judge(f: str, topic: str = topic, path: str = path) -> str:
                """A file the guard did not verify: ``drop`` it when the staged folder holds each of its
                records, ``streamed`` when a streaming run wrote it past what the rebuild read, ``keep``
                when it is not ours, else ``overlap``."""
                live = _classify(fs, f, config, read_to, False)
                if live.kind != "reread":
                    return "streamed" if live.kind == "streamed" else "keep"
                return "drop" if _have(sink.held(topic, path), live) >= live.rows else "overlap"

            had, carried, clash = swap_folder(fs, probe.atomic_rename, f"{staging}/{topic}/{path}", f"{root}/{topic}/{path}",
                                        f"{root}/.headrace-trash-{token}", verified, judge, token)
            if had or not routing:
                out.paths.append(f"{topic}/{path}")
            out.carried += carried
            clashes += clash
        for topic in folders:
            out.files += [f for p in sorted(set(paths)) for f in list_files(fs, f"{root}/{topic}/{p}")]
        if clashes:
            raise HeadraceError(f"kept {clashes[0]} (and {len(clashes) - 1} more), written during the rebuild inside "
                                "the offsets it rebuilt, beside the rebuilt files: records may be there twice; rebuild "
                                f"again once {config.name} streams past the window (or check for a second writer)")
        return out
    finally:
        delete_dir(fs, staging)
        try:
            admin = kafka.admin()  # keep the client alive until its futures resolve
            for fut in admin.delete_consumer_groups([group], request_timeout=10).values():
                fut.result(timeout=10)
        except Exception:  # noqa: BLE001, S110 - a leftover throw-away group holds no data
            pass


def _span_text(lo: int, hi: int) -> str:
    return (f"[{dt.datetime.fromtimestamp(lo / 1000, dt.UTC).isoformat()}, "
            f"{dt.datetime.fromtimestamp(hi / 1000, dt.UTC).isoformat()})")


def _cover_existing(kafka: KafkaSettings, ranges: list[TopicPartitionRange], live: dict[tuple[str, str], list[_Live]],
                    committed: dict[tuple[str, int], int]) -> list[TopicPartitionRange]:
    """Widen ``ranges`` to the offset span of every file to re-read, then cap them at the committed offsets.

    ``offsets_for_times`` trusts the Kafka timestamps to grow with the offsets. When they do not (a
    producer's CreateTime going back), a record of the window can sit after the first record stamped
    past the window's end. The streaming sink placed it in the window's folder all the same, so the
    rebuild reads each file's span ``[start, end)`` too. A file whose records have expired from Kafka
    cannot be rebuilt: that is an error. Past the committed offsets, streaming runs write the records.
    """
    spans = {(r.topic, r.partition): [r.start, r.end] for r in ranges}
    marks: dict[str, dict[int, tuple[int, int]]] = {}
    for (folder, p), files in live.items():
        for f in files:
            if f.kind != "reread":
                continue
            topic, partition, first, after = f.origin
            low = marks.setdefault(topic, kafka.watermarks(topic)).get(partition, (0, 0))[0]
            if first < low:
                raise HeadraceError(
                    f"refusing to rebuild {folder}/{p}: {f.name} holds records from offset {first} of "
                    f"{topic}/{partition}, which Kafka no longer has (its log starts at {low}); a rebuild would "
                    "lose them")
            span = spans.setdefault((topic, partition), [first, after])
            span[0], span[1] = min(span[0], first), max(span[1], after)
    out = []
    for (t, n), (s, e) in sorted(spans.items()):
        e = min(e, committed.get((t, n), e))
        if e > s:
            out.append(TopicPartitionRange(t, n, s, e))
    return out


def _guard(fs: pafs.FileSystem, config: ParquetSinkConfig, root: str, topic: str, path: str, sink: _StagingSink,
           read_to: dict[tuple[str, int], int], why: str) -> set[str]:
    """The names of the live folder's files whose records are all in the staged folder; refuses (nothing
    swapped yet) when a file's records are not, or it is not the connector's. Files starting at or after
    the end of what the rebuild read (streaming runs' files) are left out: the swap keeps them."""
    held = sink.held(topic, path)
    verified: set[str] = set()
    for f in list_files(fs, f"{root}/{topic}/{path}"):
        live = _classify(fs, f, config, read_to, False)
        if live.kind == "foreign":
            raise HeadraceError(f"refusing to replace {topic}/{path}: {live.name} was not written by {config.name} "
                                f"({live.note}), so a rebuild cannot write its records back; move it out of the folder")
        if live.kind == "streamed":
            continue
        src, part, s, e = live.origin
        have = _have(held, live)
        if have < live.rows:
            if not held:  # e.g. the window's records left Kafka, or the read came back short
                raise HeadraceError(f"refusing to replace {topic}/{path} with no files: {why}; delete the folder by "
                                    "hand if it really should be empty")
            raise HeadraceError(
                f"refusing to replace {topic}/{path}: {live.name} holds {live.rows} record(s) of {src}/{part} in "
                f"offsets [{s}, {e}){live.note}, the rebuilt files only {have} of them; nothing was replaced (did "
                "a transform, converter or value_schema change drop records?)")
        verified.add(live.name)
    return verified


def _folders(fs: pafs.FileSystem, base: str) -> list[str]:
    """The topic folders directly under ``base`` (hidden and ``_`` folders excluded), sorted."""
    sel = pafs.FileSelector(base, recursive=False, allow_not_found=True)
    names = (i.base_name for i in fs.get_file_info(sel) if i.type == pafs.FileType.Directory)
    return sorted(n for n in names if not n.startswith((".", "_")))
