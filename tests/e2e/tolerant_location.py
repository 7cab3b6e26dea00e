"""A code location built as ``assets/definitions.py``'s ``defs`` is built with the wiring proposed for it
in issue 14: every valid connector of ``$HEADRACE_CONNECTORS_DIR``, the broken files as failing checks
(``assets.broken``) and the checks sensor (``assets.checks.checks_sensor``). The GraphQL and daemon
tests of broken files, catalog metadata and checks load it in a code server."""

import dagster as dg

from assets.broken import scan_for_dagster
from assets.checks import checks_sensor
from assets.definitions import build_definitions
from integrations.loading import default_connectors_dir


def _defs() -> dg.Definitions:
    configs, broken = scan_for_dagster(default_connectors_dir())
    sensor = checks_sensor(configs)
    return dg.Definitions.merge(build_definitions(configs=configs), broken,
                                dg.Definitions(sensors=[sensor] if sensor else []))


defs = _defs()
