"""MaterializeResult metadata built from engine results (no secrets: URLs are never included)."""

from __future__ import annotations

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


def sink_metadata(result: SinkResult, topic: str, root: str) -> dict[str, Any]:
    """Metadata of one topic's dataset materialized by a sink micro-batch."""
    files = [f for f in result.stats.files if f"/{topic}/" in f]
    offsets = result.offsets().get(topic, {})
    return {
        "rows": dg.MetadataValue.int(result.rows_per_topic.get(topic, 0)),
        "bytes": dg.MetadataValue.int(result.stats.bytes if len(result.rows_per_topic) <= 1 else 0),
        "files_written": dg.MetadataValue.int(len(files)),
        "files": dg.MetadataValue.md("\n".join(f"- `{f}`" for f in files[:50]) or "(none)"),
        "offsets": dg.MetadataValue.json(offsets),
        "lag": dg.MetadataValue.int(result.lag_after.get(topic, 0)),
        "tombstones_skipped": dg.MetadataValue.int(result.tombstones),
        "path": dg.MetadataValue.path(root),
        "duration_s": dg.MetadataValue.float(round(result.seconds, 3)),
    }
