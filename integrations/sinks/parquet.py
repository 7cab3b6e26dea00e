"""Parquet dataset sink with exactly-once files, on local disk or object storage.

Files are ``<root>/<topic>/<encoded partition>/<topic>+<n>+<start offset, 20 digits>.parquet``; the
encoded partition is ``partition=<n>`` (default), ``<field>=<value>`` (field) or a ``path_format`` of
the record time (time), see ``parquet_partitioners``.

Records of one Kafka partition are cut into *segments* of consecutive offsets. A segment closes when it
holds ``flush_size`` records, when a record is ``rotate_interval`` (record time) past the segment's
first record, when the batch schema changes, and at the end of each run's planned range (so idle
partitions never keep open files). Closing writes one file per encoded partition in the segment,
named by the offset of its first record, then the runtime commits the offset after the segment.

Why this is exactly-once whatever the segment boundaries of a crashed run were: a file starts at the
first record of its encoded partition within a segment, and every segment starts at or after the
committed offset. A re-run starts at the committed offset ``c``; the segment that re-covers a stale
file's first offset ``f`` starts in ``[c, f]``, where no earlier record of that encoded partition
exists, so ``f`` starts a file again and the stale file is overwritten, never duplicated.

Local files are written under a temporary name and renamed atomically; on object storage a PUT is
itself atomic (the object appears only when complete), so the file is written to its final key.

Routing (RegexRouter, TimestampRouter): a record goes to ``<root>/<routed topic>/...`` in a file named
``<routed topic>+<n>+<start offset>``. The routed topic is one more part of the encoded partition, so
the argument above holds unchanged; segments, and the offsets returned, stay per source partition.
Two source topics routed to one topic could produce the same file name, so that is refused: within a
run by remembering each routed topic's source, across runs by the source topic a routed file records
in its metadata (``headrace.source_topic``), checked before a file would be overwritten.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from integrations.config import TOPIC_RE, ParquetSinkConfig
from integrations.errors import ConfigError, HeadraceError
from integrations.sinks.base import Decoded, Sink, SinkStats, routes
from integrations.sinks.parquet_partitioners import Partitioner, open_root, record_times

SOURCE_TOPIC_KEY = b"headrace.source_topic"
END_OFFSET_KEY = b"headrace.end_offset"
FILE_RE = re.compile(r"(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<start>\d{20})\.parquet")


def file_name(topic: str, partition: int, start: int) -> str:
    """The deterministic file name of a chunk starting at ``start``."""
    return f"{topic}+{partition}+{start:020d}.parquet"


def source_topic(fs, path: str) -> str:
    """The source topic of a written file: its ``headrace.source_topic`` metadata, else its folder's topic."""
    meta = pq.read_schema(path, filesystem=fs).metadata or {}
    if SOURCE_TOPIC_KEY in meta:
        return meta[SOURCE_TOPIC_KEY].decode()
    return path.rsplit("/", 1)[1].rsplit("+", 2)[0]


def file_origin(fs, path: str) -> tuple[str, int, int, int] | None:
    """``(source topic, partition, start offset, end offset)`` of a file this sink wrote, else None.

    The end (one past the file's last record) is its ``headrace.end_offset`` metadata; a file written
    before that key existed reports ``start + 1``. A file not named ``<topic>+<n>+<offset>`` is None.
    """
    m = FILE_RE.fullmatch(path.rsplit("/", 1)[1])
    if m is None:
        return None
    meta = pq.read_schema(path, filesystem=fs).metadata or {}
    start = int(m["start"])
    end = int(meta[END_OFFSET_KEY]) if END_OFFSET_KEY in meta else start + 1
    return meta.get(SOURCE_TOPIC_KEY, m["topic"].encode()).decode(), int(m["partition"]), start, end


@dataclass
class ParquetStats(SinkStats):
    """``SinkStats`` plus the source topic of each file written (a routed file is under another topic's folder)."""

    sources: dict[str, str] = field(default_factory=dict)  # final path -> source topic of its records


@dataclass
class _Segment:
    """Buffered records of one Kafka partition, consecutive in offset order."""

    tables: list[pa.Table] = field(default_factory=list)
    offsets: list[pa.Array] = field(default_factory=list)
    times: list[pa.Array] = field(default_factory=list)
    routes: list[pa.Array | None] = field(default_factory=list)  # routed topics per table (None: not routed)
    count: int = 0
    first_time: int | None = None
    schema: pa.Schema | None = None
    last_offset: int = -1


