"""A code location built as ``assets/definitions.py``'s ``defs`` is built with the wiring proposed for it
in issue 14: every valid connector of ``$HEADRACE_CONNECTORS_DIR``, the broken files as failing checks
(``assets.broken``), the reconciliation checks and the checks sensor (``assets.checks.check_definitions``). The GraphQL and daemon
tests of broken files, catalog metadata and checks load it in a code server."""

import dagster as dg

from assets.broken import scan_for_dagster
from assets.checks import check_definitions
from assets.definitions import build_definitions
from integrations.loading import default_connectors_dir


def _defs() -> dg.Definitions:
    configs, broken = scan_for_dagster(default_connectors_dir())
    defs = build_definitions(configs=configs)
    if not any(s.name.endswith("_checks_sensor") for s in defs.sensors):  # until _build adds sink_checks
        defs = dg.Definitions.merge(defs, check_definitions(configs, lag=False))
    return dg.Definitions.merge(defs, broken)


defs = _defs()
