"""Sink connectors → Dagster: one dataset or table per topic (or per static route), written by the
sink's multi-asset. A time-partitioned Parquet sink is wired in ``assets.partitioned``.

A micro-batch that wrote no rows for an asset records an observation of it, not a materialization.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from assets.keys import (
    SinkAsset,
    clean,
    describe_routers,
    group_of,
    is_dynamic,
    routers_of,
    sink_assets,
    topic_key,
)
from assets.orphan_guard import die_with_run_worker
from assets.shared import (
    CONNECTOR_TAG,
    RANGES_TAG,
    RETRY,
    ConnectorDefs,
    dlq_checks,
    dlq_result,
    executor,
    pool_of,
)
from assets.stop_bridge import stoppable
from integrations.config import ParquetSinkConfig, TableSinkConfig, resolve_path
from resources.kafka import KafkaResource

if TYPE_CHECKING:
    from integrations.runtime.sink_result import SinkResult

def _sink_description(config: ParquetSinkConfig | TableSinkConfig, asset: SinkAsset, root: str) -> str:
    """What the asset is, and how routing (if any) decides where its records go."""
    how = describe_routers(config) if routers_of(config) else ""
    srcs = f"topic{'s' if len(asset.sources) > 1 else ''} {', '.join(map(repr, asset.sources))}"
    if how and not asset.targets:  # dynamic: known per record only
        where = (f"the tables {config.table_name_format!r} gives for the routed topics" if isinstance(
            config, TableSinkConfig) else f"{root}/<routed topic>")
        return (f"Records of {srcs}, written by {config.name} into {where}: {how} routes each record, "
                "so the routed topics are known per run only. Each materialization lists them in "
                "'routed_targets' (rows per routed topic) and 'files'.")
    tops = ", ".join(map(repr, asset.targets))
    routed = f" (routed from {srcs} by {how})" if how and asset.targets != asset.sources else ""
    if isinstance(config, TableSinkConfig):
        return f"Table for topic {tops}{routed}, written by {config.name} ({config.insert_mode})"
    return f"Parquet dataset of topic {tops}{routed} under {root}/{asset.targets[0]}, written by {config.name}"


def _sink_specs(config: ParquetSinkConfig | TableSinkConfig, partitions: dg.PartitionsDefinition | None,
                assets: list[SinkAsset]) -> list[dg.AssetSpec]:
    group = group_of(config)
    routing = {"routing": describe_routers(config)} if routers_of(config) else {}
    if isinstance(config, TableSinkConfig):
        return [dg.AssetSpec(a.key, deps=[topic_key(t) for t in a.sources], group_name=group,
                             kinds={"table", database_label_kind(config)},
                             description=_sink_description(config, a, ""),
                             metadata={"connector": config.name, **routing})
                for a in assets]
    root = resolve_path(config.path) if "://" not in config.path else config.path
    return [dg.AssetSpec(a.key, deps=[topic_key(t) for t in a.sources], group_name=group, kinds={"parquet"},
                         partitions_def=partitions, description=_sink_description(config, a, str(root)),
                         metadata={"path": dg.MetadataValue.path(f"{root}/{a.targets[0]}" if a.targets else str(root)),
                                   "connector": config.name, **routing})
            for a in assets]


def database_label_kind(config: TableSinkConfig) -> str:
    """``duckdb``, ``postgresql``, ``sqlite``… for the asset's kinds."""
    scheme = config.connection_url.split(":", 1)[0].split("+", 1)[0]
    return {"postgres": "postgresql"}.get(scheme, scheme)


def _sink_key(config: ParquetSinkConfig | TableSinkConfig, topic: str) -> dg.AssetKey:
    """The key of the sink asset that source topic ``topic`` feeds (its routed dataset or table when the
    routing is static)."""
    return next(a.key for a in sink_assets(config) if topic in a.sources)


def sink_where(config: ParquetSinkConfig | TableSinkConfig, asset: SinkAsset) -> str:
    """Where a sink asset's data is, for its metadata: the dataset root, or its table name(s)."""
    if not isinstance(config, TableSinkConfig):
        return config.path
    if asset.targets:
        return ", ".join(config.table_for(t) for t in asset.targets)
    return config.table_name_format


def sink_outcomes(config: ParquetSinkConfig | TableSinkConfig, assets: list[SinkAsset], result: "SinkResult"
                  ) -> Iterator[tuple[dg.AssetKey, int, dict]]:
    """``(asset key, rows written, metadata)`` of each sink asset after a micro-batch."""
    from assets.metadata import sink_catalog, sink_metadata

    table = isinstance(config, TableSinkConfig)
    target_name = None if not routers_of(config) else (config.table_for if table else str)
    for a in assets:
        meta = sink_metadata(result, a.sources, sink_where(config, a), target_name)
        rows = sum(result.rows_per_topic.get(t, 0) for t in a.sources)
        if rows:  # dagster/row_count (the whole dataset or table), written columns, size, absolute uri
            meta.update(sink_catalog(config, a))
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        yield a.key, rows, meta


