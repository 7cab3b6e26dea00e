"""Pieces every connector's Dagster wiring shares: run tags, the retry policy, pools, the executor,
the dead-letter check, and how a micro-batch's outcome is recorded (materialization or observation).

Connector jobs run in the run worker's own process (``in_process_executor``): a micro-batch job has
one or two steps, and a process per step cost ~5 s of start-up (imports and code load) each. Set
``HEADRACE_EXECUTOR=multiprocess`` to get Dagster's multiprocess executor back (one process per step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg

RANGES_TAG = "headrace/ranges"
CONNECTOR_TAG = "headrace/connector"
MODE_TAG = "headrace/mode"
DLQ_CHECK = "dead_letters_within_threshold"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dataclass
class ConnectorDefs:
    """What one connector contributes to the Definitions.

    ``upstream``: the topic keys a sink's assets depend on; ``chainable``: a sink whose assets a
    source's micro-batch job may include (non-partitioned, not continuous); ``sensors``: sensors the
    connector brings itself (continuous mode), used instead of the micro-batch sensor; ``topic_keys``:
    a source's topic → asset key."""

    assets: list = field(default_factory=list)
    specs: list[dg.AssetSpec] = field(default_factory=list)
    jobs: list = field(default_factory=list)
    keys: list[dg.AssetKey] = field(default_factory=list)
    sensor_job: object | None = None
    upstream: set[dg.AssetKey] = field(default_factory=set)
    chainable: bool = False
    sensors: list = field(default_factory=list)
    topic_keys: dict[str, dg.AssetKey] = field(default_factory=dict)


def pool_of(name: str) -> str:
    """The concurrency pool of a connector's steps."""
    from assets.keys import clean

    return f"headrace_{clean(name)}"


def executor() -> dg.ExecutorDefinition:
    """The executor of connector jobs: in-process unless ``HEADRACE_EXECUTOR=multiprocess``."""
    if os.environ.get("HEADRACE_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


def dlq_checks(keys: list[dg.AssetKey], config: object) -> list[dg.AssetCheckSpec]:
    """The dead-letter check of each asset (evaluated in the connector's own step)."""
    return [dg.AssetCheckSpec(DLQ_CHECK, asset=k, description=f"Records dead-lettered by a run ≤ "
                              f"{config.dlq_max_records} (dlq_max_records)") for k in keys]


def dlq_result(key: dg.AssetKey, config: object, count: int) -> dg.AssetCheckResult:
    """The dead-letter check's result for one run (or one continuous micro-batch)."""
    return dg.AssetCheckResult(
        asset_key=key, check_name=DLQ_CHECK, passed=count <= config.dlq_max_records,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"dead_lettered": count, "threshold": config.dlq_max_records, "dlq_topic": config.dlq_topic or ""},
    )


def dlq_evaluation(key: dg.AssetKey, config: object, count: int) -> dg.AssetCheckEvaluation:
    """:func:`dlq_result` as an event a long-lived op logs with ``context.log_event``."""
    r = dlq_result(key, config, count)
    return dg.AssetCheckEvaluation(asset_key=key, check_name=DLQ_CHECK, passed=r.passed, severity=r.severity,
                                   metadata=r.metadata)


def skippable(specs: list[dg.AssetSpec]) -> list[dg.AssetSpec]:
    """Specs whose outputs a step may leave out: a micro-batch that wrote nothing records no
    materialization (so nothing downstream looks out of date), only an observation."""
    return [s.replace_attributes(skippable=True) for s in specs]


def outcome(key: dg.AssetKey, rows: int, metadata: dict) -> dg.MaterializeResult | dg.AssetObservation:
    """A materialization when ``rows`` were written, else an observation with the same metadata."""
    if rows:
        return dg.MaterializeResult(asset_key=key, metadata=metadata)
    return dg.AssetObservation(asset_key=key, metadata=metadata)
