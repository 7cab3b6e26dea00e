"""The source contract, as small as Kafka Connect's ``SourceTask.poll()``.

A source lists its partitions (a table, a file, a query) and, given a partition's last stored
offset, yields bounded Arrow batches, each with the offset to store once the batch is acknowledged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass
class SourceBatch:
    """Rows read from one source partition, and the offset that is safe to store after them."""

    partition: dict[str, Any]
    topic: str
    records: pa.Table
    offset: dict[str, Any] | None

    @property
    def num_rows(self) -> int:
        return self.records.num_rows


class Source(ABC):
    """A source connector's task: reads bounded batches from an external system."""

    @abstractmethod
    def partitions(self) -> list[dict[str, Any]]:
        """The source partitions this connector reads, e.g. ``[{"table": "orders"}]``."""

    @abstractmethod
    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        """Yield batches after ``offset`` until caught up; each batch is bounded in rows."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""
