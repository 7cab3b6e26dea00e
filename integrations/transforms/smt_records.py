"""Whole-record transforms: Filter (drop records) and user Python functions over the key or value table."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pyarrow as pa

from integrations.transforms.batch import Batch
from integrations.transforms.config import FilterConfig, PythonTransformConfig
from integrations.transforms.errors import TransformError
from integrations.transforms.smt_step import Step


def filter_records(cfg: FilterConfig) -> Step:
    """Filter: drop every record it is applied to (with a predicate: the matching ones)."""
    return Step(cfg.type, lambda b: b.filter(pa.repeat(pa.scalar(False), b.num_rows)))


def _as_table(result: object, what: str) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of the project
        pd = None
    if pd is not None and isinstance(result, pd.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False)
    raise TransformError(f"{what} must return a pyarrow Table or a pandas DataFrame, got {type(result).__name__}")


def load_function(path: str) -> Callable[[pa.Table], object]:
    """Import ``package.module.function`` (or ``package.module:function``)."""
    module, sep, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise TransformError(f"cannot import the transform function {path!r}: {e}") from None
    if not callable(fn):
        raise TransformError(f"{path!r} is not a function")
    return fn


def python_function(cfg: PythonTransformConfig) -> Step:
    """A user function over the value (or key) table; it may return a pandas DataFrame."""
    fn = load_function(cfg.function)
    what = f"the function {cfg.function!r}"

    def apply(b: Batch) -> Batch:
        table = b.value if cfg.part == "value" else b.key
        if table is None:
            return b
        out = _as_table(fn(table), what)
        if out.num_rows != table.num_rows:
            others = [b.topic, b.partition, b.offset, b.timestamp, b.tombstone, *b.headers.values(),
                      b.key if cfg.part == "value" else b.value]
            if any(o is not None for o in others):
                raise TransformError(f"{what} returned {out.num_rows} rows for {table.num_rows} records; "
                                     "it must keep one row per record (drop records with Filter and a predicate)")
        return b.replace(**{cfg.part: out})

    return Step(cfg.type, apply)
