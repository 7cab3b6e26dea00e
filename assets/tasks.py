"""A connector with ``tasks_max > 1`` as a graph-backed multi-asset: one op (step) per task, fanned out,
and one gather op that turns the tasks' results into the assets' materializations.

Each task op calls ``run_sink(config, task=i)`` / ``run_source(config, task=i)``: its own partitions
(tables, key ranges), its own fence, its own offsets (``integrations.runtime.tasks``). The executor
decides where the steps run: ``HEADRACE_TASK_EXECUTOR`` names it (``task_executor``): ``multiprocess``
(the default: one process per step on the run worker's machine), ``k8s`` (``k8s_job_executor``: one
pod per step), ``celery_k8s``, ``docker`` or ``in_process``; see docs/deploy.md. Task results are small pickled objects (ranges, rows,
file names), passed to the gather op by the IO manager: on several machines that must be a shared one
(e.g. an object store's), as docs/deploy.md shows.

Every task op retries on its own (``RETRY``) and runs in its own concurrency pool
``headrace_<connector>_task<i>``, so tasks of one run run side by side while two runs of a task never
do; the connector's run tag still keeps two runs of the connector apart. After a task failed for good,
re-executing the run from failure runs only the failed tasks and the gather: the tasks that succeeded
stored their offsets, the failed ones resume from theirs.

The assets, checks, specs and sensor target are those of the single-task definitions
(``assets.factory.connector_defs`` of the same config with ``tasks_max: 1``); only the computation and
the job differ. Supported: plain sinks (Parquet without time partitions, tables) and SQL/file sources,
not in continuous mode (``supports_tasks``); for the others the single step runs every task in turn.
"""

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

from assets.keys import clean, routers_of, sink_assets
from assets.metadata import sink_metadata, source_metadata
from assets.orphan_guard import die_with_run_worker
from assets.sinks import sink_where
from assets.stop_bridge import stoppable
from resources.kafka import KafkaResource

CONNECTOR_TAG = "headrace/connector"  # the same run tag as the single-task jobs (assets.factory)
RANGES_TAG = "headrace/ranges"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


_EXECUTORS = {
    "multiprocess": ("dagster", "multiprocess_executor"),
    "in_process": ("dagster", "in_process_executor"),
    "k8s": ("dagster_k8s", "k8s_job_executor"),
    "celery_k8s": ("dagster_celery_k8s", "celery_k8s_job_executor"),
    "docker": ("dagster_docker", "docker_executor"),
}


def task_executor() -> dg.ExecutorDefinition:
    """The executor of tasked connectors' jobs, from ``HEADRACE_TASK_EXECUTOR`` (default multiprocess)."""
    import importlib

    from integrations.errors import ConfigError

    name = os.environ.get("HEADRACE_TASK_EXECUTOR", "multiprocess")
    if name not in _EXECUTORS:
        raise ConfigError(f"HEADRACE_TASK_EXECUTOR={name!r} is not one of {sorted(_EXECUTORS)}")
    module, attr = _EXECUTORS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError:
        raise ConfigError(f"HEADRACE_TASK_EXECUTOR={name}: install {module.replace('_', '-')} in the code "
                          "location's image") from None


def supports_tasks(config: Any) -> bool:
    """True when the connector's tasks can be separate steps (see the module doc)."""
    if config.tasks_max <= 1 or getattr(config, "continuous", None) is not None:
        return False
    if config.type == "parquet_sink":
        return not (config.partitioner == "time" and config.partition_start_date)
    return config.type in ("table_sink", "sql_source", "file_source")


def task_pool(name: str, task: int) -> str:
    """The concurrency pool of one task's steps."""
    return f"headrace_{clean(name)}_task{task}"


def _check_out(key: dg.AssetKey, check: str) -> str:
    return f"{key.to_python_identifier()}_{check}"


