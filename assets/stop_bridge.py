"""Dagster's run termination ends a connector's run at a batch boundary, as SIGTERM does for the CLI.

How Dagster tells an op to stop:

- the default run launcher's termination, and the multiprocess executor's termination of a step,
  send the step's process SIGINT (``dagster_shared.ipc.send_interrupt``); Kubernetes, Docker and ECS
  launchers stop the run worker with SIGTERM, which Dagster maps to SIGINT;
- Dagster's own handler would then raise ``DagsterExecutionInterruptedError`` wherever the op is,
  in the middle of a batch;
- the run is marked ``CANCELING`` in the instance before any of that.

``stoppable`` runs the engine call with ``runtime.stopping``'s handlers on SIGINT and SIGTERM instead
(main thread only; Dagster's handlers come back afterwards), and a watcher thread that polls the
run's status, so that either way ``stopping.request`` is called and the engine stops after its
current batch is acknowledged and stored. The op then fails with ``dg.Failure(allow_retries=False)``
and the stop's one line: Dagster would retry an interrupted step under the op's retry policy, which is
not what a termination asks for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from integrations.runtime import stopping

T = TypeVar("T")
_ENDING = {dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED}


def _terminating(context: dg.OpExecutionContext) -> bool:
    run = context.instance.get_run_by_id(context.run_id)
    return run is not None and run.status in _ENDING


def _watch(context: dg.OpExecutionContext, done: threading.Event, every: float) -> None:
    while not done.wait(every):
        try:
            if _terminating(context):
                stopping.request("the Dagster run is being terminated")
                return
        except Exception:  # noqa: BLE001 - the instance briefly unreachable: look again later
            continue


def stoppable(context: dg.OpExecutionContext, fn: Callable[..., T], *args: Any, poll_seconds: float = 2.0,
              **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` (``run_source``/``run_sink``), ended at a batch boundary when Dagster
    terminates the run (signal or ``CANCELING`` status); raises ``dg.Failure`` (no retry) then, after
    everything before the boundary is stored."""
    stopping.reset()  # a stop of an earlier op in this process is not this op's
    if _terminating(context):
        stopping.request("the Dagster run is being terminated")
    done = threading.Event()
    threading.Thread(target=_watch, args=(context, done, poll_seconds), name="headrace-stop-bridge",
                     daemon=True).start()
    try:
        with stopping.installed():
            return fn(*args, **kwargs)
    except stopping.StopRequested as e:
        context.log.warning(str(e))
        raise dg.Failure(description=str(e), allow_retries=False) from e
    finally:
        done.set()
