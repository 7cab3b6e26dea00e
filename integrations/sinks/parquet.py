"""Parquet dataset sink with exactly-once files, on local disk or object storage.

Files are ``<root>/<topic>/<encoded partition>/<topic>+<n>+<start offset, 20 digits>.parquet``; the
encoded partition is ``partition=<n>`` (default), ``<field>=<value>`` (field) or a ``path_format`` of
the record time (time), see ``parquet_partitioners``.

Records of one Kafka partition are cut into *segments* of consecutive offsets; closing one writes one
file per encoded partition, then the runtime commits the offset after the segment. A segment's first
file claims the segment, so crashed, fenced and overlapping runs never publish overlapping files.

This module holds ``ParquetSink`` and its Sink contract; the rest is split by role, and every name of
these modules is importable from here too:

- ``parquet_files``: file names and the metadata keys a file records (``FILE_RE``, ``file_name``,
  ``source_topic``, ``file_origin``);
- ``parquet_segments``: buffering records into segments, cutting them, adopting another run's claim,
  and publishing a segment's files (``SegmentBuffer``);
- ``parquet_publish``: publishing one file without replacing another run's, and refusing two source
  topics routed to one topic (``FilePublisher``); its docstring has the exactly-once rules (the long
  form is docs/fencing.md).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from integrations.config import ParquetSinkConfig
from integrations.errors import HeadraceError
from integrations.sinks.base import Decoded, Sink, routes
from integrations.sinks.fencing import Committer, fence_tag, remove_stale_tmp

# ``_X as _X``: private names re-exported, importable from here as before the split
from integrations.sinks.parquet_files import _LEGACY as _LEGACY
from integrations.sinks.parquet_files import (
    END_OFFSET_KEY,
    FILE_RE,
    SEGMENT_END_KEY,
    SOURCE_TOPIC_KEY,
    file_name,
    file_origin,
    source_topic,
)
from integrations.sinks.parquet_partitioners import Partitioner, open_root, record_times
from integrations.sinks.parquet_publish import _NO_LINK as _NO_LINK
from integrations.sinks.parquet_publish import FilePublisher, ParquetStats
from integrations.sinks.parquet_publish import _Reclaim as _Reclaim
from integrations.sinks.parquet_segments import SegmentBuffer, _Segment

__all__ = [
    "END_OFFSET_KEY",
    "FILE_RE",
    "SEGMENT_END_KEY",
    "SOURCE_TOPIC_KEY",
    "FilePublisher",
    "ParquetSink",
    "ParquetStats",
    "SegmentBuffer",
    "file_name",
    "file_origin",
    "source_topic",
]


class ParquetSink(SegmentBuffer, Sink):
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
        """Buffer records, publishing each segment as it closes; the next durable offset, if any."""
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
        """Publish the partition's buffered segments; the next durable offset, if any."""
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

