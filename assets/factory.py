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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import dagster as dg

from assets.keys import (
    SinkAsset,
    clean,
    describe_routers,
    folder_key,
    group_of,
    is_dynamic,
    routers_of,
    sink_assets,
    table_key,
    topic_key,
)
from assets.metadata import sink_metadata, source_metadata
from assets.orphan_guard import die_with_run_worker
from assets.stop_bridge import stoppable
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
    if config.table_include and config.type == "sql_source":  # postgres_cdc lists its own (source_names)
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
    key_of = dict(zip(deps_by_topic, keys, strict=True))  # fixed at build: a translator may rename keys

    @dg.multi_asset(
        name=f"{clean(config.name)}_source", specs=topic_specs, check_specs=_dlq_checks(keys, config),
        can_subset=False, retry_policy=RETRY, pool=pool_of(config.name), op_tags={CONNECTOR_TAG: config.name},
        description=f"Source connector {config.name}: new data → Kafka (at-least-once)",
    )
    def _source(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
        die_with_run_worker()
        settings = kafka.settings()
        result = stoppable(context, run_source, config, settings)
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
            if config.type == "postgres_cdc":  # LSN range, events per op, slot lag
                from integrations.sources.postgres_cdc_checks import run_metadata

                meta.update({k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in
                             run_metadata(config, stats.offset_before, stats.offset_after).items()})
            if isinstance(config, FileSourceConfig):
                meta["files_ingested"] = dg.MetadataValue.json(files.get(topic, []))
            yield dg.MaterializeResult(asset_key=key_of[topic], metadata=meta)
            yield _dlq_result(key_of[topic], config, result.dead_lettered)

    job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys),
                              tags={CONNECTOR_TAG: config.name}, description=f"One micro-batch of {config.name}")
    return ConnectorDefs(assets=[_source], specs=[s for _n, s in inputs], jobs=[job], keys=keys, sensor_job=job)


# -- sinks -----------------------------------------------------------------------------------------
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


def _sink_results(config: ParquetSinkConfig | TableSinkConfig, assets: list[SinkAsset], result: SinkResult
                  ) -> Iterator:
    table = isinstance(config, TableSinkConfig)
    target_name = None if not routers_of(config) else (config.table_for if table else str)
    for a in assets:
        if not table:
            where = config.path
        elif a.targets:
            where = ", ".join(config.table_for(t) for t in a.targets)
        else:
            where = config.table_name_format
        meta = sink_metadata(result, a.sources, where, target_name)
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        yield dg.MaterializeResult(asset_key=a.key, metadata=meta)
        yield _dlq_result(a.key, config, result.dead_lettered)


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
            name=f"{clean(config.name)}_sink", specs=specs, check_specs=_dlq_checks(keys, config), can_subset=False,
            retry_policy=RETRY, pool=pool_of(config.name), op_tags=tags,
            description=f"Sink connector {config.name}: Kafka → {config.type} (exactly once)",
        )
        def _sink(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
            die_with_run_worker()
            tag = context.run.tags.get(RANGES_TAG)
            result = stoppable(context, run_sink, config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
            context.log.info(f"{config.name}: wrote {result.rows} rows ({len(result.stats.files)} file(s))")
            yield from _sink_results(config, assets, result)

        job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys), tags=tags,
                                  description=f"One micro-batch of {config.name}")
        return ConnectorDefs(assets=[_sink], jobs=[job], keys=keys, sensor_job=job)
    return _partitioned_parquet_defs(config, specs, partitions, assets)


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


def _offsets_of(result: SinkResult, sources: tuple[str, ...]) -> dict:
    read = result.offsets()
    return read.get(sources[0], {}) if len(sources) == 1 else {t: read.get(t, {}) for t in sources}


