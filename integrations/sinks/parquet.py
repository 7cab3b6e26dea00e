"""Parquet dataset sink with exactly-once files, on local disk or object storage.

Files are ``<root>/<topic>/<encoded partition>/<topic>+<n>+<start offset, 20 digits>.parquet``; the
encoded partition is ``partition=<n>`` (default), ``<field>=<value>`` (field) or a ``path_format`` of
the record time (time), see ``parquet_partitioners``.

Records of one Kafka partition are cut into *segments* of consecutive offsets, closed at ``flush_size``
records, ``rotate_interval`` (record time), a schema change and the end of each run's range. Closing
writes one file per encoded partition, named by the offset of its first record, then the runtime
commits the offset after the segment.

Exactly-once with crashes and overlapping runs (docs/fencing.md has the long form): a segment's first
file records the segment's end (``headrace.segment_end``) and so *claims* it. Files are published with
``link(2)``, never replacing a file. Before publishing a segment's first file the run checks, through
its committer, that the committed offset is still the one it holds; once all files are published it
commits the segment's end (fenced: a transactional producer per connector). A run whose segment's first
file already exists (a crashed or fenced run published it) adopts that claim: it publishes the missing
files (the same records), cutting its segment at the claimed end or reading on to it (``read_until``).
A window rebuild run before the connector committed writes files past the committed offset, cut
elsewhere: a streaming run replaces or deletes those that hold records of its own files
(``_existing``, ``_drop_overlapped``). So files never overlap, and every committed offset is the end of
a segment whose files all exist.

Local files are written under a temporary name (``.<name>.<fence tag>-<uuid>.tmp``) and linked into
place; on object storage a PUT is itself atomic, so the file is written to its final key after an
existence check (the one remaining window, see docs/fencing.md).

Routing (RegexRouter, TimestampRouter): a record goes to ``<root>/<routed topic>/...`` in a file named
``<routed topic>+<n>+<start offset>``; segments and offsets stay per source partition. Two source topics
routed to one topic could produce the same file name, so that is refused: within a run by remembering
each routed topic's source, across runs by the source topic a routed file records in its metadata
(``headrace.source_topic``), checked before a file would be overwritten.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from confluent_kafka import KafkaException

from integrations.arrow_types import parquet_writable
from integrations.config import TOPIC_RE, ParquetSinkConfig
from integrations.errors import ConfigError, HeadraceError
from integrations.runtime.errors import TransientError
from integrations.sinks.base import Decoded, Sink, SinkStats, SinkWriteError, routes
from integrations.sinks.fencing import Committer, fence_tag, one_line, remove_stale_tmp
from integrations.sinks.parquet_partitioners import Partitioner, open_root, record_times

SOURCE_TOPIC_KEY = b"headrace.source_topic"
END_OFFSET_KEY = b"headrace.end_offset"
SEGMENT_END_KEY = b"headrace.segment_end"
_LEGACY = -1  # a published first file without SEGMENT_END_KEY (written before segments were claimed)
#: link(2) errors of filesystems without hard links (FAT, some network and FUSE mounts)
_NO_LINK = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS})


class _Reclaim(Exception):  # noqa: N818 (control flow, never leaves the sink)
    """Another run published this segment's first file with another end: adopt ``end``."""

    def __init__(self, end: int) -> None:
        super().__init__(end)
        self.end = end
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
        self._committer: Committer | None = None
        self._claims: dict[tuple[str, int], int] = {}  # segment ends another run published, being completed
        self._read_to: dict[tuple[str, int], int] = {}  # where read_until asked the runtime to read on to
        self.tag = fence_tag(config.name, getattr(config, "task_id", None))
        self.fence = "group" if window is None else None  # a window rebuild stages into a private folder
        # time folders may hold a rebuild's files past the committed offset (``_drop_overlapped``)
        self.resolve = window is None and config.partitioner == "time"

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
        return self._close((topic, partition), final=True)

    def bind(self, committer: Committer) -> None:
        """Check the fence before publishing a segment's first file; commit each segment once published."""
        self._committer = committer

    def read_until(self, topic: str, partition: int) -> int | None:
        """The end of segments other runs published from this partition's buffered start on, when it lies
        past what is buffered: the runtime reads on to it, and this run completes those segments."""
        key = (topic, partition)
        if key in self._claims:
            return self._claims[key]
        seg = self._segs.get(key)
        if seg is None or seg.count == 0:
            return None
        first = self._head_at(key, seg.tables[0], seg.offsets[0].to_numpy(), seg.times[0] if seg.times else None,
                              seg.routes[0], 0)
        if self._claim_at(first) in (None, _LEGACY):  # the usual case: nothing published here yet
            return None
        table, offsets, times, routed = self._materialize(seg, topic)
        offs = offsets.to_numpy()
        pos = 0
        while pos < len(offs):  # a crashed run's claimed segments follow one another
            found = self._claim_at(self._head_at(key, table, offs, times, routed, pos))
            if found is None or found == _LEGACY:
                return None
            if found > seg.last_offset + 1:
                self._read_to[key] = found
                return found
            pos = int(np.searchsorted(offs, found))
        return None

    def remove_leftovers(self, before: float) -> list[str]:
        """Delete this connector's temporary files of killed runs (``fencing.remove_stale_tmp``)."""
        if not self.atomic_rename:
            return []  # object stores: files are PUT whole to their final key, nothing is staged
        bases = [self.root] if self.routing else [f"{self.root}/{t}" for t in self.config.topics]
        return remove_stale_tmp(self.fs, bases, self.tag, self.routing, before)

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
        if n and seg.count and table.schema != seg.schema and key not in self._claims:
            durable = self._close(key)  # a schema change starts new files
        flush_size = self.config.flush_size
        pos = 0
        while pos < n:
            seg = self._segs[key]
            claim = self._claims.get(key)
            if claim is not None:  # completing a segment another run published: no cut before its end
                k = int(np.searchsorted(offsets.slice(pos).to_numpy(), claim))
                self._append(seg, table, offsets, times, routed, pos, k)
                pos += k
                if pos < n:  # a record at or past the claimed end: every record of the segment is here
                    durable = self._close(key)
                continue
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
            self._append(seg, table, offsets, times, routed, pos, k)
            pos += k
            if seg.count >= flush_size or rotate:
                durable = self._close(key)
        return durable

    @staticmethod
    def _append(seg: _Segment, table: pa.Table, offsets: pa.Array, times: pa.Array | None,
                routed: pa.Array | None, pos: int, k: int) -> None:
        if not k:
            return
        seg.tables.append(table.slice(pos, k))
        seg.offsets.append(offsets.slice(pos, k))
        seg.routes.append(None if routed is None else routed.slice(pos, k))
        if times is not None:
            seg.times.append(times.slice(pos, k))
        seg.count += k
        seg.last_offset = offsets[pos + k - 1].as_py()

    def _close(self, key: tuple[str, int], final: bool = False) -> int | None:
        """Publish the buffered segment of ``key`` (or, when another run already published a segment
        starting here, adopt its end: publish the part up to it, or keep buffering until it).

        Iterative: a segment cut at an adopted end leaves its rest buffered as the next segment (with
        ``final``, closed in the next pass), so any number of published segments never nests calls.
        A head file without a claim (``_LEGACY``: from before claims, or a window rebuild's) is replaced,
        never adopted: its missing end must not be read as an end before the buffered records."""
        durable = None
        while True:
            seg = self._segs.get(key)
            if seg is None or seg.count == 0:
                return durable
            topic, _ = key
            table, offsets, times, routed = self._materialize(seg, topic)
            pending = self._claims.pop(key, None)
            if pending is not None:  # every record below the claimed end is buffered (or was filtered out)
                return self._publish(key, table, offsets, times, routed, pending)
            offs = offsets.to_numpy()
            head = self._head_at(key, table, offs, times, routed, 0)
            found = self._claim_at(head)
            while True:
                end = seg.last_offset + 1
                if found is not None and found > end:
                    if final and found <= self._read_to.get(key, -1):  # the run read on to it (``read_until``)
                        return self._publish(key, table, offsets, times, routed, found)
                    if final:
                        raise HeadraceError(
                            f"connector {self.config.name}: {head} holds a segment of {topic}[{key[1]}] up to offset "
                            f"{found}, past this run's end {end}; the runtime must read on to it (read_until)")
                    self._claims[key] = found  # keep buffering until the claimed end
                    return durable
                if found is not None and found != _LEGACY and found < end:  # publish the claimed part
                    cut = int(np.searchsorted(offs, found))
                    if cut == 0:  # a claim never ends at or before its own first offset
                        raise HeadraceError(
                            f"connector {self.config.name}: {head} claims a segment of {topic}[{key[1]}] ending at "
                            f"offset {found}, not after its first offset {int(offs[0])}; the file is damaged")
                    durable = self._publish(key, table.slice(0, cut), offsets.slice(0, cut),
                                            None if times is None else times.slice(0, cut),
                                            None if routed is None else routed.slice(0, cut), found)
                    self._keep(key, table.slice(cut), offsets.slice(cut), None if times is None else times.slice(cut),
                               None if routed is None else routed.slice(cut))
                    break  # the rest is the next segment: closed in the next pass when the run's range ends
                try:
                    return self._publish(key, table, offsets, times, routed, end, replace_head=found == _LEGACY)
                except _Reclaim as r:  # another run published this segment's first file meanwhile
                    found = r.end
            if not final:
                return durable

    def _keep(self, key: tuple[str, int], table: pa.Table, offsets: pa.Array, times: pa.Array | None,
              routed: pa.Array | None) -> None:
        """Buffer the rest of a segment cut at an adopted end as the next segment, as it is: it is a tail of
        a segment within ``flush_size`` and ``rotate_interval``, so no cut falls inside it."""
        seg = self._segs[key] = _Segment()
        if table.num_rows:
            seg.schema = table.schema
            seg.first_time = times[0].value if times is not None else None
            self._append(seg, table, offsets, times, routed, 0, table.num_rows)

    def _materialize(self, seg: _Segment, topic: str) -> tuple[pa.Table, pa.Array, pa.Array | None, pa.Array | None]:
        """The segment's records, offsets, times and routed topics as single arrays."""
        if len(seg.tables) == 1:
            table = seg.tables[0]
        else:
            mixed = any(t.schema != seg.tables[0].schema for t in seg.tables)  # only while completing a claim
            table = pa.concat_tables(seg.tables, promote_options="permissive" if mixed else "none").combine_chunks()
        offsets = pa.concat_arrays(seg.offsets) if len(seg.offsets) > 1 else seg.offsets[0]
        times = (pa.concat_arrays(seg.times) if len(seg.times) > 1 else seg.times[0]) if seg.times else None
        return table, offsets, times, self._routed(seg, topic)

    def _head_at(self, key: tuple[str, int], table: pa.Table, offsets, times: pa.Array | None,
                 routed: pa.Array | None, i: int) -> str:
        """The final path of the file a segment starting at row ``i`` would open with (named by its offset)."""
        topic, partition = key
        path = self.partitioner.paths(table.slice(i, 1), partition, None if times is None else times.slice(i, 1))
        path = path if isinstance(path, str) else path[0].as_py()
        to = topic if routed is None else routed[i].as_py()
        return f"{self.root}/{to}/{path}/{file_name(to, partition, int(offsets[i]))}"

    def _claim_at(self, final: str) -> int | None:
        """The segment end recorded by a published file (None: no file; ``_LEGACY``: a file without one)."""
        if self.fs.get_file_info(final).type != pafs.FileType.File:
            return None
        meta = pq.read_schema(final, filesystem=self.fs).metadata or {}
        return int(meta[SEGMENT_END_KEY]) if SEGMENT_END_KEY in meta else _LEGACY

    def _publish(self, key: tuple[str, int], table: pa.Table, offsets: pa.Array, times: pa.Array | None,
                 routed: pa.Array | None, seg_end: int, replace_head: bool = False) -> int:
        """Write the files of segment ``[offsets[0], seg_end)``, its first file first, then commit ``seg_end``."""
        topic, partition = key
        paths = self.partitioner.paths(table, partition, times)
        data = table.drop_columns(self.partitioner.drops) if self.partitioner.drops else table
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
        for i, (to, path, part, start, end) in enumerate(sorted(groups, key=lambda g: (g[3], g[0]))):
            self._write_file(to, partition, path, part, start, source=topic, end=end, seg_end=seg_end, head=i == 0,
                             replace=replace_head and i == 0)
        self._segs[key] = _Segment()
        if self._committer is not None:
            self._committer.commit(topic, partition, seg_end)
        return seg_end

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
                    source: str | None = None, end: int | None = None, seg_end: int | None = None,
                    head: bool = False, replace: bool = False) -> None:
        """Publish one file without replacing an existing one (see the module docstring); a write error
        becomes one line naming the connector, topic, partition, offsets, file and cause."""
        folder = f"{self.root}/{topic}/{path}"
        final = f"{folder}/{file_name(topic, partition, start)}"
        source = source or topic
        try:
            if folder not in self._made_dirs:
                self.fs.create_dir(folder, recursive=True)
                self._made_dirs.add(folder)
            if self.routing:
                self._check_origin(topic, source, final)
            table = parquet_writable(table)  # intervals as struct<months, days, nanoseconds> (arrow_types)
            meta = dict(table.schema.metadata or {})
            if source != topic:  # a routed file records its source topic
                meta[SOURCE_TOPIC_KEY] = source
            if end is not None:  # one past its last record's offset, so a window rebuild can re-read the file whole
                meta[END_OFFSET_KEY] = str(end).encode()
            if seg_end is not None and head and self.window is None:  # the segment's claim (module docstring)
                meta[SEGMENT_END_KEY] = str(seg_end).encode()
            if meta:
                table = table.replace_schema_metadata(meta)
            published = self._put_file(table, folder, final, source, partition, seg_end, head, replace, end)
            if self.resolve and end is not None:
                self._drop_overlapped(folder, final, source, partition, start, end)
        except (OSError, pa.ArrowException) as e:
            if self._committer is not None:  # a fenced run says so, not what failed under it
                with contextlib.suppress(KafkaException, TransientError):  # Kafka down too: the write error
                    self._committer.check(source, partition)
            last = "?" if end is None else end - 1
            raise SinkWriteError(f"connector {self.config.name}: writing {source}[{partition}] offsets {start}..{last} "
                                 f"to {final} failed: {type(e).__name__}: {one_line(e)}") from e
        self.stats.rows += table.num_rows
        self.stats.bytes += self.fs.get_file_info(final).size or 0
        self.stats.files.append(final)
        self.stats.sources[final] = source
        if published and self._after_write:
            self._after_write(final)

    def _put_file(self, table: pa.Table, folder: str, final: str, source: str, partition: int,
                  seg_end: int | None, head: bool, replace: bool, end: int | None = None) -> bool:
        """Write ``final``; False when an identical segment's file was already there (nothing written)."""
        if not self.atomic_rename:  # object storage: a PUT appears whole; no conditional PUT in pyarrow
            if head:
                if self._committer is not None:
                    self._committer.check(source, partition)
                found = None if replace else self._claim_at(final)
                if found is not None and found != _LEGACY:  # claimed (a file from before claims is replaced)
                    if found != seg_end:
                        raise _Reclaim(found)
                    return False
            pq.write_table(table, final, filesystem=self.fs, compression=self.compression)
            return True
        tmp = f"{folder}/.{final.rsplit('/', 1)[1]}.{self.tag}-{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=self.fs, compression=self.compression)
            if head and self._committer is not None:
                self._committer.check(source, partition)  # right before publishing: the range starts at the commit
            if replace:
                self.fs.move(tmp, final)
                return True
            try:
                os.link(tmp, final)  # never replaces: a stale run cannot overwrite a file another run published
            except FileExistsError:
                return self._existing(final, seg_end, head, tmp, end)
            except OSError as e:
                if e.errno not in _NO_LINK:
                    raise
                if self.fs.get_file_info(final).type == pafs.FileType.File:  # no hard links here: check, then rename
                    return self._existing(final, seg_end, head, tmp, end)
                self.fs.move(tmp, final)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _drop_overlapped(self, folder: str, final: str, source: str, partition: int, start: int, end: int) -> None:
        """Delete the other files of ``folder`` starting in ``[start, end)`` with records of ``source[partition]``.

        Only a window rebuild run before the connector committed these offsets writes such files: their
        records in ``[start, end)`` are in ``final`` now, later ones are this run's (or the next run's)
        to write, so none is lost. A streaming run's own files never overlap (claims are adopted whole).
        A file starting before ``start`` is never deleted: its first records may be committed ones."""
        for info in self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            m = FILE_RE.fullmatch(info.base_name)
            if m is None or info.path == final or int(m["partition"]) != partition or not start < int(m["start"]) < end:
                continue
            with contextlib.suppress(FileNotFoundError):
                if file_origin(self.fs, info.path)[0] == source:
                    self.fs.delete_file(info.path)

    def _existing(self, final: str, seg_end: int | None, head: bool, tmp: str | None = None,
                  end: int | None = None) -> bool:
        """``final`` exists. A later file of the segment with this file's end (``headrace.end_offset``) is
        the same file (a crashed or fenced run of the same claim wrote it): skip it; with another end it
        is not this segment's (a window rebuild's, cut elsewhere): replace it. The first file claims the
        segment: the same end, skip; a file from before claims existed (or a rebuild's), replace it;
        another end, ``_Reclaim`` (the caller adopts it)."""
        if not head:
            if tmp is None or end is None:
                return False
            try:
                have = file_origin(self.fs, final)
            except FileNotFoundError:
                have = None
            if have is not None and have[3] == end:
                return False
            self.fs.move(tmp, final)  # gone again (a rebuild's swap), or other records: ours go there
            return True
        found = self._claim_at(final)
        if found == _LEGACY and tmp is not None:
            self.fs.move(tmp, final)
            return True
        if found is None and tmp is not None:  # gone again (a rebuild's swap): publish after all
            os.link(tmp, final)
            return True
        if found is None or found == _LEGACY:
            return False
        if found != seg_end:
            raise _Reclaim(found)
        return False
