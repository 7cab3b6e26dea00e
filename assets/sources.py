"""Source connectors → Dagster: external input specs, and the multi-asset that materializes the
connector's topics.

A micro-batch that moved no rows into a topic records an observation of it, not a materialization,
so the sinks reading it are not shown as out of date when nothing is pending.
"""

import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg

from assets.keys import clean, folder_key, group_of, table_key, topic_key
from assets.orphan_guard import die_with_run_worker
from assets.shared import (
    CONNECTOR_TAG,
    RETRY,
    ConnectorDefs,
    dlq_checks,
    dlq_result,
    executor,
    outcome,
    pool_of,
    skippable,
)
from assets.stop_bridge import stoppable
from integrations.config import FileSourceConfig, SqlSourceConfig
from resources.kafka import KafkaResource

log = logging.getLogger("headrace.assets")


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


def topic_outcomes(config: SqlSourceConfig | FileSourceConfig, result: Any, settings: Any,
                   key_of: dict[str, dg.AssetKey]) -> Iterator[tuple[dg.AssetKey, int, dict]]:
    """``(topic asset key, rows, metadata)`` of each topic asset after a source micro-batch."""
    from assets.metadata import source_metadata
    from integrations.runtime.source_runner import TopicStats

    by_topic = result.by_topic()
    files: dict[str, list[str]] = {}
    for pkey, stats in result.per_partition.items():
        if isinstance(config, FileSourceConfig) and stats.rows:
            files.setdefault(stats.topic, []).append(pkey)
    for topic, key in key_of.items():  # routed topics that are not assets are only logged
        stats = by_topic.get(topic, TopicStats(topic=topic))
        ends = {p: hi for p, (_lo, hi) in settings.watermarks(topic).items()}
        meta = source_metadata(stats, result.seconds, ends)
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        if config.type == "postgres_cdc":  # LSN range, this topic's events per op, slot lag
            from integrations.sources.postgres_cdc_checks import run_metadata

            # the slot is the connector's one source partition: its offsets, whichever topics it fed
            slot = next(iter(result.per_partition.values()), stats)
            meta.update({k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in
                         run_metadata(config, slot.offset_before, slot.offset_after, topic).items()})
        if isinstance(config, FileSourceConfig):
            meta["files_ingested"] = dg.MetadataValue.json(files.get(topic, []))
        yield key, stats.rows, meta


def source_defs(config: SqlSourceConfig | FileSourceConfig) -> ConnectorDefs:
    """External input specs, and the multi-asset that materializes the connector's topics (its job
    selects only them; ``assets.factory`` adds the sinks it feeds)."""
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
        name=f"{clean(config.name)}_source", specs=skippable(topic_specs), check_specs=dlq_checks(keys, config),
        can_subset=False, retry_policy=RETRY, pool=pool_of(config.name), op_tags={CONNECTOR_TAG: config.name},
        description=f"Source connector {config.name}: new data → Kafka (at-least-once)",
    )
    def _source(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
        from integrations.runtime.source_runner import run_source

        die_with_run_worker()
        settings = kafka.settings()
        result = stoppable(context, run_source, config, settings)
        context.log.info(f"{config.name}: moved {result.rows} rows in {result.seconds:.1f}s "
                         f"({ {t: s.rows for t, s in result.by_topic().items()} }), "
                         f"dead-lettered {result.dead_lettered}")
        for key, rows, meta in topic_outcomes(config, result, settings, key_of):
            yield outcome(key, rows, meta)
            yield dlq_result(key, config, result.dead_lettered)

    job = source_job(config, keys, [])
    return ConnectorDefs(assets=[_source], specs=[s for _n, s in inputs], jobs=[job], keys=keys, sensor_job=job,
                         topic_keys=key_of)


def source_job(config: SqlSourceConfig | FileSourceConfig, keys: list[dg.AssetKey],
               sinks: list[tuple[str, list[dg.AssetKey]]]) -> object:
    """The source's micro-batch job: its topics, then the assets of the ``(sink name, keys)`` it feeds
    (one run, one run worker start: the sinks' steps run as soon as the source's step succeeded; a
    source step that moved nothing skips them)."""
    fed = [k for _n, ks in sinks for k in ks]
    what = f" and then {', '.join(n for n, _ in sinks)}" if sinks else ""
    return dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*keys, *fed),
                               tags={CONNECTOR_TAG: config.name}, executor_def=executor(),
                               description=f"One micro-batch of {config.name}{what}")
