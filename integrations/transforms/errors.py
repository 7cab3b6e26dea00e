"""The error transforms raise."""

from __future__ import annotations

from integrations.errors import HeadraceError


class TransformError(HeadraceError):
    """A transform could not be applied to a batch; the message names the transform and the reason."""
