"""Progress of a long run: rows done, rate and time left, logged every few seconds, and a progress bar
on a terminal.

The engine reports through :class:`Progress` (created per run by the producing loop of a source and
the consume loop of a sink). Every ``HEADRACE_PROGRESS_INTERVAL`` seconds (default 5) it logs one INFO
line on the ``headrace.progress`` logger, e.g. ``sink lake: 120,000/400,000 records (30%), 41,200/s,
about 7s left``; a run shorter than the interval logs nothing. Dagster shows these lines in the run
log when ``headrace`` is among the instance's ``python_logs.managed_python_loggers``.

:func:`use_bar` (the ``headrace`` CLI calls it when stderr is a terminal) draws a tqdm bar instead of
the lines. Never on by default: a Dagster run worker whose stderr happens to be a terminal (``dagster
dev`` in a shell) keeps plain log lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("headrace.progress")
_BAR = {"on": False}


def use_bar(on: bool = True) -> None:
    """Draw a progress bar on stderr instead of logging progress lines (for the CLI on a terminal)."""
    _BAR["on"] = on


def interval() -> float:
    """Seconds between progress lines (``HEADRACE_PROGRESS_INTERVAL``, default 5; 0 reports every batch)."""
    try:
        return max(0.0, float(os.environ.get("HEADRACE_PROGRESS_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _eta(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


class Progress:
    """Counts one run's rows (or records) and reports them every :func:`interval` seconds.

    ``what`` names the run in each line (``source shop``, ``sink lake``); ``total`` (when known) gives
    a percentage and the time left. ``update`` sets the count, ``add`` adds to it; both are cheap enough
    to call per batch (one clock read)."""

    def __init__(self, what: str, total: int | None = None, unit: str = "rows") -> None:
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.started = time.monotonic()
        self.every = interval()
        self.next_report = self.started + self.every
        self.lines = 0
        self._bar: Any = None
        if _BAR["on"]:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=f" {unit}", unit_scale=True, desc=what, file=sys.stderr,
                             dynamic_ncols=True, leave=False)

    def add(self, n: int) -> None:
        """Count ``n`` more."""
        self.update(self.done + n)

    def update(self, done: int) -> None:
        """Set the count to ``done``; report when the interval has passed."""
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if now >= self.next_report:
            self.next_report = now + self.every
            if self._bar is None:
                log.info(self.line(now))
                self.lines += 1

    def line(self, now: float | None = None) -> str:
        """The progress line: count, share of the total, rate and time left."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            left = max(self.total - self.done, 0)
            eta = f", about {_eta(left / rate)} left" if rate > 0 else ""
            return f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%), {rate:,.0f}/s{eta}"
        return f"{self.what}: {self.done:,} {self.unit}, {rate:,.0f}/s"

    def close(self) -> None:
        """End the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
