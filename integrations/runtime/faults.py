"""Named fault points for crash tests: ``HEADRACE_FAULT=<name>`` kills the process there with SIGKILL.

``HEADRACE_FAULT_ACTION=stall`` makes the point hang instead (for a test that kills the process
from outside at a known place), ``HEADRACE_FAULT_ACTION=pause`` stops the process there (SIGSTOP to
itself, for a test that acts while the run is paused at a known place and then sends SIGCONT), and ``HEADRACE_FAULT_ONCE=<file>`` fires it only in the first
process to get there: that process creates the file (atomically) and writes its pid into it, so a
retry passes the point. Only the tests set these; in production a fault point costs one lookup.
"""

from __future__ import annotations

import os
import signal
import time


def fault_point(name: str) -> None:
    """Die abruptly (SIGKILL, no cleanup), stall or pause, when ``HEADRACE_FAULT`` names this point."""
    if os.environ.get("HEADRACE_FAULT") != name:
        return
    once = os.environ.get("HEADRACE_FAULT_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    action = os.environ.get("HEADRACE_FAULT_ACTION")
    if action == "stall":
        time.sleep(3600)
        return
    if action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)  # resumes here on SIGCONT
        return
    os.kill(os.getpid(), signal.SIGKILL)