def _task_op(config: Any, task: int, source: bool) -> dg.OpDefinition:
    @dg.op(name=f"{clean(config.name)}_task_{task}", retry_policy=RETRY, pool=task_pool(config.name, task),
           tags={CONNECTOR_TAG: config.name}, out=dg.Out(dg.Any),
           description=f"Task {task} of {config.tasks_max} of connector {config.name}")
    def _op(context: dg.OpExecutionContext, kafka: KafkaResource) -> Any:
        die_with_run_worker()
        settings = kafka.settings()
        if source:
            from integrations.runtime.source_runner import run_source

            result = stoppable(context, run_source, config, settings, task=task)
            context.log.info(f"{config.name} task {task}: moved {result.rows} rows in {result.seconds:.1f}s")
            return result
        from integrations.runtime.checks import ranges_from_tag
        from integrations.runtime.sink_runner import run_sink

        tag = context.run.tags.get(RANGES_TAG)
        result = stoppable(context, run_sink, config, settings, ranges=ranges_from_tag(tag) if tag else None,
                           task=task)
        context.log.info(f"{config.name} task {task}: wrote {result.rows} rows from "
                         f"{sorted({(r.topic, r.partition) for r in result.ranges})}")
        return result

    return _op


def _dlq(key: dg.AssetKey, config: Any, checks: set[str], count: int) -> Iterator[dg.AssetCheckResult]:
    for name in checks:
        yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=count <= config.dlq_max_records,
                                  severity=dg.AssetCheckSeverity.ERROR,
                                  metadata={"dead_lettered": count, "threshold": config.dlq_max_records,
                                            "dlq_topic": config.dlq_topic or ""})


def _sink_outputs(config: Any, result: Any, specs: list[dg.AssetSpec], names: dict[dg.AssetKey, str]
                  ) -> Iterator[tuple[dg.AssetKey, dg.Output]]:
    table = config.type == "table_sink"
    target_name = None if not routers_of(config) else (config.table_for if table else str)
    by_key = {a.key: a for a in sink_assets(config)}
    for spec in specs:
        a = by_key[spec.key]
        meta = sink_metadata(result, a.sources, sink_where(config, a), target_name)
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        meta["tasks"] = dg.MetadataValue.int(config.tasks_max)
        yield spec.key, dg.Output(None, names[spec.key], metadata=meta)


def _source_outputs(config: Any, result: Any, specs: list[dg.AssetSpec], names: dict[dg.AssetKey, str],
                    kafka: KafkaResource) -> Iterator[tuple[dg.AssetKey, dg.Output]]:
    from integrations.runtime.source_runner import TopicStats

    settings = kafka.settings()
    by_topic = result.by_topic()
    for spec in specs:
        topic = spec.metadata["topic"]
        stats = by_topic.get(topic, TopicStats(topic=topic))
        ends = {p: hi for p, (_lo, hi) in settings.watermarks(topic).items()}
        meta = source_metadata(stats, result.seconds, ends)
        meta["dead_lettered"] = dg.MetadataValue.int(result.dead_lettered)
        meta["tasks"] = dg.MetadataValue.int(config.tasks_max)
        yield spec.key, dg.Output(None, names[spec.key], metadata=meta)


def _gather_op(config: Any, source: bool, specs: list[dg.AssetSpec], checks: dict[dg.AssetKey, set[str]],
               names: dict[dg.AssetKey, str], upstream: dict[dg.AssetKey, str]) -> dg.OpDefinition:
    outs = {names[s.key]: dg.Out(dg.Nothing) for s in specs}
    outs.update({_check_out(k, c): dg.Out(dg.Nothing) for k, cs in checks.items() for c in cs})
    ins = {f"task_{i}": dg.In(dg.Any) for i in range(config.tasks_max)}
    ins.update({n: dg.In(dg.Nothing) for n in upstream.values()})

    @dg.op(name=f"{clean(config.name)}_gather", ins=ins, out=outs, tags={CONNECTOR_TAG: config.name},
           description=f"The {config.tasks_max} task results of {config.name} as its assets' materializations")
    def _gather(context: dg.OpExecutionContext, kafka: KafkaResource, **results: Any) -> Iterator:
        parts = [results[f"task_{i}"] for i in range(config.tasks_max)]
        if source:
            from integrations.runtime.source_runner import merge_results

            merged = merge_results(config.name, parts)
            outputs = _source_outputs(config, merged, specs, names, kafka)
        else:
            from integrations.runtime.sink_runner import merge_results

            merged = merge_results(config.name, parts)
            outputs = _sink_outputs(config, merged, specs, names)
        context.log.info(f"{config.name}: {config.tasks_max} tasks moved {merged.rows} rows "
                         f"({[p.rows for p in parts]} per task)")
        for key, out in outputs:
            yield out
            yield from _dlq(key, config, checks.get(key, set()), merged.dead_lettered)

    return _gather


