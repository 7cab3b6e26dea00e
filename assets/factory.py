"""Connector configs → Dagster assets and jobs.

A source connector is a multi-asset that materializes its topics, each depending on its external
input (a table, a query, a folder). A sink connector is a multi-asset that materializes one dataset
or table per topic. A Parquet sink with the time partitioner and ``partition_start_date`` has a
time-partitioned dataset: materializing a partition (or a backfill of many) rebuilds exactly that
window from Kafka; its streaming micro-batches run as a separate job that records which time
partitions they touched. Runs of one connector never overlap: steps are in the pool
``headrace_<connector>`` and runs carry the tag ``headrace/connector`` (one run per value, see
dagster.yaml).
"""

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

from assets.keys import clean, dataset_key, folder_key, group_of, table_key, target_table_key, topic_key
from assets.metadata import sink_metadata, source_metadata
from assets.orphan_guard import die_with_run_worker
from integrations.config import (
    FileSourceConfig,
    ParquetSinkConfig,
    SqlSourceConfig,
    TableSinkConfig,
    resolve_path,
)
from integrations.registry import is_source
from integrations.runtime.checks import ranges_from_tag
from integrations.runtime.sink_runner import SinkResult, run_sink
from integrations.runtime.source_runner import TopicStats, run_source
from resources.kafka import KafkaResource

RANGES_TAG = "headrace/ranges"
CONNECTOR_TAG = "headrace/connector"
DLQ_CHECK = "dead_letters_within_threshold"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
log = logging.getLogger("headrace.assets")


@dataclass
class ConnectorDefs:
    """What one connector contributes to the Definitions."""

    assets: list = field(default_factory=list)
    specs: list[dg.AssetSpec] = field(default_factory=list)
    jobs: list = field(default_factory=list)
    keys: list[dg.AssetKey] = field(default_factory=list)
    sensor_job: object | None = None


def pool_of(name: str) -> str:
    """The concurrency pool of a connector's steps."""
    return f"headrace_{clean(name)}"


def _dlq_checks(keys: list[dg.AssetKey], config: object) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(DLQ_CHECK, asset=k, description=f"Records dead-lettered by a run ≤ "
                              f"{config.dlq_max_records} (dlq_max_records)") for k in keys]


def _dlq_result(key: dg.AssetKey, config: object, count: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key, check_name=DLQ_CHECK, passed=count <= config.dlq_max_records,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"dead_lettered": count, "threshold": config.dlq_max_records, "dlq_topic": config.dlq_topic or ""},
    )


# -- sources ---------------------------------------------------------------------------------------
def source_inputs(config: SqlSourceConfig | FileSourceConfig) -> list[tuple[str, dg.AssetSpec]]:
    """``(source partition name, external input spec)`` per input of a source connector."""
    group = group_of(config)
    if isinstance(config, FileSourceConfig):
        spec = dg.AssetSpec(folder_key(config), group_name=group, kinds={"files", config.format},
                            description=f"Spooling folder {config.input_path} ({config.format}) read by {config.name}")
        return [("files", spec)]
    names = config.source_names
    if config.table_include:
        try:
            from integrations.sources.sql import list_tables

            names = list_tables(config)
        except Exception as e:  # noqa: BLE001 - the catalog may be down when definitions load
            log.warning("connector %s: tables not discovered (%s); using the listed ones", config.name, e)
    return [(n, dg.AssetSpec(table_key(config, n), group_name=group, kinds={"sql"},
                             description=f"Source {'query' if config.query else 'table ' + repr(n)} read by "
                                         f"{config.name}")) for n in names]


def source_defs(config: SqlSourceConfig | FileSourceConfig) -> ConnectorDefs:
    """External input specs, and the multi-asset that materializes the connector's topics."""
    group = group_of(config)
    inputs = source_inputs(config)
    deps_by_topic: dict[str, list[dg.AssetKey]] = {}
    for name, spec in inputs:
        deps_by_topic.setdefault(config.topic_for(name), []).append(spec.key)
    topic_specs = [
        dg.AssetSpec(topic_key(topic), deps=deps, group_name=group, kinds={"kafka"},
                     description=f"Kafka topic {topic!r}, produced by source connector {config.name}",
                     metadata={"topic": topic, "connector": config.name})
        for topic, deps in deps_by_topic.items()
    ]
    keys = [s.key for s in topic_specs]

    @dg.multi_asset(
        name=f"{clean(config.name)}_source", specs=topic_specs, check_specs=_dlq_checks(keys, config),
        can_subset=False, retry_policy=RETRY, pool=pool_of(config.name), op_tags={CONNECTOR_TAG: config.name},
        description=f"Source connector {config.name}: new data → Kafka (at-least-once)",
    )
    def _source(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
        die_with_run_worker()
        settings = kafka.settings()
        result = run_source(config, settings)
        context.log.info(f"{config.name}: moved {result.rows} rows in {result.seconds:.1f}s "
                         f"({ {t: s.rows for t, s in result.by_topic().items()} }), "
                         f"dead-lettered {result.dead_lettered}")
        by_topic = result.by_topic()
        files: dict[str, list[str]] = {}
        for pkey, stats in result.per_partition.items():
            if isinstance(config, FileSourceConfig) and stats.rows:
                files.setdefault(stats.topic, []).append(pkey)
        for topic in deps_by_topic:  # routed topics that are not assets are only logged
            stats = by_topic.get(topic, TopicStats(topic=topic))
            ends = {p: hi for p, (_lo, hi) in settings.watermarks(topic).items()}
            meta = source_metadata(stats, result.seconds, ends)
            meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
            if isinstance(config, FileSourceConfig):
                meta["files_ingested"] = dg.MetadataValue.json(files.get(topic, []))
            yield dg.MaterializeResult(asset_key=topic_key(topic), metadata=meta)
            yield _dlq_result(topic_key(topic), config, result.dead_lettered)

    job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys),
                              tags={CONNECTOR_TAG: config.name}, description=f"One micro-batch of {config.name}")
    return ConnectorDefs(assets=[_source], specs=[s for _n, s in inputs], jobs=[job], keys=keys, sensor_job=job)


