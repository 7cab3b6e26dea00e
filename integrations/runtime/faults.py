"""Named fault points for crash tests: ``HEADRACE_FAULT=<name>`` kills the process there with SIGKILL.

Only the tests set the variable; in production it is unset and a fault point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """Die abruptly (SIGKILL, no cleanup) when ``HEADRACE_FAULT`` names this point."""
    if os.environ.get("HEADRACE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
