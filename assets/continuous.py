"""Continuous mode in Dagster: a connector with ``continuous`` runs as one long-lived run.

The job ``<connector>_continuous_job`` has one op that runs the engine's loop
(``integrations.runtime.continuous``) and, after every micro-batch that moved records, logs one
``AssetMaterialization`` per asset written (the same metadata as a micro-batch run's; time partitions
for a time-partitioned Parquet sink) and reports the dead-letter check. The run ends cleanly at
``max_run_seconds``, or at a batch boundary when it is terminated (``assets.stop_bridge``); its tag
``dagster/max_runtime`` lets run monitoring fail it if it ever hangs past that. Run retries and the
connector's one-run-at-a-time limit (``headrace/connector``) apply as to any run.

The connector's sensor (``<connector>_sensor``, so pause/resume work as for any connector) keeps one
such run going: it requests a new run whenever none is queued, running or about to be retried, and
backs off (5 s doubling to 5 min) after runs that failed. The micro-batch assets and job stay
defined, for a manual materialization.
"""

import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.keys import clean, sink_assets
from assets.orphan_guard import die_with_run_worker
from assets.shared import CONNECTOR_TAG, MODE_TAG, RETRY, ConnectorDefs, dlq_evaluation, pool_of
from assets.stop_bridge import stoppable
from integrations.registry import is_source
from resources.kafka import KafkaResource

_ACTIVE = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}
BACKOFF_MAX = 300.0


def _report_dlq(context: dg.OpExecutionContext, keys: list[dg.AssetKey], config: Any, count: int) -> None:
    for key in keys:
        context.instance.report_runless_asset_event(dlq_evaluation(key, config, count))


def _source_batch(context: dg.OpExecutionContext, config: Any, settings: Any,
                  topic_keys: dict[str, dg.AssetKey]) -> Callable[[Any], None]:
    from assets.sources import topic_outcomes

    def on_batch(result: Any) -> None:
        written = []
        for key, rows, meta in topic_outcomes(config, result, settings, topic_keys):
            if rows:
                context.log_event(dg.AssetMaterialization(asset_key=key, metadata=meta))
                written.append(key)
        context.log.info(f"{config.name}: moved {result.rows} rows in {result.seconds:.2f}s")
        _report_dlq(context, written or list(topic_keys.values()), config, result.dead_lettered)

    return on_batch


def _sink_batch(context: dg.OpExecutionContext, config: Any) -> Callable[[Any], None]:
    from assets.sinks import FolderOwners, sink_outcomes, time_partitions

    assets = sink_assets(config)
    partitions = time_partitions(config)
    owners = FolderOwners(config, assets) if partitions is not None else None

    def on_batch(result: Any) -> None:
        if owners is not None:
            from assets.partitioned import log_streamed

            log_streamed(context, config, partitions, owners, result)
        else:
            for key, rows, meta in sink_outcomes(config, assets, result):
                if rows:
                    context.log_event(dg.AssetMaterialization(asset_key=key, metadata=meta))
            context.log.info(f"{config.name}: wrote {result.rows} rows ({len(result.stats.files)} file(s))")
        _report_dlq(context, [a.key for a in assets], config, result.dead_lettered)

    return on_batch


def continuous_job(config: Any, d: ConnectorDefs) -> dg.JobDefinition:
    """The long-lived job of a continuous connector."""
    budget = config.continuous.max_run_seconds
    source = is_source(config)

    @dg.op(name=f"{clean(config.name)}_continuous", retry_policy=RETRY, pool=pool_of(config.name),
           tags={CONNECTOR_TAG: config.name},
           description=f"Runs {config.name} in a loop for up to {budget:g} s, one materialization per micro-batch")
    def _loop(context: dg.OpExecutionContext, kafka: KafkaResource) -> None:
        from integrations.runtime.continuous import run_sink_continuous, run_source_continuous

        die_with_run_worker()
        settings = kafka.settings()
        if source:
            res = stoppable(context, run_source_continuous, config, settings,
                            on_batch=_source_batch(context, config, settings, d.topic_keys))
        else:
            res = stoppable(context, run_sink_continuous, config, settings, on_batch=_sink_batch(context, config))
        context.log.info(f"{config.name}: continuous run ended at its time budget ({res.seconds:.0f}s): "
                         f"{res.batches} micro-batch(es), {res.rows} rows")

    @dg.job(name=f"{clean(config.name)}_continuous_job", executor_def=dg.in_process_executor,
            tags={CONNECTOR_TAG: config.name, MODE_TAG: "continuous",
                  "dagster/max_runtime": str(int(budget + 300))},
            description=f"{config.name} in continuous mode: one long-lived run (the sensor keeps one going)")
    def _job() -> None:
        _loop()

    return _job


def _failed_streak(records: list) -> int:
    n = 0
    for r in records:
        if r.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        n += 1
    return n


def keeper_sensor(config: Any, job: dg.JobDefinition) -> dg.SensorDefinition:
    """The sensor that keeps one continuous run of the connector going."""
    from assets.sensors import WILL_RETRY_TAG, interval_of

    @dg.sensor(name=f"{clean(config.name)}_sensor", job=job, minimum_interval_seconds=interval_of(config),
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Keeps one continuous run of {config.name} going (restarts it when it ends)")
    def _keeper(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        records = context.instance.get_run_records(filters=dg.RunsFilter(job_name=job.name), limit=10)
        latest = records[0].dagster_run if records else None
        if any(r.dagster_run.status in _ACTIVE for r in records) or (
                latest is not None and latest.status == dg.DagsterRunStatus.FAILURE
                and latest.tags.get(WILL_RETRY_TAG) == "true"):
            return dg.SkipReason("the continuous run is going (or about to be retried)")
        streak = _failed_streak(records)
        if streak and records[0].end_time is not None:
            wait = min(5.0 * 2 ** (streak - 1), BACKOFF_MAX)
            if time.time() - records[0].end_time < wait:
                return dg.SkipReason(f"{streak} failed run(s) in a row: next try {wait:.0f}s after the last")
        last = records[0].dagster_run.run_id if records else "none"
        return dg.RunRequest(run_key=f"{config.name}:after:{last}", tags={CONNECTOR_TAG: config.name})

    return _keeper


def continuous_defs(config: Any, d: ConnectorDefs) -> None:
    """Add the continuous job to ``d`` and make its keeper the connector's sensor."""
    job = continuous_job(config, d)
    d.jobs.append(job)
    d.sensors = [keeper_sensor(config, job)]
    d.chainable = False
