"""A code location built as ``assets/definitions.py``'s ``defs`` is built with tolerant loading: every
valid connector of ``$HEADRACE_CONNECTORS_DIR`` plus the broken files as failing checks
(``assets.broken``). The GraphQL test of broken connector files loads it in a code server."""

import dagster as dg

from assets.broken import scan_for_dagster
from assets.definitions import build_definitions
from integrations.loading import default_connectors_dir


def _defs() -> dg.Definitions:
    configs, broken = scan_for_dagster(default_connectors_dir())
    return dg.Definitions.merge(build_definitions(configs=configs), broken)


defs = _defs()
