"""Headrace: the console script, the demo, and the Dagster integration for any ``dg`` project.

``headrace.ConnectorsComponent`` (a Dagster Component) and ``headrace.HeadraceTranslator`` /
``headrace.AssetProps`` (the translator) are imported on first use, so the CLI starts without Dagster.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ConnectorsComponent": "assets.component",
    "HeadraceTranslator": "assets.translator",
    "AssetProps": "assets.translator",
    "build_definitions": "assets.definitions",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import the Dagster integration lazily."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
