"""Names and metadata of the Parquet sink's files.

A file is named ``<topic>+<n>+<start offset, 20 digits>.parquet`` (``FILE_RE``, ``file_name``) and
records in its Parquet key-value metadata what its name cannot say: the source topic of a routed
file (``headrace.source_topic``), one past its last record's offset (``headrace.end_offset``) and, in
a segment's first file, the segment's end (``headrace.segment_end``, its *claim*, see
``parquet_publish``). ``source_topic`` and ``file_origin`` read them back; window rebuilds
(``windows``) and the sink itself use them.
"""
from __future__ import annotations

import re

import pyarrow.fs as pafs
import pyarrow.parquet as pq

SOURCE_TOPIC_KEY = b"headrace.source_topic"
END_OFFSET_KEY = b"headrace.end_offset"
SEGMENT_END_KEY = b"headrace.segment_end"
_LEGACY = -1  # a published first file without SEGMENT_END_KEY (written before segments were claimed)
FILE_RE = re.compile(r"(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<start>\d{20})\.parquet")


def file_name(topic: str, partition: int, start: int) -> str:
    """The deterministic file name of a chunk starting at ``start``."""
    return f"{topic}+{partition}+{start:020d}.parquet"


def source_topic(fs: pafs.FileSystem, path: str) -> str:
    """The source topic of a written file: its ``headrace.source_topic`` metadata, else its folder's topic."""
    meta = pq.read_schema(path, filesystem=fs).metadata or {}
    if SOURCE_TOPIC_KEY in meta:
        return meta[SOURCE_TOPIC_KEY].decode()
    return path.rsplit("/", 1)[1].rsplit("+", 2)[0]


def file_origin(fs: pafs.FileSystem, path: str) -> tuple[str, int, int, int] | None:
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
