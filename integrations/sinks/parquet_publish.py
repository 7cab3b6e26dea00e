"""Publishing the Parquet sink's files exactly once, on local disk or object storage.

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

``FilePublisher`` is a mixin of ``ParquetSink`` (``parquet``); cutting segments and adopting claims is
in ``parquet_segments``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from confluent_kafka import KafkaException

from integrations.arrow_types import parquet_writable
from integrations.config import ParquetSinkConfig
from integrations.errors import ConfigError
from integrations.runtime.errors import TransientError
from integrations.runtime.faults import fault_point
from integrations.sinks.base import SinkStats, SinkWriteError
from integrations.sinks.fencing import Committer, one_line
from integrations.sinks.parquet_files import (
    _LEGACY,
    END_OFFSET_KEY,
    FILE_RE,
    SEGMENT_END_KEY,
    SOURCE_TOPIC_KEY,
    file_name,
    file_origin,
    source_topic,
)

#: link(2) errors of filesystems without hard links (FAT, some network and FUSE mounts)
_NO_LINK = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS})


class _Reclaim(Exception):  # noqa: N818 (control flow, never leaves the sink)
    """Another run published this segment's first file with another end: adopt ``end``."""

    def __init__(self, end: int) -> None:
        super().__init__(end)
        self.end = end


@dataclass
class ParquetStats(SinkStats):
    """``SinkStats`` plus the source topic of each file written (a routed file is under another topic's folder)."""

    sources: dict[str, str] = field(default_factory=dict)  # final path -> source topic of its records


class FilePublisher:
    """Publishes one file of a segment without replacing another run's (a mixin of ``ParquetSink``).

    The annotations below are the ``ParquetSink`` attributes it uses (set in ``ParquetSink.__init__``).
    """

    config: ParquetSinkConfig
    fs: pafs.FileSystem
    root: str
    atomic_rename: bool
    window: tuple[int, int] | None
    stats: ParquetStats
    compression: str | None
    routing: bool
    tag: str
    resolve: bool
    _committer: Committer | None
    _after_write: Callable[[str], None] | None
    _made_dirs: set[str]
    _origin: dict[str, str]

    def _claim_at(self, final: str) -> int | None:
        """The segment end recorded by a published file (None: no file; ``_LEGACY``: a file without one)."""
        if self.fs.get_file_info(final).type != pafs.FileType.File:
            return None
        meta = pq.read_schema(final, filesystem=self.fs).metadata or {}
        return int(meta[SEGMENT_END_KEY]) if SEGMENT_END_KEY in meta else _LEGACY

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
                    # a newer run that took the fence deletes older temporary files (remove_leftovers)
                    # before it moves any offset: this run's vanished file is its only trace
                    self._committer.probe(source, partition)
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
            fault_point("parquet_before_publish")
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
