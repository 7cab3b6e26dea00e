"""Connector configs → Dagster assets, jobs and sensors.

A source connector is a multi-asset that materializes its topics (each depending on its external
source table). A sink connector is a multi-asset that materializes one dataset per topic. Runs of
one connector never overlap: every step is in the pool ``headrace_<connector>`` and every run carries
the tag ``headrace/connector``, which dagster.yaml limits to one run per value.
"""


from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

from assets.keys import clean, dataset_key, group_of, table_key, topic_key
from assets.metadata import sink_metadata, source_metadata
from integrations.config import ParquetSinkConfig, SqlSourceConfig, resolve_path
from integrations.registry import is_source
from integrations.runtime.checks import ranges_from_tag
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from resources.kafka import KafkaResource

RANGES_TAG = "headrace/ranges"
CONNECTOR_TAG = "headrace/connector"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dataclass
class ConnectorDefs:
    """What one connector contributes to the Definitions."""

    assets: list = field(default_factory=list)
    specs: list[dg.AssetSpec] = field(default_factory=list)
    jobs: list = field(default_factory=list)
    keys: list[dg.AssetKey] = field(default_factory=list)


def pool_of(name: str) -> str:
    """The concurrency pool of a connector's steps."""
    return f"headrace_{clean(name)}"


def source_defs(config: SqlSourceConfig) -> ConnectorDefs:
    """External table specs, and the multi-asset that materializes the connector's topics."""
    group = group_of(config)
    tables = {name: table_key(config, name) for name in config.source_names}
    specs = [
        dg.AssetSpec(key, group_name=group, kinds={"sql"}, description=f"Source table {name!r} read by {config.name}")
        for name, key in tables.items()
    ]
    topic_specs = [
        dg.AssetSpec(
            topic_key(config.topic_for(name)), deps=[tables[name]], group_name=group, kinds={"kafka"},
            description=f"Kafka topic {config.topic_for(name)!r}, produced by source connector {config.name} "
            f"({config.mode} mode)",
            metadata={"topic": config.topic_for(name), "connector": config.name},
        )
        for name in config.source_names
    ]

    @dg.multi_asset(
        name=f"{clean(config.name)}_source", specs=topic_specs, can_subset=False, retry_policy=RETRY,
        pool=pool_of(config.name), op_tags={CONNECTOR_TAG: config.name},
        description=f"Source connector {config.name}: new rows → Kafka (at-least-once)",
    )
    def _source(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator[dg.MaterializeResult]:
        settings = kafka.settings()
        result = run_source(config, settings)
        context.log.info(f"{config.name}: moved {result.rows} rows in {result.seconds:.1f}s")
        by_topic = result.by_topic()
        for name in config.source_names:
            topic = config.topic_for(name)
            stats = by_topic.get(topic)
            if stats is None:
                from integrations.runtime.source_runner import TopicStats

                stats = TopicStats(topic=topic)
            ends = {p: hi for p, (_lo, hi) in settings.watermarks(topic).items()}
            yield dg.MaterializeResult(asset_key=topic_key(topic), metadata=source_metadata(stats, result.seconds, ends))

    job = dg.define_asset_job(
        f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*[s.key for s in topic_specs]),
        tags={CONNECTOR_TAG: config.name}, description=f"One micro-batch of {config.name}",
    )
    return ConnectorDefs(assets=[_source], specs=specs, jobs=[job], keys=[s.key for s in topic_specs])


def sink_defs(config: ParquetSinkConfig) -> ConnectorDefs:
    """The multi-asset that materializes one Parquet dataset per topic."""
    group = group_of(config)
    root = resolve_path(config.path)
    specs = [
        dg.AssetSpec(
            dataset_key(config, topic), deps=[topic_key(topic)], group_name=group, kinds={"parquet"},
            description=f"Parquet dataset of topic {topic!r} under {root / topic}, written by {config.name}",
            metadata={"path": dg.MetadataValue.path(str(root / topic)), "connector": config.name},
        )
        for topic in config.topics
    ]

    @dg.multi_asset(
        name=f"{clean(config.name)}_sink", specs=specs, can_subset=False, retry_policy=RETRY,
        pool=pool_of(config.name), op_tags={CONNECTOR_TAG: config.name},
        description=f"Sink connector {config.name}: Kafka → Parquet (exactly-once files)",
    )
    def _sink(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator[dg.MaterializeResult]:
        tag = context.run.tags.get(RANGES_TAG)
        ranges = ranges_from_tag(tag) if tag else None
        result = run_sink(config, kafka.settings(), ranges=ranges)
        context.log.info(f"{config.name}: wrote {result.rows} rows to {len(result.stats.files)} file(s)")
        for topic in config.topics:
            yield dg.MaterializeResult(asset_key=dataset_key(config, topic),
                                       metadata=sink_metadata(result, topic, str(root / topic)))

    job = dg.define_asset_job(
        f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*[s.key for s in specs]),
        tags={CONNECTOR_TAG: config.name}, description=f"One micro-batch of {config.name}",
    )
    return ConnectorDefs(assets=[_sink], jobs=[job], keys=[s.key for s in specs])


def connector_defs(config: SqlSourceConfig | ParquetSinkConfig) -> ConnectorDefs:
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
