"""The code location: every component under ``defs/`` (here, one headrace.ConnectorsComponent)."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load the defs folder, as `dg` projects do."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
