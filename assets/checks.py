"""Checks on what sinks write, from cheap metadata calls only.

- ``lag_within_threshold`` on every dataset and table: the records of its source topics the sink has
  not written yet (:func:`integrations.catalog.undrained`: end offsets minus the sink's stored offsets,
  else its consumer group's). On a time-partitioned dataset that is what streaming has left; backfills
  never move those offsets. It runs in every sink run, and each sink's :func:`checks_sensor` (running
  by default, every ``HEADRACE_CHECK_INTERVAL`` seconds, default 60) evaluates it between runs too, so a stopped
  connector sensor no longer leaves the last "Passed" showing for ever.
- Freshness: every dataset and table carries Dagster's time-window :func:`freshness_policy` (the
  1.13 idiom that superseded freshness checks; the daemon evaluates it when ``freshness: enabled:
  true`` is in dagster.yaml).
- ``reconciled`` on every dataset and table whose counts must agree (:mod:`integrations.reconcile`):
  rows in the source table up to its stored offset = records in the topic = rows written. It fails with
  the three numbers. The checks sensor evaluates it every ``HEADRACE_RECONCILE_INTERVAL`` seconds
  (default 600); it can also be executed from the UI.

:func:`sink_checks` gives one sink connector's checks and sensor; :func:`check_definitions` those of a
set of connectors.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from assets.keys import SinkAsset, clean, sink_assets
from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.registry import is_source
from resources.kafka import KafkaResource

DEFAULT_MAX_LAG = int(os.environ.get("HEADRACE_MAX_LAG", "1000000"))
LAG_CHECK = "lag_within_threshold"
CHECK_INTERVAL = int(os.environ.get("HEADRACE_CHECK_INTERVAL", "60"))
#: the checks sensor records an unchanged result again after this long, so its time stays recent
HEARTBEAT_SECONDS = 600
#: a recording counts for a materialization when its tick started this long after it (see ``_changed``)
SETTLE_SECONDS = 2.0
RECONCILE_CHECK = "reconciled"
RECONCILE_INTERVAL = int(os.environ.get("HEADRACE_RECONCILE_INTERVAL", "600"))


@dataclass(frozen=True)
class Pipeline:
    """One countable pipeline: a sink asset, its one source topic, and the source (and table) producing
    it (``source`` None when no source here produces the topic; ``table`` None but for a SQL source)."""

    sink: ParquetSinkConfig | TableSinkConfig
    asset: SinkAsset
    topic: str
    source: object | None
    table: str | None

    @property
    def output(self) -> str:
        """The topic folder or table the sink writes."""
        target = self.asset.targets[0] if self.asset.targets else self.topic
        return self.sink.table_for(target) if isinstance(self.sink, TableSinkConfig) else target

    @property
    def label(self) -> str:
        return "table" if isinstance(self.sink, TableSinkConfig) else "dataset"


def pipelines(configs: Sequence[object], sink: object | None = None) -> list[Pipeline]:
    """The pipelines among ``configs`` whose records can be counted (see
    :func:`integrations.reconcile.plan`); only those of ``sink`` when given."""
    from integrations.reconcile import plan

    producers: dict[str, tuple[object, str]] = {}
    cdc = [c for c in configs if getattr(c, "type", "") == "postgres_cdc"]
    for c in configs:
        if is_source(c) and getattr(c, "type", "") == "sql_source" and not getattr(c, "query", None):
            for t in c.tables or []:
                producers.setdefault(c.topic_for(t), (c, t))
    out = []
    for c in configs if sink is None else [sink]:
        if is_source(c):
            continue
        for a in sink_assets(c):
            source, table = producers.get(a.sources[0], (None, None)) if len(a.sources) == 1 else (None, None)
            if source is None and len(a.sources) == 1:  # a CDC source's topic: <topic_prefix>.<schema>.<table>
                source = next((s for s in cdc if a.sources[0].startswith(f"{s.topic_prefix}.")), None)
            if plan(source, c, a.sources) is not None:
                out.append(Pipeline(c, a, a.sources[0], source, table))
    return out


def reconcile_evaluation(p: Pipeline, settings: object) -> dg.AssetCheckEvaluation:
    """The reconciliation check of one pipeline now."""
    from integrations.reconcile import reconcile

    r = reconcile(p.source, p.table, p.sink, p.topic, p.output, settings)
    meta: dict = {"source_rows": r.source_rows if r.source_rows is not None else -1,
                  "topic_records": r.topic_records, "sink_read_records": r.sink_records,
                  f"{p.label}_rows": r.output_rows}
    if r.notes:
        meta["notes"] = dg.MetadataValue.json(r.notes)
    if r.plan.bounds:  # why a count is only a bound
        meta["bounds"] = dg.MetadataValue.json(list(r.plan.bounds))
    return dg.AssetCheckEvaluation(asset_key=p.asset.key, check_name=RECONCILE_CHECK, passed=r.passed,
                                   severity=dg.AssetCheckSeverity.ERROR, description=r.describe(p.label),
                                   metadata=meta)


def _reconcile_check(p: Pipeline) -> dg.AssetChecksDefinition:
    from integrations.reconcile import plan

    how = plan(p.source, p.sink, (p.topic,))
    src = f"{p.source.name}'s table {p.table!r}" if p.table is not None else "the topic's producer"
    rel = "≥" if how is not None and how.sink == "at_most" else "="
    bounds = f" ({'; '.join(how.bounds)})" if how is not None and how.bounds else ""

    @dg.asset_check(asset=p.asset.key, name=RECONCILE_CHECK, blocking=False,
                    description=f"Rows in {src} (up to its stored offset) = records in {p.topic!r} {rel} rows in "
                                f"the {p.label}{bounds} (cheap counts only)")
    def _check(kafka: KafkaResource) -> dg.AssetCheckResult:
        ev = reconcile_evaluation(p, kafka.settings())
        return dg.AssetCheckResult(passed=ev.passed, severity=ev.severity, description=ev.description,
                                   metadata=ev.metadata)

    return _check


def sink_checks(config: ParquetSinkConfig | TableSinkConfig, configs: Sequence[object]
                ) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """The checks of one sink connector (lag on every asset, reconciliation where comparable, the
    producing source looked up among ``configs``) and its checks sensor ``<connector>_checks_sensor``.
    Build them where keys are decided (inside a translated build), as the assets are."""
    comparable = pipelines(configs, config)
    return [*lag_checks(config), *[_reconcile_check(p) for p in comparable]], checks_sensor(config, comparable)


def check_definitions(configs: Sequence[object], lag: bool = True) -> dg.Definitions:
    """:func:`sink_checks` of every sink among ``configs``, as definitions (``lag=False``: without the
    lag checks, for definitions that already have them)."""
    checks, sensors = [], []
    for c in configs:
        if not is_source(c):
            own, sensor = sink_checks(c, configs)
            checks += [x for x in own if lag or LAG_CHECK not in {k.name for k in x.check_keys}]
            sensors.append(sensor)
    return dg.Definitions(asset_checks=checks, sensors=sensors)


def lag_evaluation(config: ParquetSinkConfig | TableSinkConfig, asset: SinkAsset, settings: object
                   ) -> dg.AssetCheckEvaluation:
    """The lag check of one sink asset now: its un-drained records against the threshold."""
    from integrations.catalog import undrained

    per_topic = undrained(config, settings, list(asset.sources))
    behind = sum(per_topic.values())
    return dg.AssetCheckEvaluation(
        asset_key=asset.key, check_name=LAG_CHECK, passed=behind <= DEFAULT_MAX_LAG,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{behind} record(s) not yet written (threshold {DEFAULT_MAX_LAG})",
        metadata={"lag": behind, "threshold": DEFAULT_MAX_LAG, "lag_per_topic": dg.MetadataValue.json(per_topic)},
    )


def _lag_check(config: ParquetSinkConfig | TableSinkConfig, asset: SinkAsset) -> dg.AssetChecksDefinition:
    topics = list(asset.sources)

    @dg.asset_check(asset=asset.key, name=LAG_CHECK,
                    description=f"Records of {', '.join(map(repr, topics))} not yet written ≤ {DEFAULT_MAX_LAG}")
    def _check(kafka: KafkaResource) -> dg.AssetCheckResult:
        ev = lag_evaluation(config, asset, kafka.settings())
        return dg.AssetCheckResult(passed=ev.passed, severity=ev.severity, description=ev.description,
                                   metadata=ev.metadata)

    return _check


def lag_checks(config: ParquetSinkConfig | TableSinkConfig) -> list[dg.AssetChecksDefinition]:
    """One check per dataset or table: records of its source topics the sink has not written ≤ the
    threshold."""
    return [_lag_check(config, a) for a in sink_assets(config)]


def freshness_policy(config: object) -> dg.FreshnessPolicy:
    """How recently a sink's dataset or table must have been written: fail after ``max(10 min, 10 ×
    poll_interval)``, warn after half that."""
    fail = max(600.0, 10 * float(getattr(config, "poll_interval", 30.0)))
    return dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(seconds=fail),
                                          warn_window=dt.timedelta(seconds=fail / 2))


def _changed(last: list | None, ev: dg.AssetCheckEvaluation, now: float, materialized: float) -> bool:
    """Record the evaluation when it changed, every HEARTBEAT_SECONDS, and after a newer materialization
    until one recording's tick started SETTLE_SECONDS after it. Dagster shows a runless evaluation for
    the latest materialization only when it was stored after it, by a creation time that SQLite storage
    keeps in whole seconds: a recording in the same second as the materialization (or before it, while
    the run was still storing it) counts as older, and the check would show no evaluation."""
    return last is None or last[0] != ev.passed or last[1] != ev.metadata["lag"].value or \
        now - last[2] >= HEARTBEAT_SECONDS or (materialized > 0 and last[2] < materialized + SETTLE_SECONDS)


def _materialized_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float:
    """When ``key`` was last materialized (0: never)."""
    event = instance.get_latest_materialization_event(key)
    return event.timestamp if event is not None else 0.0


def checks_sensor(config: ParquetSinkConfig | TableSinkConfig, comparable: Sequence[Pipeline] = ()
                  ) -> dg.SensorDefinition:
    """``<connector>_checks_sensor`` (running by default): the lag check of every asset of a sink,
    evaluated between runs from cheap offset calls and recorded as check evaluations (no run is
    launched). A result is recorded when it changes, after each new materialization of the asset, and
    again every 10 minutes. The reconciliation
    checks of ``comparable`` are evaluated every ``HEADRACE_RECONCILE_INTERVAL`` seconds."""
    targets = [(config, a) for a in sink_assets(config)]  # keys fixed at build

    @dg.sensor(name=f"{clean(config.name)}_checks_sensor", minimum_interval_seconds=CHECK_INTERVAL,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Evaluates the sinks' lag checks between runs (cheap offset calls; launches no run)")
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
        state = json.loads(context.cursor) if context.cursor else {}
        settings, now, events = kafka.settings(), time.time(), []
        for config, asset in targets:
            key = asset.key.to_user_string()
            try:
                ev = lag_evaluation(config, asset, settings)
            except Exception as e:  # noqa: BLE001 - one unreachable target must not hide the others
                context.log.warning(f"{config.name}: lag of {key} not evaluated: {str(e).splitlines()[0]}")
                continue
            materialized = _materialized_at(context.instance, asset.key)
            if _changed(state.get(key), ev, now, materialized):
                events.append(ev)
                state[key] = [ev.passed, ev.metadata["lag"].value, now, materialized]
        if now - state.get("reconciled_at", 0) >= RECONCILE_INTERVAL:
            state["reconciled_at"] = now
            for p in comparable:
                try:
                    events.append(reconcile_evaluation(p, settings))
                except Exception as e:  # noqa: BLE001
                    context.log.warning(f"{p.sink.name}: {p.asset.key.to_user_string()} not reconciled: "
                                        f"{str(e).splitlines()[0]}")
        return dg.SensorResult(asset_events=events, cursor=json.dumps(state))

    return _sensor