def time_partitions(config: ParquetSinkConfig) -> dg.TimeWindowPartitionsDefinition | None:
    """Daily or hourly Dagster partitions for a time-partitioned Parquet sink with a start date.

    Dagster's keys and windows follow the sink's ``timezone`` across DST: a spring-forward night has no
    hourly key for the skipped hour, a fall-back night has ``…-02:00`` and ``…-02:00+0100``, and days
    are 23 or 25 hours long. A rebuild of a partition rewrites the span of its folders (see
    ``Partitioner.window_folders``), so both 02:00 keys rewrite the one ``hour=02`` folder whole.
    """
    if not isinstance(config, ParquetSinkConfig) or config.partitioner != "time" or not config.partition_start_date:
        return None
    from integrations.errors import ConfigError, HeadraceError
    from integrations.sinks.parquet_partitioners import Partitioner

    try:
        Partitioner(config).check_periods()
    except HeadraceError as e:
        raise ConfigError(f"connector {config.name}: partition_start_date needs rebuildable folders: {e}") from None
    if config.partition_duration == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=f"{config.partition_start_date}-00:00", timezone=config.timezone)
    return dg.DailyPartitionsDefinition(start_date=config.partition_start_date, timezone=config.timezone)


def sink_defs(config: ParquetSinkConfig | TableSinkConfig) -> ConnectorDefs:
    """The sink's multi-asset (and, for time partitions, its streaming job)."""
    partitions = time_partitions(config)
    assets = sink_assets(config)
    specs = _sink_specs(config, partitions, assets)
    keys = [s.key for s in specs]
    tags = {CONNECTOR_TAG: config.name}
    if partitions is None:

        @dg.multi_asset(
            name=f"{clean(config.name)}_sink", specs=specs, check_specs=dlq_checks(keys, config),
            can_subset=False,
            retry_policy=RETRY, pool=pool_of(config.name), op_tags=tags,
            description=f"Sink connector {config.name}: Kafka → {config.type} (exactly once)",
        )
        def _sink(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
            from integrations.runtime.checks import ranges_from_tag
            from integrations.runtime.sink_runner import run_sink

            die_with_run_worker()
            tag = context.run.tags.get(RANGES_TAG)
            result = stoppable(context, run_sink, config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
            context.log.info(f"{config.name}: wrote {result.rows} rows ({len(result.stats.files)} file(s))")
            for key, _rows, meta in sink_outcomes(config, assets, result):  # 0 rows too: nothing is downstream
                yield dg.MaterializeResult(asset_key=key, metadata=meta)
                yield dlq_result(key, config, result.dead_lettered)

        job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys), tags=tags,
                                  executor_def=executor(), description=f"One micro-batch of {config.name}")
        return ConnectorDefs(assets=[_sink], jobs=[job], keys=keys, sensor_job=job, upstream=_upstream(specs),
                             chainable=getattr(config, "continuous", None) is None)
    from assets.partitioned import partitioned_parquet_defs

    d = partitioned_parquet_defs(config, specs, partitions, assets)
    d.upstream = _upstream(specs)
    return d


def _upstream(specs: list[dg.AssetSpec]) -> set[dg.AssetKey]:
    return {dep.asset_key for s in specs for dep in s.deps}


@dataclass(frozen=True)
class FolderOwners:
    """Which sink asset owns a written file or a topic folder (the folder a record was routed to)."""

    config: ParquetSinkConfig
    assets: list[SinkAsset]

    def of_source(self, topic: str | None) -> dg.AssetKey | None:
        """The asset a source topic's records belong to."""
        return next((a.key for a in self.assets if topic in a.sources), None)

    def of_folder(self, folder: str, sample: str | None = None, fs: object | None = None) -> dg.AssetKey | None:
        """The asset owning topic folder ``folder``; None for a folder no asset owns (e.g. written under an
        older routing config). Under dynamic routing the source topic recorded in ``sample`` (one file of
        the folder) decides, unless the connector has one topic."""
        if not is_dynamic(self.config):
            return next((a.key for a in self.assets if folder in a.targets), None)
        if len(self.assets) == 1:
            return self.assets[0].key
        if sample is None:
            return self.of_source(folder)
        from integrations.sinks.parquet import source_topic

        return self.of_source(source_topic(fs, sample))

    def of_file(self, path: str, folder: str, sources: dict[str, str]) -> dg.AssetKey | None:
        """The asset a written file belongs to: by its source topic when the sink recorded it, else by
        its folder."""
        if path in sources:
            return self.of_source(sources[path])
        return self.of_folder(folder)