def _graph(config: Any, source: bool, specs: list[dg.AssetSpec], checks: dict[dg.AssetKey, set[str]],
           names: dict[dg.AssetKey, str], upstream: dict[dg.AssetKey, str]) -> dg.GraphDefinition:
    """task ops → gather op; the upstream assets (tables, topics) are Nothing inputs of the gather."""
    ops = [_task_op(config, i, source) for i in range(config.tasks_max)]
    gather = _gather_op(config, source, specs, checks, names, upstream)
    deps = {gather.name: {f"task_{i}": dg.DependencyDefinition(op.name, "result") for i, op in enumerate(ops)}}
    return dg.GraphDefinition(
        name=f"{clean(config.name)}_{'source' if source else 'sink'}",
        node_defs=[*ops, gather], dependencies=deps,
        input_mappings=[dg.InputMapping(graph_input_name=n, mapped_node_name=gather.name, mapped_node_input_name=n)
                        for n in upstream.values()],
        output_mappings=[dg.OutputMapping(graph_output_name=o, mapped_node_name=gather.name,
                                          mapped_node_output_name=o) for o in gather.outs],
    )


def task_defs(config: Any) -> Any:
    """The ``ConnectorDefs`` of a connector with ``tasks_max > 1`` (``supports_tasks``): its single-task
    definitions with the multi-asset replaced by a graph of one op per task plus a gather op, and a
    job (same name and tags) on ``task_executor()``."""
    from assets.factory import connector_defs
    from integrations.registry import is_source

    base = connector_defs(config.model_copy(update={"tasks_max": 1}))
    (single,) = [a for a in base.assets if isinstance(a, dg.AssetsDefinition) and set(a.keys) & set(base.keys)]
    specs = list(single.specs)
    checks: dict[dg.AssetKey, set[str]] = {}
    for c in single.check_specs:
        checks.setdefault(c.asset_key, set()).add(c.name)
    names = {s.key: s.key.to_python_identifier() for s in specs}
    upstream = {d.asset_key: f"dep_{d.asset_key.to_python_identifier()}" for s in specs for d in s.deps}
    source = is_source(config)
    graph = _graph(config, source, specs, checks, names, upstream)
    _tasks = dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name={n: k for k, n in upstream.items()},
        keys_by_output_name={names[s.key]: s.key for s in specs},
        internal_asset_deps={names[s.key]: {d.asset_key for d in s.deps} for s in specs},
        group_names_by_output_name={names[s.key]: s.group_name for s in specs},
        descriptions_by_output_name={names[s.key]: s.description for s in specs if s.description},
        metadata_by_output_name={names[s.key]: s.metadata for s in specs},
        tags_by_output_name={names[s.key]: s.tags for s in specs},
        owners_by_output_name={names[s.key]: s.owners for s in specs},
        check_specs=list(single.check_specs), can_subset=False,
    )

    job = dg.define_asset_job(f"{clean(config.name)}_job", selection=dg.AssetSelection.assets(*base.keys),
                              tags={CONNECTOR_TAG: config.name}, executor_def=task_executor(),
                              description=f"One micro-batch of {config.name} in {config.tasks_max} tasks")
    assets = [a for a in base.assets if a is not single] + [_tasks]
    # a tasked sink runs in its own job on its executor, not folded into a source's in-process run
    unchained = {"chainable": False} if hasattr(base, "chainable") else {}
    return dataclasses.replace(base, assets=assets, jobs=[job], sensor_job=job, **unchained)
