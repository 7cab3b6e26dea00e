"""Parquet dataset sink with exactly-once files.

Files are ``<root>/<topic>/partition=<n>/<topic>+<n>+<start offset, 20 digits>.parquet``. Each file
holds at most ``flush_size`` records of one Kafka partition, starting at a committed offset, so the
boundaries are deterministic: a re-run after a crash rewrites the same names with the same rows.
A file is written under a temporary name and renamed atomically; the runtime commits the group's
offsets only after the rename.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from integrations.config import ParquetSinkConfig, resolve_path
from integrations.errors import HeadraceError
from integrations.sinks.base import Sink, SinkStats


def file_name(topic: str, partition: int, start: int) -> str:
    """The deterministic file name of a chunk starting at ``start``."""
    return f"{topic}+{partition}+{start:020d}.parquet"


def safe_join(root: Path, *parts: str) -> Path:
    """Join under ``root``; refuse any part that would escape it."""
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root.resolve()):
        raise HeadraceError(f"path {'/'.join(parts)!r} escapes the dataset root {root}")
    return path


class ParquetSink(Sink):
    """Buffers up to ``flush_size`` records per topic-partition and writes them as one file."""

    def __init__(self, config: ParquetSinkConfig, after_write: callable | None = None) -> None:
        self.config = config
        self.root = resolve_path(config.path)
        self.stats = SinkStats()
        self._buf: dict[tuple[str, int], list[tuple[pa.Table, pa.Array]]] = {}
        self._count: dict[tuple[str, int], int] = {}
        self._after_write = after_write
        self.compression = None if config.compression == "none" else config.compression

    def partition_dir(self, topic: str, partition: int) -> Path:
        return safe_join(self.root, topic, f"partition={partition}")

    def put(self, topic: str, partition: int, records: pa.Table, offsets: pa.Array) -> int | None:
        key = (topic, partition)
        self._buf.setdefault(key, []).append((records, offsets))
        self._count[key] = self._count.get(key, 0) + records.num_rows
        durable = None
        while self._count[key] >= self.config.flush_size:
            durable = self._write(key, self.config.flush_size)
        return durable

    def flush(self, topic: str, partition: int) -> int | None:
        key = (topic, partition)
        if self._count.get(key, 0) == 0:
            return None
        return self._write(key, self._count[key])

    def _write(self, key: tuple[str, int], n: int) -> int:
        topic, partition = key
        chunks = self._buf[key]
        tables = [t for t, _ in chunks]
        offs = [o for _, o in chunks]
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        offsets = pa.chunked_array(offs) if len(offs) > 1 else pa.chunked_array([offs[0]])
        head, tail = table.slice(0, n), table.slice(n)
        start = offsets[0].as_py()
        next_offset = offsets[n - 1].as_py() + 1
        rest_offsets = offsets.slice(n)
        folder = self.partition_dir(topic, partition)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / file_name(topic, partition, start)
        tmp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(head, tmp, compression=self.compression)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self.stats.rows += head.num_rows
        self.stats.bytes += final.stat().st_size
        self.stats.files.append(str(final))
        if tail.num_rows:
            self._buf[key] = [(tail.combine_chunks(), rest_offsets.combine_chunks())]
        else:
            self._buf[key] = []
        self._count[key] = tail.num_rows
        if self._after_write:
            self._after_write(final)
        return next_offset
