"""The ordered transform chain configured on a connector, applied per Arrow batch.

``build_chain(config)`` returns a :class:`TransformChain`. Call it with a value table for the simple
path (``chain(table) -> table``), or use ``chain.apply(batch)`` with a :class:`Batch` that carries the
key, topic, partition, offset, timestamp and headers, so that metadata transforms, predicates and
routers can use them. ``chain.needs`` tells a runner which of those the chain reads, so it can skip
collecting what nobody uses.

A transform with a predicate runs on the matching records only: the batch is split by the mask,
the transform runs on one side, and the two sides are put back in the original record order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from integrations.transforms.batch import Batch, concat_ordered, is_primitive
from integrations.transforms.config import FilterConfig, TransformConfig
from integrations.transforms.errors import TransformError
from integrations.transforms.predicates import evaluate
from integrations.transforms.smt import BUILDERS, Step

TransformFn = Callable[[pa.Table], pa.Table]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(TransformConfig)


def _needs_of_predicate(p: Any) -> set[str]:
    return {"TopicNameMatches": {"topic"}, "HasHeaderKey": {"headers"}, "RecordIsTombstone": {"tombstone"}}[p.type]


class TransformChain:
    """A connector's transforms in order; callable on a value table, or ``apply`` on a full :class:`Batch`."""

    def __init__(self, configs: Sequence[Any]) -> None:
        self.configs = list(configs)
        self.steps: list[tuple[Any, Step]] = [(c, BUILDERS[type(c)](c)) for c in self.configs]
        needs: set[str] = set()
        for cfg, step in self.steps:
            needs |= step.needs
            if cfg.predicate is not None:
                needs |= _needs_of_predicate(cfg.predicate)
            if cfg.type.endswith(".Key") or getattr(cfg, "part", None) == "key":
                needs.add("key")
        self.needs: frozenset[str] = frozenset(needs)

    def __len__(self) -> int:
        return len(self.steps)

    def __call__(self, table: pa.Table) -> pa.Table:
        """Transform a value table (no key or metadata: routers and metadata fields cannot be used)."""
        if not self.steps:
            return table
        return self.apply(Batch(value=table)).value

    def apply(self, batch: Batch) -> Batch:
        """Run every transform on the batch, in order.

        Once a batch that had records is emptied (by Filter), the later transforms are not run: as in
        Kafka Connect, a dropped record reaches no later transform (which could fail on its shape)."""
        had_rows = batch.num_rows > 0
        for i, (cfg, step) in enumerate(self.steps, start=1):
            if batch.num_rows == 0 and (had_rows or isinstance(cfg, FilterConfig)):
                if had_rows:
                    break
                continue
            try:
                batch = self._run(cfg, step, batch)
            except TransformError as e:
                raise TransformError(f"transform #{i} ({cfg.type}): {e}") from e
            except (pa.ArrowException, ValueError, TypeError, KeyError) as e:
                raise TransformError(f"transform #{i} ({cfg.type}): {type(e).__name__}: {e}") from e
        return batch

    @staticmethod
    def _run(cfg: Any, step: Step, batch: Batch) -> Batch:
        if cfg.predicate is None:
            return step.fn(batch)
        mask = evaluate(cfg.predicate, batch)
        if cfg.negate:
            mask = pc.invert(mask)
        hits = pc.sum(mask).as_py() or 0
        if hits == 0:
            return batch
        if hits == batch.num_rows:
            return step.fn(batch)
        if isinstance(cfg, FilterConfig):
            return batch.filter(pc.invert(mask))
        matched = step.fn(batch.filter(mask))
        rest = batch.filter(pc.invert(mask))
        for part in ("value", "key"):
            a, b = getattr(matched, part), getattr(rest, part)
            if a is not None and b is not None and is_primitive(a) != is_primitive(b):
                raise TransformError(
                    f"it makes the {part} primitive for the records it applies to but not for the others in the "
                    "same batch; Arrow holds one shape per batch (runners batch per topic-partition)")
        try:
            return concat_ordered(matched, rest, mask)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise TransformError(
                "the records it applies to and the others end up with incompatible columns, which one Arrow "
                f"batch cannot hold: {e}") from e


def parse_transforms(items: Iterable[Any]) -> list[Any]:
    """Validate a list of transform settings (dicts or models); raise ValueError naming the bad item."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            try:
                item = _ADAPTER.validate_python(item)
            except ValidationError as e:
                raise ValueError(f"transforms[{i}]: {e}") from None
        out.append(item)
    return out


def build_chain(config: object) -> TransformChain:
    """The connector's transforms as one chain (identity when none are configured).

    ``config`` is a connector config with a ``transforms`` list, or the list itself.
    """
    items = config if isinstance(config, (list, tuple)) else getattr(config, "transforms", None) or []
    return TransformChain(parse_transforms(items))
