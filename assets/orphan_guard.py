"""Step processes die with their run worker.

The multiprocess executor runs each step in a child process of the run worker. When the run worker
is killed (``kill -9``, the OOM killer), that child lives on as an orphan and would keep reading and
writing next to the retry of its run. A step calls ``die_with_run_worker()`` first: a daemon thread
watches the parent and kills the step (SIGKILL, like any crash, which the sinks' exactly-once
writes and the sources' stored offsets already survive) within a second of the parent's death.
In-process execution (``execute_in_process``, ``dagster asset materialize``) has no parent run
worker, and the guard does nothing.
"""

import multiprocessing
import os
import signal
import threading
import time

_watching = False


def die_with_run_worker(poll_seconds: float = 1.0) -> None:
    """In a multiprocess-executor step, SIGKILL this process once its run worker is gone (idempotent)."""
    global _watching
    parent = multiprocessing.parent_process()
    if parent is None or _watching or parent.pid is None:
        return
    _watching = True
    ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != ppid:  # re-parented: the run worker died
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="headrace-orphan-guard", daemon=True).start()
