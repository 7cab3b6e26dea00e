"""Kafka Connect's predicates, each a boolean mask over a batch (one value per record)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.batch import Batch
from integrations.transforms.config import HasHeaderKey, PredicateConfig, RecordIsTombstone, TopicNameMatches
from integrations.transforms.errors import TransformError


def topic_mask(batch: Batch, pattern: re.Pattern[str]) -> pa.Array:
    """True where the record's topic matches ``pattern`` entirely; the regex runs once per distinct topic."""
    if batch.topic is None:
        raise TransformError("TopicNameMatches needs the record topic, which the runner did not provide")
    dictionary = batch.topic.dictionary.to_pylist()
    hits = pa.array(np.array([t is not None and pattern.fullmatch(t) is not None for t in dictionary], dtype=bool))
    return pc.fill_null(pc.take(hits, batch.topic.indices), False)


def evaluate(predicate: PredicateConfig, batch: Batch) -> pa.Array | pa.ChunkedArray:
    """The predicate's value for every record of the batch."""
    n = batch.num_rows
    if isinstance(predicate, TopicNameMatches):
        return topic_mask(batch, _compiled(predicate.pattern))
    if isinstance(predicate, HasHeaderKey):
        col = batch.headers.get(predicate.name)
        return pa.repeat(pa.scalar(False), n) if col is None else pc.is_valid(col)
    if isinstance(predicate, RecordIsTombstone):
        return pa.repeat(pa.scalar(False), n) if batch.tombstone is None else pc.fill_null(batch.tombstone, False)
    raise TransformError(f"unknown predicate {predicate!r}")


_cache: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _cache:
        _cache[pattern] = re.compile(pattern)
    return _cache[pattern]
