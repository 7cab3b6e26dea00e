"""Topic routers: RegexRouter and TimestampRouter.

Both work on the topic column's dictionary, so a regex runs once per distinct topic name rather
than once per record.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.batch import Batch
from integrations.transforms.config import RegexRouterConfig, TimestampRouterConfig
from integrations.transforms.errors import TransformError
from integrations.transforms.smt_step import Step
from integrations.transforms.timefmt import format_timestamps


def _java_replacement(repl: str) -> str:
    """A java.util.regex replacement (``$1``, ``\\$``) as a Python ``re`` replacement."""
    out, i = [], 0
    while i < len(repl):
        ch = repl[i]
        if ch == "\\" and i + 1 < len(repl):
            out.append(repl[i + 1].replace("\\", "\\\\"))
            i += 2
        elif ch == "$" and i + 1 < len(repl) and repl[i + 1].isdigit():
            j = i + 1
            while j < len(repl) and repl[j].isdigit():
                j += 1
            out.append(f"\\g<{repl[i + 1:j]}>")
            i = j
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


def _remap_topics(b: Batch, fn: Callable[[str], str]) -> Batch:
    """Apply ``fn`` to each distinct topic name (not to each record) and re-encode the column."""
    if b.topic is None:
        raise TransformError("routing needs the record topic, which the runner did not provide")
    old = b.topic.dictionary.to_pylist()
    new = [t if t is None else fn(t) for t in old]
    uniq = list(dict.fromkeys(new))
    remap = pa.array(np.array([uniq.index(t) for t in new], dtype=np.int32))
    indices = pc.take(remap, b.topic.indices)
    return b.replace(topic=pa.DictionaryArray.from_arrays(indices, pa.array(uniq, pa.string())))


def regex_router(cfg: RegexRouterConfig) -> Step:
    """RegexRouter: where the whole topic matches ``regex``, replace it (``$n`` = group n)."""
    pattern = re.compile(cfg.regex)
    repl = _java_replacement(cfg.replacement)

    def route(topic: str) -> str:
        return pattern.sub(repl, topic, count=1) if pattern.fullmatch(topic) else topic

    return Step(cfg.type, lambda b: _remap_topics(b, route), frozenset({"topic"}))


def timestamp_router(cfg: TimestampRouterConfig) -> Step:
    """TimestampRouter: topic from ``topic_format`` with ``${topic}`` and ``${timestamp}`` (the record time)."""
    pieces = re.split(r"(\$\{topic\}|\$\{timestamp\})", cfg.topic_format)

    def apply(b: Batch) -> Batch:
        if b.topic is None:
            raise TransformError("TimestampRouter needs the record topic, which the runner did not provide")
        if b.timestamp is None or b.timestamp.null_count:
            raise TransformError("TimestampRouter needs a timestamp on every record")
        if b.num_rows == 0:
            return b
        ts_text = format_timestamps(b.timestamp, cfg.timestamp_format) if "${timestamp}" in pieces else None
        topic_text = b.topic.cast(pa.string())
        parts = []
        for p in pieces:
            if p == "${topic}":
                parts.append(topic_text)
            elif p == "${timestamp}":
                parts.append(ts_text)
            elif p:
                parts.append(pa.scalar(p))
        if not parts:
            raise TransformError("topic_format produces an empty topic name")
        names = parts[0] if len(parts) == 1 and not isinstance(parts[0], pa.Scalar) else \
            pc.binary_join_element_wise(*parts, "")
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        if isinstance(names, pa.Scalar):
            names = pa.repeat(names, b.num_rows)
        return b.replace(topic=pc.dictionary_encode(names))

    return Step(cfg.type, apply, frozenset({"topic", "timestamp"}))
