"""Split a connector into ``tasks_max`` tasks (Kafka Connect's ``tasks.max``), deterministically.

Every task computes its own share from the same inputs, with no coordinator:

- **Sinks:** topic partitions. Partition ``p`` of the ``i``-th configured topic goes to task
  ``(i + p) % tasks_max``. Adding partitions to a topic only adds new assignments: an existing
  partition never moves, so tasks started at slightly different times never both own one.
- **Sources:** tables (source partitions). The configured ``tables`` are dealt round-robin in their
  configured order; tables discovered by ``table_include`` (not in that list) go to
  ``crc32(name) % tasks_max``, so a table created while tasks run never moves another table.
  One table in ``bulk`` mode with ``tasks_max > 1`` is instead split into ``tasks_max`` key ranges
  (``key_range``), one per task: bulk stores no offsets, so any split loses nothing.

Offsets stay keyed by what they describe, never by task: a sink's per topic-partition (the consumer
group, or the target's offsets table), a source's per table (the offsets topic). Reassigning tasks
(another ``tasks_max``, new partitions) therefore only changes which task reads an offset: nothing is
lost and nothing read twice. Each task fences its own runs (``transactional.id`` with the task
number); see docs/scale.md for what a change of ``tasks_max`` while old runs still run means.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any


def check_task(task: int | None, tasks_max: int, connector: str) -> None:
    """Raise ``ValueError`` (one line) unless ``task`` is None or in ``range(tasks_max)``."""
    if task is not None and not 0 <= task < tasks_max:
        raise ValueError(f"connector {connector}: task {task} does not exist (tasks_max is {tasks_max}; "
                         f"tasks are 0..{tasks_max - 1})")


def partition_task(topics: Sequence[str], topic: str, partition: int, tasks_max: int) -> int:
    """The task that owns ``topic[partition]`` among ``tasks_max`` (``topics`` in configured order)."""
    return (topics.index(topic) + partition) % tasks_max


def sink_partitions(topics: Sequence[str], partitions: Iterable[tuple[str, int]], tasks_max: int,
                    task: int) -> set[tuple[str, int]]:
    """The ``(topic, partition)`` pairs of ``partitions`` that ``task`` owns."""
    return {(t, p) for t, p in partitions if partition_task(topics, t, p, tasks_max) == task}


def table_task(configured: Sequence[str], name: str, tasks_max: int) -> int:
    """The task that owns source partition ``name``: round-robin over ``configured``, else a stable hash."""
    if name in configured:
        return list(configured).index(name) % tasks_max
    return zlib.crc32(name.encode()) % tasks_max


def source_partitions(configured: Sequence[str], partitions: list[dict[str, Any]], tasks_max: int,
                      task: int) -> list[dict[str, Any]]:
    """The source partitions (``{"table": ...}`` / ``{"query": ...}``) that ``task`` reads."""
    def name(p: dict[str, Any]) -> str:
        return str(p.get("table") or p.get("query") or p)
    return [p for p in partitions if table_task(configured, name(p), tasks_max) == task]


def key_range(low: int, high: int, parts: int, index: int) -> tuple[int, int] | None:
    """The ``index``-th of ``parts`` contiguous integer ranges ``[lo, hi]`` covering ``[low, high]``
    (inclusive); None when that range is empty. The ranges never overlap and leave no gap."""
    count = high - low + 1
    if count <= 0:
        return None
    step, extra = divmod(count, parts)
    lo = low + index * step + min(index, extra)
    hi = lo + step + (1 if index < extra else 0) - 1
    return (lo, hi) if hi >= lo else None
