"""Broken connector files in the Dagster UI: the code location loads every valid connector, and each file
that is not valid becomes a visible asset whose check fails with the file's own error.

For every :class:`~integrations.loading.BrokenConnector` there is

- an asset ``broken_connector/<file stem>`` in the group ``broken_connectors``, described by the error,
  with the error, the file's absolute path and a code reference to it as metadata;
- an asset check ``connector_file_valid`` on it that re-reads the file when it runs: it fails with the
  one-line error (severity ERROR), or, once the file has been fixed, with a WARN asking to reload the
  code location (the connector is only loaded then);
- a job running those checks, and a sensor (running by default) that requests it once per distinct
  set of errors, so the check shows "Failed" without anyone clicking;
- one warning line per broken file in the log of whatever process loads the definitions (``dagster
  dev``, the code server).

``headrace validate`` is unchanged: it still fails on any broken file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from assets.keys import clean
from assets.metadata import code_reference
from integrations.errors import ConfigError
from integrations.loading import BrokenConnector, load_connector, scan_connectors

BROKEN_GROUP = "broken_connectors"
CHECK_NAME = "connector_file_valid"
BROKEN_TAG = "headrace/broken_connector"
log = logging.getLogger("headrace.assets")


def broken_key(broken: BrokenConnector) -> dg.AssetKey:
    """The asset key standing for a broken file: ``broken_connector/<file stem>``."""
    return dg.AssetKey(["broken_connector", clean(broken.path.stem)])


def _spec(broken: BrokenConnector) -> dg.AssetSpec:
    return dg.AssetSpec(
        broken_key(broken), group_name=BROKEN_GROUP, kinds={"yaml"},
        description=f"BROKEN connector file, not loaded: {broken.summary}",
        tags={BROKEN_TAG: clean(broken.name)},
        metadata={
            "error": dg.MetadataValue.text(broken.error),
            "file": dg.MetadataValue.path(str(broken.path)),
            "connector": dg.MetadataValue.text(broken.name),
            "dagster/code_references": code_reference(broken.path, _error_line(broken)),
        },
    )


def _error_line(broken: BrokenConnector) -> int:
    """The line a YAML syntax error points at (1 when the error names no line)."""
    m = re.search(r"at line (\d+)", broken.summary)
    return int(m.group(1)) if m else 1


def _check(broken: BrokenConnector) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=broken_key(broken), name=CHECK_NAME, blocking=False,
                    description=f"The connector file {broken.path.name} loads: {broken.summary}")
    def _valid() -> dg.AssetCheckResult:
        try:
            load_connector(broken.path)
        except ConfigError as e:
            now = BrokenConnector(broken.path, broken.name, str(e))
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                       description=now.summary,
                                       metadata={"error": dg.MetadataValue.text(now.error),
                                                 "file": dg.MetadataValue.path(str(broken.path))})
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"{broken.path} is valid now; reload the code location to load connector {broken.name}",
            metadata={"file": dg.MetadataValue.path(str(broken.path))})

    return _valid


def broken_defs(broken: Sequence[BrokenConnector], label: str = "connectors") -> dg.Definitions:
    """Definitions showing broken connector files (empty when there are none). ``label`` names the job
    and sensor (``<label>_broken_files_job`` / ``_sensor``) so several folders' definitions merge."""
    if not broken:
        return dg.Definitions()
    for b in broken:
        log.warning("skipped a broken connector file: %s", b.summary)
    checks = [_check(b) for b in broken]
    job = dg.define_asset_job(f"{clean(label)}_broken_files_job", selection=dg.AssetSelection.checks(*checks),
                              executor_def=dg.in_process_executor,
                              description="Evaluates the checks of the broken connector files")
    fingerprint = hashlib.sha256("\n".join(f"{b.path}\n{b.error}" for b in broken).encode()).hexdigest()[:16]

    @dg.sensor(name=f"{clean(label)}_broken_files_sensor", job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Runs the broken files' checks once per distinct set of errors, so they show as failed")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if context.cursor == fingerprint:
            return dg.SkipReason("the checks of these errors already ran")
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"broken:{fingerprint}")], cursor=fingerprint)

    return dg.Definitions(assets=[_spec(b) for b in broken], asset_checks=checks, jobs=[job], sensors=[_sensor])


def scan_for_dagster(folder: str | Path) -> tuple[list[object], dg.Definitions]:
    """The valid connectors of ``folder`` and the definitions showing its broken files."""
    configs, broken = scan_connectors(folder)
    return configs, broken_defs(broken, Path(folder).name or "connectors")
