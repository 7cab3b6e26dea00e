"""Segments of the Parquet sink: buffering each Kafka partition's records, cutting and publishing them.

Records of one Kafka partition are cut into *segments* of consecutive offsets, closed at ``flush_size``
records, ``rotate_interval`` (record time), a schema change and the end of each run's range. Closing
writes one file per encoded partition, named by the offset of its first record, then the runtime
commits the offset after the segment.

When another run already published a segment starting where this run's buffer starts (its first file
*claims* the segment's end, see ``parquet_publish``), this run adopts that end instead of its own
cuts: it publishes the part up to it, or keeps buffering until it (``ParquetSink.read_until`` has the
runtime read on to it).

``SegmentBuffer`` is a mixin of ``ParquetSink`` (``parquet``) on top of ``FilePublisher``, which
publishes each file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.config import TOPIC_RE
from integrations.errors import HeadraceError
from integrations.sinks.parquet_files import _LEGACY, file_name
from integrations.sinks.parquet_partitioners import Partitioner
from integrations.sinks.parquet_publish import FilePublisher, _Reclaim


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


class SegmentBuffer(FilePublisher):
    """Buffers, cuts and publishes segments per Kafka partition (a mixin of ``ParquetSink``).

    The annotations below are the ``ParquetSink`` attributes it uses besides ``FilePublisher``'s (set in
    ``ParquetSink.__init__``).
    """

    partitioner: Partitioner
    interval_ms: int | None
    _segs: dict[tuple[str, int], _Segment]
    _claims: dict[tuple[str, int], int]
    _read_to: dict[tuple[str, int], int]

    def _add(self, key: tuple[str, int], table: pa.Table, offsets: pa.Array, times: pa.Array | None,
             routed: pa.Array | None = None) -> int | None:
        """Buffer records of ``key``, publishing each segment where it is cut; the next durable offset, if any."""
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
        """Append rows ``[pos, pos + k)`` to the segment."""
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

    def _head_at(self, key: tuple[str, int], table: pa.Table, offsets: np.ndarray, times: pa.Array | None,
                 routed: pa.Array | None, i: int) -> str:
        """The final path of the file a segment starting at row ``i`` would open with (named by its offset)."""
        topic, partition = key
        path = self.partitioner.paths(table.slice(i, 1), partition, None if times is None else times.slice(i, 1))
        path = path if isinstance(path, str) else path[0].as_py()
        to = topic if routed is None else routed[i].as_py()
        return f"{self.root}/{to}/{path}/{file_name(to, partition, int(offsets[i]))}"

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
