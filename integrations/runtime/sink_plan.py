"""Plan the fixed offset ranges ``[start, end)`` a sink run reads, and measure lag (metadata calls only)."""

from __future__ import annotations

import logging

from integrations.kafka.cluster import KafkaSettings
from integrations.sinks.base import TopicPartitionRange

log = logging.getLogger("headrace.sink")


def plan_ranges(
    kafka: KafkaSettings, group_id: str, topics: list[str], max_records: int | None = None,
    requested: list[TopicPartitionRange] | None = None, stored: dict[tuple[str, int], int] | None = None,
    only: set[tuple[str, int]] | None = None,
) -> list[TopicPartitionRange]:
    """Ranges to read: from the committed offset (or the log start) to the high watermark.

    With ``requested`` ranges (from a sensor's run tags), each start is raised to the committed
    offset when a later run already committed past it, and the end is kept as requested. With
    ``only`` (a task's topic-partitions), other partitions are left out.
    """
    wanted = {(r.topic, r.partition): r for r in requested or []}
    out = []
    for topic in topics:
        committed = _committed(kafka, group_id, topic, stored)
        for p, (low, high) in kafka.watermarks(topic).items():
            if only is not None and (topic, p) not in only:
                continue
            start = max(committed.get(p) if committed.get(p) is not None else low, low)
            if committed.get(p) is not None and committed[p] < low:
                log.warning("%s[%d]: records %d..%d were deleted by retention before this group read them; "
                            "resuming at %d", topic, p, committed[p], low - 1, low)
            end = high
            if (topic, p) in wanted:
                req = wanted[(topic, p)]
                start, end = max(start, req.start), min(req.end, high)
            elif requested is not None:
                continue
            if max_records is not None:
                end = min(end, start + max_records)
            if end > start:
                out.append(TopicPartitionRange(topic, p, start, end))
    return out


def _committed(kafka: KafkaSettings, group_id: str, topic: str, stored: dict[tuple[str, int], int] | None
               ) -> dict[int, int | None]:
    """The next offset per partition of ``topic``: the sink's own stored offsets when it keeps them with
    its data (those win over the group's, and the group is not asked), else the group's."""
    if stored is not None:
        return {p: o for (t, p), o in stored.items() if t == topic}
    return kafka.committed(group_id, topic)


def lag(kafka: KafkaSettings, group_id: str, topics: list[str],
        positions: dict[tuple[str, int], int] | None = None, only: set[tuple[str, int]] | None = None
        ) -> dict[str, int]:
    """Records not yet committed by the group, per topic (cheap metadata calls only).

    With ``positions`` (the next offset per topic-partition of a sink that stores its offsets with
    its data) those are the committed offsets, and the group is not asked. With ``only`` (a task's
    topic-partitions), only those count."""
    out = {}
    for topic in topics:
        committed = _committed(kafka, group_id, topic, positions)
        total = 0
        for p, (low, high) in kafka.watermarks(topic).items():
            if only is not None and (topic, p) not in only:
                continue
            c = committed.get(p)
            total += high - max(c if c is not None else low, low)
        out[topic] = total
    return out