# -- sinks -----------------------------------------------------------------------------------------
def _sink_specs(config: ParquetSinkConfig | TableSinkConfig, partitions: dg.PartitionsDefinition | None
                ) -> list[dg.AssetSpec]:
    group = group_of(config)
    if isinstance(config, TableSinkConfig):
        return [dg.AssetSpec(target_table_key(config, t), deps=[topic_key(t)], group_name=group,
                             kinds={"table", database_label_kind(config)},
                             description=f"Table for topic {t!r}, written by {config.name} ({config.insert_mode})",
                             metadata={"connector": config.name})
                for t in config.topics]
    root = resolve_path(config.path) if "://" not in config.path else config.path
    return [dg.AssetSpec(dataset_key(config, t), deps=[topic_key(t)], group_name=group, kinds={"parquet"},
                         partitions_def=partitions,
                         description=f"Parquet dataset of topic {t!r} under {root}/{t}, written by {config.name}",
                         metadata={"path": dg.MetadataValue.path(f"{root}/{t}"), "connector": config.name})
            for t in config.topics]


def database_label_kind(config: TableSinkConfig) -> str:
    """``duckdb``, ``postgresql``, ``sqlite``… for the asset's kinds."""
    scheme = config.connection_url.split(":", 1)[0].split("+", 1)[0]
    return {"postgres": "postgresql"}.get(scheme, scheme)


def _sink_key(config: ParquetSinkConfig | TableSinkConfig, topic: str) -> dg.AssetKey:
    return target_table_key(config, topic) if isinstance(config, TableSinkConfig) else dataset_key(config, topic)


def _sink_results(config: ParquetSinkConfig | TableSinkConfig, result: SinkResult) -> Iterator:
    for topic in config.topics:
        key = _sink_key(config, topic)
        where = config.path if isinstance(config, ParquetSinkConfig) else config.table_name_format.replace("${topic}", topic)
        meta = sink_metadata(result, topic, where)
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        yield dg.MaterializeResult(asset_key=key, metadata=meta)
        yield _dlq_result(key, config, result.dead_lettered)


def time_partitions(config: ParquetSinkConfig) -> dg.TimeWindowPartitionsDefinition | None:
    """Daily or hourly Dagster partitions for a time-partitioned Parquet sink with a start date."""
    if not isinstance(config, ParquetSinkConfig) or config.partitioner != "time" or not config.partition_start_date:
        return None
    if config.partition_duration == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=f"{config.partition_start_date}-00:00", timezone=config.timezone)
    return dg.DailyPartitionsDefinition(start_date=config.partition_start_date, timezone=config.timezone)


def sink_defs(config: ParquetSinkConfig | TableSinkConfig) -> ConnectorDefs:
    """The sink's multi-asset (and, for time partitions, its streaming job)."""
    partitions = time_partitions(config)
    specs = _sink_specs(config, partitions)
    keys = [s.key for s in specs]
    tags = {CONNECTOR_TAG: config.name}
    if partitions is None:

        @dg.multi_asset(
            name=f"{clean(config.name)}_sink", specs=specs, check_specs=_dlq_checks(keys, config), can_subset=False,
            retry_policy=RETRY, pool=pool_of(config.name), op_tags=tags,
            description=f"Sink connector {config.name}: Kafka → {config.type} (exactly once)",
        )
        def _sink(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
            die_with_run_worker()
            tag = context.run.tags.get(RANGES_TAG)
            result = run_sink(config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
            context.log.info(f"{config.name}: wrote {result.rows} rows ({len(result.stats.files)} file(s))")
            yield from _sink_results(config, result)

        job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys), tags=tags,
                                  description=f"One micro-batch of {config.name}")
        return ConnectorDefs(assets=[_sink], jobs=[job], keys=keys, sensor_job=job)
    return _partitioned_parquet_defs(config, specs, partitions)


