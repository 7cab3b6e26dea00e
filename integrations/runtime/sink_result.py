"""What a sink micro-batch did: ranges read, rows per topic and routed topic, files, lag."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from integrations.sinks.base import SinkStats, TopicPartitionRange


@dataclass
class SinkResult:
    """The outcome of a sink micro-batch."""

    connector: str
    ranges: list[TopicPartitionRange] = field(default_factory=list)
    rows_per_topic: dict[str, int] = field(default_factory=dict)  # rows read per source topic
    rows_per_target: dict[str, int] = field(default_factory=dict)  # rows handed to the sink per routed topic
    rows_per_route: dict[str, dict[str, int]] = field(default_factory=dict)  # source topic -> routed topic -> rows
    tombstones: int = 0
    stats: SinkStats = field(default_factory=SinkStats)
    lag_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    dead_lettered: int = 0  # records sent to the dead-letter topic (errors_tolerance: all)
    failed: int = 0  # records that failed (dead-lettered, or only skipped when no dlq_topic is set)

    @property
    def rows(self) -> int:
        return sum(self.rows_per_topic.values())

    def offsets(self) -> dict[str, dict[str, list[int]]]:
        """``{topic: {partition: [start, end]}}`` read by this run."""
        out: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for r in self.ranges:
            out[r.topic][str(r.partition)] = [r.start, r.end]
        return dict(out)

    def files_from(self, topic: str) -> list[str]:
        """Files written from records of source topic ``topic``, under whatever topic they were routed to.

        Uses the source of each file a sink records (``stats.sources``); for a sink that records none,
        the files under a ``/<topic>/`` folder."""
        sources = getattr(self.stats, "sources", None)
        if sources is None:
            return [f for f in self.stats.files if f"/{topic}/" in f]
        return list(dict.fromkeys(f for f in self.stats.files if sources.get(f) == topic))
