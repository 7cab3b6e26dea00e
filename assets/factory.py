"""Connector configs → Dagster assets and jobs.

A source connector is a multi-asset that materializes its topics, each depending on its external
input (a table, a query, a folder): ``assets.sources``. A sink connector is a multi-asset that
materializes one dataset or table per topic: ``assets.sinks``; a Parquet sink with the time
partitioner and ``partition_start_date`` has a time-partitioned dataset (``assets.partitioned``). A
connector with ``continuous`` runs as one long-lived run (``assets.continuous``).

A source's micro-batch job also selects the sinks it feeds (:func:`chain_sinks`): one run writes the
topic, then the datasets and tables, with one run worker start and no sensor tick in between.
Runs of one connector never overlap: steps are in the pool ``headrace_<connector>`` and runs carry
the tag ``headrace/connector`` (one run per value, see dagster.yaml).
"""

from __future__ import annotations

import os

import dagster as dg

from assets.keys import topic_key
from assets.partitioned import replaced_by_asset, touched_partitions  # noqa: F401 (re-exported)
from assets.shared import CONNECTOR_TAG, DLQ_CHECK, RANGES_TAG, RETRY, ConnectorDefs, pool_of  # noqa: F401
from assets.sinks import FolderOwners, database_label_kind, sink_defs, time_partitions  # noqa: F401
from assets.sources import source_defs, source_inputs, source_job  # noqa: F401 (re-exported)
from integrations.registry import is_source


def connector_defs(config: object) -> ConnectorDefs:
    """Definitions of one connector, by kind (continuous mode adds its long-lived job and sensor; a
    connector with ``tasks_max > 1`` is one step per task, ``assets.tasks``)."""
    from assets.tasks import supports_tasks, task_defs

    if supports_tasks(config):
        return task_defs(config)
    d = source_defs(config) if is_source(config) else sink_defs(config)
    if getattr(config, "continuous", None) is not None:
        from assets.continuous import continuous_defs

        continuous_defs(config, d)
    return d


def chain_enabled() -> bool:
    """Whether source jobs include the sinks they feed (``HEADRACE_CHAIN_SINKS=0`` turns it off)."""
    return os.environ.get("HEADRACE_CHAIN_SINKS", "1") != "0"


def chain_sinks(configs: list, defs: dict[str, ConnectorDefs]) -> dict[str, list[str]]:
    """Give each micro-batch source's job the sinks reading its topics (non-partitioned, not continuous);
    returns ``{sink name: [names of the source jobs that run it]}``."""
    chained: dict[str, list[str]] = {}
    if not chain_enabled():
        return chained
    sinks = [c for c in configs if not is_source(c) and defs[c.name].chainable]
    for c in configs:
        if not is_source(c) or getattr(c, "continuous", None) is not None or c.tasks_max > 1:
            continue
        d = defs[c.name]
        fed = [(s.name, defs[s.name].keys) for s in sinks if defs[s.name].upstream & set(d.keys)]
        if not fed:
            continue
        job = source_job(c, d.keys, fed)
        d.jobs = [job if j is d.sensor_job else j for j in d.jobs]
        d.sensor_job = job
        for name, _ in fed:
            chained.setdefault(name, []).append(job.name)
    return chained


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
