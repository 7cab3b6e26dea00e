"""Kafka topic names: what is legal, and which topics a source really writes to after its transforms.

A source derives a topic from its table (``topic_prefix`` + table name) or takes it from ``topic``;
its transform chain may then rename it (RegexRouter, TimestampRouter). Kafka only ever sees the
renamed topic, so the name is checked *after* the routers, not before: a table named ``order items``
routed by ``RegexRouter`` (``regex: 'order items'``, ``replacement: order_items``) is fine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
LEGAL = "[A-Za-z0-9._-], 1 to 249 characters, not '.' or '..'"
#: the record time used to render TimestampRouter's ``${timestamp}`` when checking names statically
_SAMPLE_MS = 1_704_164_645_000  # 2024-01-02 03:04:05 UTC: every field differs, none is zero


def is_legal_topic(name: str) -> bool:
    """True when Kafka accepts ``name`` as a topic name."""
    return bool(TOPIC_RE.match(name)) and name not in (".", "..")


def _predicate_holds(cfg: Any, topic: str) -> bool | None:
    """Whether a transform applies to records of ``topic``: True, False, or None when it depends on the record."""
    pred = cfg.predicate
    if pred is None:
        return True
    if pred.type != "TopicNameMatches":
        return None  # headers, tombstones: record by record
    hit = re.fullmatch(pred.pattern, topic) is not None
    return hit != cfg.negate


def _route(cfg: Any, topic: str) -> str:
    """Run one router (the real implementation) on a one-record batch of ``topic``; return the new topic."""
    import pyarrow as pa

    from integrations.transforms.batch import TIMESTAMP_TYPE, Batch, primitive, topic_column
    from integrations.transforms.smt import BUILDERS

    batch = Batch(value=primitive(pa.array([None], pa.null())), topic=topic_column(topic, 1),
                  timestamp=pa.array([_SAMPLE_MS], pa.int64()).cast(TIMESTAMP_TYPE))
    out = BUILDERS[type(cfg)](cfg).fn(batch)
    return out.topic.dictionary[out.topic.indices[0].as_py()].as_py()


def routed_topics(topic: str, transforms: Sequence[Any]) -> set[str]:
    """The topics records of ``topic`` can end up in after ``transforms`` (the connector's configs).

    Routers are applied statically: RegexRouter exactly; TimestampRouter with one sample record time
    (so a ``timestamp_format`` whose output varies in legality, which no SimpleDateFormat pattern of
    digits and letters does, is only caught at run time by Kafka). A transform whose predicate
    depends on the record (headers, tombstones) may or may not apply, so both outcomes are kept.
    A Filter drops the topics it surely applies to."""
    topics = {topic}
    for cfg in transforms:
        kind = cfg.type
        if kind not in ("RegexRouter", "TimestampRouter", "Filter"):
            continue
        out: set[str] = set()
        for t in topics:
            holds = _predicate_holds(cfg, t)
            if kind == "Filter":
                if holds is not True:
                    out.add(t)
                continue
            if holds is not False:
                out.add(_route(cfg, t))
            if holds is not True:
                out.add(t)
        topics = out
    return topics


def illegal_routed_topics(topic: str, transforms: Sequence[Any]) -> list[str]:
    """The illegal names among :func:`routed_topics` (empty when every possible topic is legal)."""
    return sorted(t for t in routed_topics(topic, transforms) if not is_legal_topic(t))
