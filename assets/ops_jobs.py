"""The operations as Dagster jobs, launchable from the UI (Launchpad): ``headrace_status``,
``headrace_pause``, ``headrace_resume``, ``headrace_offsets_reset`` and ``headrace_offsets_set``; with a
``postgres_cdc`` connector, ``headrace_cdc_snapshot`` too.

Run config names only the connector and the target (never a secret: connection details come from
the connector files and resources). They do what ``headrace status|pause|resume|offsets`` do, with the
run's own Dagster instance; an offsets change is refused while a run of the connector is in flight.
These jobs carry ``headrace/operation`` tags, never ``headrace/connector``, so they are not runs of
the connector (and are not held back by its concurrency limit).
"""

from collections.abc import Sequence
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from integrations.errors import HeadraceError
from resources.kafka import KafkaResource

OPERATION_TAG = "headrace/operation"


class StatusConfig(dg.Config):
    """Which connectors to report."""

    connector: str | None = Field(default=None, description="one connector's name; empty: every connector")


class SensorConfig(dg.Config):
    """The connector whose sensor to stop or start."""

    connector: str = Field(description="the connector's name")


class ResetConfig(dg.Config):
    """Where to move every partition of a connector."""

    connector: str = Field(description="the connector's name")
    to: Literal["earliest", "latest", "timestamp"] = Field(
        description="earliest | latest | timestamp (then set `timestamp`)")
    timestamp: str | None = Field(default=None, description="ISO 8601 time, for to: timestamp")


class PartitionOffset(dg.Config):
    """One explicit offset."""

    partition: str = Field(description="sinks: the partition number; sources: the source partition JSON")
    offset: str = Field(description="sinks: the next offset; sources: the offset JSON (null forgets it)")
    topic: str | None = Field(default=None, description="sinks reading several topics: the topic")


class SetConfig(dg.Config):
    """Explicit offsets for some partitions of a connector."""

    connector: str = Field(description="the connector's name")
    offsets: list[PartitionOffset] = Field(description="partition and offset pairs")


class SnapshotConfig(dg.Config):
    """Tables (or a key range of them) a postgres_cdc connector snapshots again while it streams."""

    connector: str = Field(description="the postgres_cdc connector's name")
    tables: list[str] = Field(description="schema.table names it captures")
    filter: str | None = Field(default=None, description="only rows matching this SQL condition, e.g. "
                                                          "id BETWEEN 1 AND 999")


def _fail(e: HeadraceError) -> dg.Failure:
    from integrations.config import redact_url

    return dg.Failure(description=redact_url(str(e)).splitlines()[0] if str(e) else type(e).__name__)


