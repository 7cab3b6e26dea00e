"""One sensor per connector: a cheap check for new data, then a run request with a distinct run_key.

Sensors never consume, produce or commit. A connector that leaves ``poll_interval`` unset is checked
on every pass of the daemon's sensor loop, which runs every 5 s (``minimum_interval_seconds=1``; an
interval of 5 would be due only every other pass, i.e. every 10 s); the checks are one aggregate query
per table, or the group's committed offsets and the topics' watermarks. A
sink that a source's micro-batch job runs as well (``assets.factory.chain_sinks``) is not requested
while such a run is in flight: that run writes it. A source is not requested while a run of its job
is queued or starting (its step has not read yet, so it will read the new rows too): each run start
costs seconds of CPU, and a queue of runs would only delay the next rows. A sink's request carries the exact offset ranges to read
in the ``headrace/ranges`` tag, so retries of that run read the same records. When the run for a
request failed for good, the same state is requested again under a new run_key (``…#retry<n>``).
"""


import json

import dagster as dg

from assets.keys import clean
from assets.shared import CONNECTOR_TAG, RANGES_TAG
from integrations.config import FileSourceConfig, ParquetSinkConfig, SqlSourceConfig
from integrations.registry import is_source
from integrations.runtime.checks import digest, ranges_to_tag, sink_pending, source_fingerprint
from resources.kafka import KafkaResource

REQUEST_TAG = "headrace/request"
DEFAULT_INTERVAL = 1  # due on every pass of the daemon's 5 s sensor loop
_ACTIVE = {
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
}


WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run that run retries will re-execute


def _request_key(context: dg.SensorEvaluationContext, base: str) -> str | None:
    """``base`` when new; a ``#retry<n>`` key when every earlier run of it failed for good (no run
    retry pending); None while one is in flight, will be retried by Dagster, or succeeded."""
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: base}), limit=20)
    if not runs:
        return base
    # Dagster stores a run's failure, then (in a second write) whether run retries will re-execute it:
    # with retries on, a failed run without that tag yet is undecided, not failed for good
    retries_on = context.instance.run_retries_enabled

    def retry_pending(r: dg.DagsterRun) -> bool:
        tag = r.tags.get(WILL_RETRY_TAG)
        return r.status == dg.DagsterRunStatus.FAILURE and (tag == "true" or (tag is None and retries_on))

    if any(r.status in _ACTIVE or r.status == dg.DagsterRunStatus.SUCCESS or retry_pending(r) for r in runs):
        return None
    return f"{base}#retry{len(runs)}"


def interval_of(config: SqlSourceConfig | ParquetSinkConfig) -> int:
    """The sensor's minimum interval: ``poll_interval`` when set in the file, else ``DEFAULT_INTERVAL``."""
    if "poll_interval" in config.model_fields_set:
        return max(int(config.poll_interval), 1)
    return DEFAULT_INTERVAL


_PENDING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


def _run_pending(context: dg.SensorEvaluationContext, job: str) -> bool:
    """A run of ``job`` that has not started its steps yet."""
    return bool(context.instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=_PENDING), limit=1))


def _feeding_run_active(context: dg.SensorEvaluationContext, jobs: list[str]) -> bool:
    return any(context.instance.get_runs(filters=dg.RunsFilter(job_name=j, statuses=list(_ACTIVE)), limit=1)
               for j in jobs)


def connector_sensor(config: SqlSourceConfig | ParquetSinkConfig, job: object, chained_in: list[str] | None = None
                     ) -> dg.SensorDefinition:
    """The micro-batch sensor of one connector; ``chained_in``: names of source jobs that also run this
    sink."""

    @dg.sensor(
        name=f"{clean(config.name)}_sensor", job=job, minimum_interval_seconds=interval_of(config),
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Requests a micro-batch of {config.name} when there is new data (cheap checks only)",
    )
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult | dg.SkipReason:
        settings = kafka.settings()
        tags = {CONNECTOR_TAG: config.name}
        if is_source(config) and _run_pending(context, job.name):
            return dg.SkipReason("a run is queued or starting: it reads what is new")
        if isinstance(config, FileSourceConfig):
            from integrations.sources.files import list_ready_files

            ready = list_ready_files(config)
            fp = digest(ready) if ready else None
            if fp is None:
                return dg.SkipReason("no files ready")
            base = f"{config.name}:{fp}"
            state = {"files": len(ready)}
        elif is_source(config):
            fp = source_fingerprint(config, settings)
            if fp is None:
                return dg.SkipReason("no new rows")
            base = f"{config.name}:{fp}"
            state = {"fingerprint": fp}
        else:
            if chained_in and _feeding_run_active(context, chained_in):
                return dg.SkipReason("a run of the source feeding it is in flight, and writes it too")
            ranges = sink_pending(config, settings)
            if not ranges:
                return dg.SkipReason("no lag")
            tags[RANGES_TAG] = ranges_to_tag(ranges)
            base = f"{config.name}:{digest(tags[RANGES_TAG])}"
            state = {"ranges": tags[RANGES_TAG], "records": sum(r.size for r in ranges)}
        key = _request_key(context, base)
        if key is None:
            return dg.SkipReason(f"a run for {base} is in flight or done")
        tags[REQUEST_TAG] = base
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key, tags=tags)], cursor=json.dumps(state))

    return _sensor