def _partitioned_parquet_defs(config: ParquetSinkConfig, specs: list[dg.AssetSpec],
                              partitions: dg.TimeWindowPartitionsDefinition, assets: list[SinkAsset]
                              ) -> ConnectorDefs:
    import pyarrow.parquet as pq

    from integrations.sinks.parquet_partitioners import open_root
    from integrations.sinks.windows import rebuild_window

    keys = [s.key for s in specs]
    tags = {CONNECTOR_TAG: config.name}
    owners = FolderOwners(config, assets)

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
        span = [t.astimezone(window.start.tzinfo).isoformat() for t in res.window]
        context.log.info(f"{config.name}: rebuilt [{window.start}, {window.end}) as [{span[0]}, {span[1]}) "
                         f"(the whole folders) with {res.rows} rows; kept {len(res.carried)} streamed file(s)")
        shared = _partition_keys(partitions, res.window)
        fs, root = open_root(config)[:2]
        paths, files = replaced_by_asset(owners, res.paths, res.files, (fs, root))
        for p in paths.pop(None, []):
            context.log.warning(f"{config.name}: rebuilt {p}, a folder no asset of the connector owns")
        for a in assets:
            rows = res.rows if len(assets) == 1 else sum(pq.read_metadata(f, filesystem=fs).num_rows
                                                         for f in files.get(a.key, []))
            yield dg.MaterializeResult(asset_key=a.key, metadata={
                "rows": dg.MetadataValue.int(rows),
                "window": dg.MetadataValue.text(f"[{window.start.isoformat()}, {window.end.isoformat()})"),
                "rebuilt_window": dg.MetadataValue.text(f"[{span[0]}, {span[1]})"),
                "partitions_rewritten": dg.MetadataValue.json(shared),
                "offsets": dg.MetadataValue.json({f"{r.topic}[{r.partition}]": [r.start, r.end] for r in res.ranges
                                                  if r.topic in a.sources}),
                "paths_replaced": dg.MetadataValue.json(paths.get(a.key, [])),
                "files": dg.MetadataValue.int(len(files.get(a.key, []))),
            })

    @dg.op(name=f"{clean(config.name)}_stream", retry_policy=RETRY, pool=pool_of(config.name), tags=tags)
    def _stream(context: dg.OpExecutionContext, kafka: KafkaResource) -> None:
        die_with_run_worker()
        tag = context.run.tags.get(RANGES_TAG)
        result = run_sink(config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
        sources = getattr(result.stats, "sources", {})
        touched = touched_partitions(config, partitions, result.stats.files,
                                     lambda f, folder: owners.of_file(f, folder, sources))
        for f in sorted(touched.pop(None, ())):
            context.log.warning(f"{config.name}: wrote time partition {f} of a folder no asset owns")
        for a in assets:
            for pk in sorted(touched.get(a.key, ())):
                context.log_event(dg.AssetMaterialization(
                    asset_key=a.key, partition=pk,
                    metadata={"offsets": dg.MetadataValue.json(_offsets_of(result, a.sources)),
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


def replaced_by_asset(owners: FolderOwners, paths: list[str], files: list[str], fs_root: tuple[object, str]
                      ) -> tuple[dict[dg.AssetKey | None, list[str]], dict[dg.AssetKey | None, list[str]]]:
    """A window rebuild's replaced ``<folder>/<partition path>``s and final files, per owning asset
    (under None: folders no asset owns)."""
    fs, root = fs_root
    by_folder: dict[str, list[str]] = {}
    for f in files:
        rel = f[len(root) + 1:] if f.startswith(f"{root}/") else f
        by_folder.setdefault(rel.split("/", 1)[0], []).append(f)
    out_paths: dict[dg.AssetKey | None, list[str]] = {}
    out_files: dict[dg.AssetKey | None, list[str]] = {}
    owner: dict[str, dg.AssetKey | None] = {}
    for p in paths:
        folder = p.split("/", 1)[0]
        if folder not in owner:
            sample = by_folder.get(folder, [None])[0]
            owner[folder] = owners.of_folder(folder, sample, fs)
            out_files.setdefault(owner[folder], []).extend(by_folder.get(folder, []))
        out_paths.setdefault(owner[folder], []).append(p)
    return out_paths, out_files


def _partition_keys(partitions: dg.TimeWindowPartitionsDefinition,
                    span: tuple[dt.datetime, dt.datetime] | None) -> list[str]:
    """Keys of the partitions whose windows overlap ``[start, end)`` (aware datetimes), in order."""
    if span is None:
        return []
    start, end = span
    day = dt.timedelta(days=2)  # a partition starting before ``start`` can still overlap it
    keys = partitions.get_partition_keys_in_time_window(dg.TimeWindow(start - day, end))
    out = []
    for k in keys:
        w = partitions.time_window_for_partition_key(k)
        if w.start.timestamp() < end.timestamp() and w.end.timestamp() > start.timestamp():
            out.append(k)
    return out


def touched_partitions(config: ParquetSinkConfig, partitions: dg.TimeWindowPartitionsDefinition,
                       files: list[str], owner: Callable[[str, str], dg.AssetKey | None]
                       ) -> dict[dg.AssetKey | None, set[str]]:
    """Dagster partition keys of the time partitions that written files belong to, per owning asset.

    A file's folder stands for the span of instants whose records go there (``folder_window``), and
    every partition overlapping that span is touched: the fall-back night's ``hour=02`` is both
    ``…-02:00`` and ``…-02:00+0100``, a daily folder is each of its hourly partitions.
    ``owner(file, topic folder)`` names the asset a file belongs to (None: no asset owns it)."""
    from integrations.sinks.parquet_partitioners import Partitioner

    part = Partitioner(config)
    depth = part.fmt.count("/") + 1
    keys_of: dict[str, list[str]] = {}
    out: dict[dg.AssetKey | None, set[str]] = {}
    for f in files:
        parts = f.replace("\\", "/").split("/")
        rel, folder = "/".join(parts[-1 - depth:-1]), parts[-2 - depth]
        if rel not in keys_of:
            span = part.folder_window(rel)
            keys_of[rel] = [] if span is None else _partition_keys(partitions, tuple(
                dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for ms in span))
        if keys_of[rel]:
            out.setdefault(owner(f, folder), set()).update(keys_of[rel])
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
