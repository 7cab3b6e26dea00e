"""Kafka Connect's single message transforms, vectorised over Arrow batches.

Use :func:`build_chain` on a connector config; see ``docs/transforms.md`` for every transform.

The names below are imported on first use (PEP 562): loading a connector config imports
``integrations.transforms.config``, which must not pull in the Arrow machinery of the chain (start-up
time of ``headrace run`` and of every Dagster process).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"PRIMITIVE_COLUMN": "batch", "Batch": "batch", "is_primitive": "batch", "primitive": "batch",
          "TransformChain": "chain", "build_chain": "chain", "TransformError": "errors"}

__all__ = ["PRIMITIVE_COLUMN", "Batch", "TransformChain", "TransformError", "build_chain", "is_primitive",
           "primitive"]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module the first time it is asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