def _partitioned_parquet_defs(config: ParquetSinkConfig, specs: list[dg.AssetSpec],
                              partitions: dg.TimeWindowPartitionsDefinition) -> ConnectorDefs:
    from integrations.sinks.windows import rebuild_window

    keys = [s.key for s in specs]
    tags = {CONNECTOR_TAG: config.name}

    @dg.multi_asset(
        name=f"{clean(config.name)}_backfill", specs=specs, partitions_def=partitions, can_subset=False,
        backfill_policy=dg.BackfillPolicy.single_run(), retry_policy=RETRY, pool=pool_of(config.name),
        op_tags=tags,
        description=f"Rebuilds the time partitions of {config.name} from Kafka (offsets_for_times); idempotent",
    )
    def _backfill(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
        die_with_run_worker()
        window = context.partition_time_window
        res = rebuild_window(config, window.start, window.end, kafka.settings())
        context.log.info(f"{config.name}: rebuilt [{window.start}, {window.end}) with {res.rows} rows")
        for topic in config.topics:
            yield dg.MaterializeResult(asset_key=dataset_key(config, topic), metadata={
                "rows": dg.MetadataValue.int(res.rows if len(config.topics) == 1 else 0),
                "window": dg.MetadataValue.text(f"[{window.start.isoformat()}, {window.end.isoformat()})"),
                "offsets": dg.MetadataValue.json({f"{r.topic}[{r.partition}]": [r.start, r.end] for r in res.ranges
                                                  if r.topic == topic}),
                "paths_replaced": dg.MetadataValue.json([p for p in res.paths if p.startswith(f"{topic}/")]),
                "files": dg.MetadataValue.int(len([f for f in res.files if f"/{topic}/" in f])),
            })

    @dg.op(name=f"{clean(config.name)}_stream", retry_policy=RETRY, pool=pool_of(config.name), tags=tags)
    def _stream(context: dg.OpExecutionContext, kafka: KafkaResource) -> None:
        die_with_run_worker()
        tag = context.run.tags.get(RANGES_TAG)
        result = run_sink(config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
        touched = touched_partitions(config, partitions, result.stats.files)
        for topic, pkeys in touched.items():
            for pk in sorted(pkeys):
                context.log_event(dg.AssetMaterialization(
                    asset_key=dataset_key(config, topic), partition=pk,
                    metadata={"offsets": dg.MetadataValue.json(result.offsets().get(topic, {})),
                              "written_by": dg.MetadataValue.text("streaming micro-batch")}))
        context.log.info(f"{config.name}: streamed {result.rows} rows into {sum(map(len, touched.values()))} "
                         f"time partition(s)")

    @dg.job(name=f"{clean(config.name)}_job", tags=tags,
            description=f"Streaming micro-batch of {config.name} (records the time partitions it touched)")
    def _stream_job() -> None:
        _stream()

    backfill_job = dg.define_asset_job(f"{clean(config.name)}_backfill_job", selection=dg.AssetSelection.assets(*keys),
                                       partitions_def=partitions, tags=tags)
    return ConnectorDefs(assets=[_backfill], jobs=[_stream_job, backfill_job], keys=keys, sensor_job=_stream_job)


def touched_partitions(config: ParquetSinkConfig, partitions: dg.TimeWindowPartitionsDefinition,
                       files: list[str]) -> dict[str, set[str]]:
    """Dagster partition keys of the time partitions that written files belong to, per topic."""
    from integrations.sinks.parquet_partitioners import Partitioner

    fmt = Partitioner(config).fmt
    depth = fmt.count("/") + 1
    out: dict[str, set[str]] = {}
    for f in files:
        parts = f.replace("\\", "/").split("/")
        rel, topic = "/".join(parts[-1 - depth:-1]), parts[-2 - depth]
        try:
            local = dt.datetime.strptime(rel, fmt)
        except ValueError:
            continue
        out.setdefault(topic, set()).add(local.strftime(partitions.fmt))
    return out


def connector_defs(config: object) -> ConnectorDefs:
    """Definitions of one connector, by kind."""
    return source_defs(config) if is_source(config) else sink_defs(config)


def external_topic_specs(configs: list, produced: set[dg.AssetKey]) -> list[dg.AssetSpec]:
    """Specs for topics that sinks read but no Headrace source writes (external topics)."""
    seen: dict[dg.AssetKey, dg.AssetSpec] = {}
    for c in configs:
        for topic in getattr(c, "topics", []):
            k = topic_key(topic)
            if k not in produced and k not in seen:
                seen[k] = dg.AssetSpec(k, kinds={"kafka"}, group_name="external_topics",
                                       description=f"Kafka topic {topic!r} (written outside Headrace)")
    return list(seen.values())
