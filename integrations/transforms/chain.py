"""The ordered transform chain configured on a connector, applied per Arrow batch."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

TransformFn = Callable[[pa.Table], pa.Table]


def build_chain(config: object) -> TransformFn:
    """The connector's transforms as one function over a batch (identity when none are configured)."""
    return lambda table: table
