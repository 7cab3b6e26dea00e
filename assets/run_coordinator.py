"""The run queue, plus the ``headrace/connector`` tag on every run of a connector's steps.

Jobs that Headrace defines carry the tag, but runs Dagster builds itself do not: a backfill launched
from the UI (its runs execute the partitioned multi-asset under Dagster's implicit asset job), or a
"Materialize" of selected assets. Without the tag the UI cannot filter them by connector, and the
run queue's one-run-per-connector limit (dagster.yaml) does not hold them back. This coordinator
reads the connector of every op the run executes (the op tag ``headrace/connector``, from the run's
job snapshot) and, when they all belong to one connector, tags the run with it before queuing it.
"""

from __future__ import annotations

from dagster import DagsterRun
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

CONNECTOR_TAG = "headrace/connector"  # assets.shared.CONNECTOR_TAG (not imported: the daemon loads this module)


def connectors_of(instance: object, run: DagsterRun) -> set[str]:
    """The ``headrace/connector`` op tags of the ops ``run`` executes (every op of its job when the
    plan cannot be read)."""
    snap = instance.get_job_snapshot(run.job_snapshot_id) if run.job_snapshot_id else None
    if snap is None:
        return set()
    tags_of = {d.name: dict(d.tags or {}) for d in snap.node_defs_snapshot.op_def_snaps}
    ops = {n.node_def_name for n in snap.dep_structure_snapshot.node_invocation_snaps}
    if run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        steps = set(run.step_keys_to_execute or plan.step_keys_to_execute or [s.key for s in plan.steps])
        ops = {n.node_def_name for n in snap.dep_structure_snapshot.node_invocation_snaps
               if n.node_name in steps} or ops
    return {tags_of[o][CONNECTOR_TAG] for o in ops if CONNECTOR_TAG in tags_of.get(o, {})}


def tag_connector(instance: object, run: DagsterRun) -> DagsterRun:
    """``run`` with the ``headrace/connector`` tag added (in the instance too) when it has none and all
    its ops belong to one connector; else ``run`` unchanged."""
    if CONNECTOR_TAG in run.tags:
        return run
    found = connectors_of(instance, run)
    if len(found) != 1:
        return run
    instance.add_run_tags(run.run_id, {CONNECTOR_TAG: found.pop()})
    return instance.get_run_by_id(run.run_id) or run


class HeadraceRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that tags a run with its connector when Dagster built the run."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Queue the run, tagged with ``headrace/connector`` when all its ops are one connector's."""
        run = tag_connector(self._instance, context.dagster_run)
        if run is not context.dagster_run:
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
