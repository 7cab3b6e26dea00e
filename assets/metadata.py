"""MaterializeResult metadata built from engine results (no secrets: URLs are never included)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from integrations.runtime.sink_runner import SinkResult
from integrations.runtime.source_runner import TopicStats


def source_metadata(stats: TopicStats, seconds: float, end_offsets: dict[int, int]) -> dict[str, Any]:
    """Metadata of a topic materialized by a source micro-batch."""
    return {
        "rows": dg.MetadataValue.int(stats.rows),
        "bytes": dg.MetadataValue.int(stats.bytes),
        "topic": dg.MetadataValue.text(stats.topic),
        "source_offset_before": dg.MetadataValue.json(stats.offset_before or {}),
        "source_offset_after": dg.MetadataValue.json(stats.offset_after or {}),
        "topic_end_offsets": dg.MetadataValue.json({str(p): e for p, e in end_offsets.items()}),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
    }


def sink_metadata(result: SinkResult, topics: str | Sequence[str], root: str,
                  target_name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Metadata of one sink asset materialized by a sink micro-batch.

    ``topics`` are the asset's source topics. ``files`` lists every file written from them, whatever
    topic folder their records were routed to. With ``target_name`` (the sink routes), ``routed_targets``
    maps each routed topic's target (``target_name(topic)``: the topic, or its table) to its rows.
    ``offsets`` is ``{partition: [start, end]}`` for one source topic, ``{topic: {...}}`` for several."""
    topics = [topics] if isinstance(topics, str) else list(topics)
    files = list(dict.fromkeys(f for t in topics for f in result.files_from(t)))
    read = result.offsets()
    offsets = read.get(topics[0], {}) if len(topics) == 1 else {t: read.get(t, {}) for t in topics}
    meta = {
        "rows": dg.MetadataValue.int(sum(result.rows_per_topic.get(t, 0) for t in topics)),
        "bytes": dg.MetadataValue.int(result.stats.bytes if len(result.rows_per_topic) <= 1 else 0),
        "files_written": dg.MetadataValue.int(len(files)),
        "files": dg.MetadataValue.json(files),
        "offsets": dg.MetadataValue.json(offsets),
        "lag": dg.MetadataValue.int(sum(result.lag_after.get(t, 0) for t in topics)),
        "tombstones_skipped": dg.MetadataValue.int(result.tombstones),
        "path": dg.MetadataValue.path(root),
        "duration_s": dg.MetadataValue.float(round(result.seconds, 3)),
    }
    if target_name is not None:
        targets: dict[str, int] = {}
        for t in topics:
            for routed, rows in result.rows_per_route.get(t, {}).items():
                name = target_name(routed)
                targets[name] = targets.get(name, 0) + rows
        meta["routed_targets"] = dg.MetadataValue.json(dict(sorted(targets.items())))
    return meta