class ParquetSink(Sink):
    """Cuts each Kafka partition into segments and writes one file per encoded partition per segment."""

    def __init__(
        self, config: ParquetSinkConfig, after_write: Callable[[str], None] | None = None, *,
        root: str | None = None, window: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        self.fs, self.root, self.atomic_rename = open_root(config)
        if root is not None:
            self.root = root
        self.window = window
        self.stats = ParquetStats()
        self.partitioner = Partitioner(config)
        self.compression = None if config.compression == "none" else config.compression
        self.needs_time = config.partitioner == "time" or config.rotate_interval is not None or window is not None
        self.wants_messages = self.needs_time and config.timestamp_field is None
        self.interval_ms = int(config.rotate_interval * 1000) if config.rotate_interval else None
        self._segs: dict[tuple[str, int], _Segment] = {}
        self._after_write = after_write
        self._made_dirs: set[str] = set()
        self.routing = routes(config.transforms)
        self._origin: dict[str, str] = {}  # folder topic -> the source topic whose records it received

    # -- the Sink contract -------------------------------------------------------------------------

    def put(self, topic: str, partition: int, records: pa.Table, offsets: pa.Array,
            routed: pa.Array | None = None) -> int | None:
        times = record_times(records, self.config.timestamp_field, None) if self.needs_time else None
        return self._add((topic, partition), records, offsets, times, routed)

    def put_messages(
        self, topic: str, partition: int, messages: list, decode: Callable[[list], Decoded]
    ) -> tuple[int, int, int | None]:
        """Convert and transform the messages; the survivors are placed by their Kafka timestamps."""
        if not messages:
            return 0, 0, None
        d = decode(messages)
        dead = sum(1 for m in messages if m.value() is None)
        if d.rows is None or not d.rows.num_rows:
            return 0, dead, None
        live = d.live
        kept = messages if len(live) == len(messages) else [messages[i] for i in live]
        if d.rows.num_rows != len(kept):
            raise HeadraceError("the transformed rows do not match the kept messages")
        offsets = pa.array([m.offset() for m in kept], pa.int64())
        stamps = pa.array([m.timestamp()[1] for m in kept], pa.int64())
        times = record_times(d.rows, self.config.timestamp_field, stamps)
        return d.rows.num_rows, dead, self._add((topic, partition), d.rows, offsets, times, d.live_topics)

    def flush(self, topic: str, partition: int) -> int | None:
        return self._close((topic, partition))

    # -- segments ------------------------------------------------------------------------------------

    def _add(self, key: tuple[str, int], table: pa.Table, offsets: pa.Array, times: pa.Array | None,
             routed: pa.Array | None = None) -> int | None:
        if self.window is not None and table.num_rows:
            ms = times.cast(pa.int64())
            keep = pc.and_(pc.greater_equal(ms, self.window[0]), pc.less(ms, self.window[1]))
            table, offsets, times = table.filter(keep), offsets.filter(keep), times.filter(keep)
            routed = None if routed is None else routed.filter(keep)
        n = table.num_rows
        durable = None
        seg = self._segs.setdefault(key, _Segment())
        if n and seg.count and table.schema != seg.schema:
            durable = self._close(key)  # a schema change starts new files
        flush_size = self.config.flush_size
        pos = 0
        while pos < n:
            seg = self._segs[key]
            if seg.count == 0:
                seg.schema = table.schema
                seg.first_time = times[pos].value if times is not None else None
            k = min(n - pos, flush_size - seg.count)
            rotate = False
            if self.interval_ms is not None:
                ms = times.slice(pos, k).cast(pa.int64())
                over = pc.greater_equal(pc.subtract(ms, seg.first_time), self.interval_ms)
                idx = pc.index(over, True).as_py()
                if idx >= 0:
                    k, rotate = idx, True
            if k:
                seg.tables.append(table.slice(pos, k))
                seg.offsets.append(offsets.slice(pos, k))
                seg.routes.append(None if routed is None else routed.slice(pos, k))
                if times is not None:
                    seg.times.append(times.slice(pos, k))
                seg.count += k
                seg.last_offset = offsets[pos + k - 1].as_py()
                pos += k
            if seg.count >= flush_size or rotate:
                durable = self._close(key)
        return durable

    def _close(self, key: tuple[str, int]) -> int | None:
        seg = self._segs.get(key)
        if seg is None or seg.count == 0:
            return None
        topic, partition = key
        table = pa.concat_tables(seg.tables).combine_chunks() if len(seg.tables) > 1 else seg.tables[0]
        offsets = pa.concat_arrays(seg.offsets) if len(seg.offsets) > 1 else seg.offsets[0]
        times = (pa.concat_arrays(seg.times) if len(seg.times) > 1 else seg.times[0]) if seg.times else None
        paths = self.partitioner.paths(table, partition, times)
        data = table.drop_columns(self.partitioner.drops) if self.partitioner.drops else table
        routed = self._routed(seg, topic)
        if routed is not None:  # the routed topic is one more level of the encoded partition
            paths = pc.binary_join_element_wise(routed, paths, "\x00")
        if isinstance(paths, str):
            groups = [(topic, paths, data, offsets[0].as_py(), offsets[-1].as_py() + 1)]
        else:
            enc = paths.dictionary_encode()
            idx = enc.indices.to_numpy(zero_copy_only=False)
            order = np.argsort(idx, kind="stable")
            counts = np.bincount(idx, minlength=len(enc.dictionary))
            bounds = np.concatenate([[0], np.cumsum(counts)])
            groups = []
            dictionary = enc.dictionary.to_pylist()
            for d, path in enumerate(dictionary):
                rows = order[bounds[d]:bounds[d + 1]]
                if len(rows):
                    to, _, path = path.partition("\x00") if routed is not None else (topic, "", path)
                    groups.append((to, path, data.take(pa.array(rows)), offsets[int(rows[0])].as_py(),
                                   offsets[int(rows[-1])].as_py() + 1))
        for to, path, part, start, end in sorted(groups, key=lambda g: (g[3], g[0])):
            self._write_file(to, partition, path, part, start, source=topic, end=end)
        self._segs[key] = _Segment()
        return seg.last_offset + 1

    def _routed(self, seg: _Segment, topic: str) -> pa.Array | None:
        """The routed topic of every record of a segment, or None when none was routed; names checked."""
        if all(r is None for r in seg.routes):
            return None
        routed = pa.concat_arrays([pa.array([topic] * len(t), pa.string()) if r is None else r
                                   for r, t in zip(seg.routes, seg.tables, strict=True)])
        for name in pc.unique(routed).to_pylist():
            if not TOPIC_RE.match(name) or name in (".", ".."):
                raise HeadraceError(f"records of {topic} were routed to {name!r}, which is not a legal topic name "
                                    "([A-Za-z0-9._-], not '.' or '..'); the Parquet sink uses it as a folder name")
        return routed

    def _check_origin(self, topic: str, source: str, final: str) -> None:
        """Refuse a file of ``source``'s records in ``topic``'s folder where another source topic's files
        are, since equal names (``<topic>+<partition>+<offset>``) would overwrite each other."""
        seen = self._origin.setdefault(topic, source)
        other = seen if seen != source else None
        if other is None and self.fs.get_file_info(final).type == pafs.FileType.File:
            other = source_topic(self.fs, final)
            other = None if other == source else other
        if other is not None:
            raise ConfigError(
                f"connector {self.config.name}: records of {source!r} and {other!r} both go to topic {topic!r}; "
                "the Parquet sink names files <topic>+<partition>+<start offset>, so their files would overwrite "
                "each other. Route different source topics to different topics.")

    def _write_file(self, topic: str, partition: int, path: str, table: pa.Table, start: int,
                    source: str | None = None, end: int | None = None) -> None:
        folder = f"{self.root}/{topic}/{path}"
        if folder not in self._made_dirs:
            self.fs.create_dir(folder, recursive=True)
            self._made_dirs.add(folder)
        final = f"{folder}/{file_name(topic, partition, start)}"
        source = source or topic
        if self.routing:
            self._check_origin(topic, source, final)
        meta = dict(table.schema.metadata or {})
        if source != topic:  # a routed file records its source topic
            meta[SOURCE_TOPIC_KEY] = source
        if end is not None:  # one past its last record's offset, so a window rebuild can re-read the file whole
            meta[END_OFFSET_KEY] = str(end).encode()
        if meta:
            table = table.replace_schema_metadata(meta)
        if self.atomic_rename:
            tmp = f"{folder}/.{file_name(topic, partition, start)}.{uuid.uuid4().hex}.tmp"
            try:
                pq.write_table(table, tmp, filesystem=self.fs, compression=self.compression)
                self.fs.move(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)
                raise
        else:
            pq.write_table(table, final, filesystem=self.fs, compression=self.compression)
        self.stats.rows += table.num_rows
        self.stats.bytes += self.fs.get_file_info(final).size or 0
        self.stats.files.append(final)
        self.stats.sources[final] = source
        if self._after_write:
            self._after_write(final)