def ops_definitions(configs: Sequence[Any]) -> dg.Definitions:
    """The operations jobs for ``configs`` (their names are what run config may name). The ``kafka``
    resource comes from the connectors' definitions these are merged with."""
    by_name = {c.name: c for c in configs}

    def find(name: str) -> Any:
        if name not in by_name:
            raise dg.Failure(description=f"no connector named {name!r} here (known: {', '.join(sorted(by_name))})")
        return by_name[name]

    @dg.op(description="Logs the status table; its output's metadata holds the rows")
    def headrace_status_op(context: dg.OpExecutionContext, config: StatusConfig, kafka: KafkaResource
                           ) -> dg.Output[list]:
        from headrace.ops_status import connector_status, render, rows_markdown

        chosen = [find(config.connector)] if config.connector else list(by_name.values())
        settings = kafka.settings()
        statuses = [connector_status(c, settings, context.instance) for c in chosen]
        context.log.info("\n" + render(statuses))
        from dataclasses import asdict

        data = [asdict(s) for s in statuses]
        return dg.Output(data, metadata={"connectors": len(data), "status": dg.MetadataValue.json(data),
                                         "table": dg.MetadataValue.md(rows_markdown(statuses))})

    def sensor_op(running: bool) -> dg.OpDefinition:
        @dg.op(name=f"headrace_{'resume' if running else 'pause'}_op",
               description=f"{'Starts' if running else 'Stops'} the connector's sensor")
        def _op(context: dg.OpExecutionContext, config: SensorConfig) -> dg.Output[dict]:
            from headrace.ops_dagster import run_origins, set_sensor

            c = find(config.connector)
            try:
                before, after = set_sensor(context.instance, c.name, running, run_origins(context.dagster_run))
            except HeadraceError as e:
                raise _fail(e) from None
            context.log.info(f"{c.name}: sensor {before} -> {after}")
            return dg.Output({"before": before, "after": after}, metadata={"before": before, "after": after})
        return _op

    def _change(context: dg.OpExecutionContext, name: str, move: Any) -> dg.Output[dict]:
        from headrace.ops_dagster import refuse_in_flight

        c = find(name)
        try:
            refuse_in_flight(context.instance, c.name, exclude=context.run_id)
            change = move(c)
        except HeadraceError as e:
            raise _fail(e) from None
        for line in change.lines() or ["offsets unchanged (already there)"]:
            context.log.info(f"{c.name}: {line}")
        data = change.as_dict()
        return dg.Output(data, metadata={"changed": len(change.changed), "change": dg.MetadataValue.json(data)})

    @dg.op(description="Moves every partition of a connector to earliest, latest or a timestamp")
    def headrace_offsets_reset_op(context: dg.OpExecutionContext, config: ResetConfig, kafka: KafkaResource
                                  ) -> dg.Output[dict]:
        from headrace import ops_offsets

        return _change(context, config.connector,
                       lambda c: ops_offsets.reset(c, kafka.settings(), config.to, config.timestamp))

    @dg.op(description="Sets explicit offsets of some partitions of a connector")
    def headrace_offsets_set_op(context: dg.OpExecutionContext, config: SetConfig, kafka: KafkaResource
                                ) -> dg.Output[dict]:
        from headrace import ops_offsets
        from integrations.registry import is_source

        def move(c: Any) -> Any:
            settings = kafka.settings()
            if is_source(c):
                new = ops_offsets.source_explicit(c, [(p.partition, p.offset) for p in config.offsets])
            else:
                try:
                    values = [(p.topic, int(p.partition), int(p.offset)) for p in config.offsets]
                except ValueError:
                    raise dg.Failure(description="a sink's partition and offset are integers") from None
                new = ops_offsets.sink_explicit(c, settings, values)
            return ops_offsets.apply(c, settings, new)

        return _change(context, config.connector, move)

    @dg.op(description="Asks a postgres_cdc connector to snapshot tables (or a key range) again while it streams")
    def headrace_cdc_snapshot_op(context: dg.OpExecutionContext, config: SnapshotConfig) -> dg.Output[dict]:
        from integrations.sources.postgres_cdc_signals import request_snapshot

        c = find(config.connector)
        try:
            sid = request_snapshot(c, config.tables, config.filter)
        except HeadraceError as e:
            raise _fail(e) from None
        context.log.info(f"{c.name}: snapshot of {', '.join(config.tables)} requested (signal {sid}); it runs in "
                         "the connector's next micro-batch")
        data = {"signal": sid, "tables": config.tables, "filter": config.filter or ""}
        return dg.Output(data, metadata=data)

    def job(name: str, op: Any, what: str) -> dg.JobDefinition:
        @dg.job(name=name, executor_def=dg.in_process_executor, tags={OPERATION_TAG: what},
                description=f"headrace {what.replace('_', ' ')} (see docs/operations.md)")
        def _job() -> None:
            op()
        return _job

    return dg.Definitions(jobs=[
        job("headrace_status", headrace_status_op, "status"),
        job("headrace_pause", sensor_op(False), "pause"),
        job("headrace_resume", sensor_op(True), "resume"),
        job("headrace_offsets_reset", headrace_offsets_reset_op, "offsets_reset"),
        job("headrace_offsets_set", headrace_offsets_set_op, "offsets_set"),
        *([job("headrace_cdc_snapshot", headrace_cdc_snapshot_op, "cdc_snapshot")]
          if any(getattr(c, "type", None) == "postgres_cdc" for c in configs) else []),
    ])
