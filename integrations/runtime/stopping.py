"""Clean stops: SIGTERM, SIGINT (and Dagster's run termination) end a run at a batch boundary.

The engine never dies in the middle of a batch on a stop request. A signal only sets a flag; the
runners call :func:`check` between batches (after the batch's records are acknowledged and its
offsets stored, or its files published and committed) and raise :class:`StopRequested` there. The
CLI turns that into one line and exit code ``128 + signal number`` (143 for SIGTERM, 130 for SIGINT).

Use :func:`install` in a process's main thread (the CLI does). Code that cannot install handlers
(Dagster owns the run worker's signals) calls :func:`request` itself when it learns of a stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from integrations.errors import HeadraceError

_flag = threading.Event()
_reason: list[str] = []


class StopRequested(HeadraceError):
    """A stop was requested; the run ended at a batch boundary with everything before it stored."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """``128 + signal number`` (143 for SIGTERM, 130 for SIGINT); 143 when no signal is known."""
        return 128 + (self.signum or int(signal.SIGTERM))


_signum: list[int] = []


def request(reason: str = "stop requested", signum: int | None = None) -> None:
    """Ask the running connector to stop at its next batch boundary (thread-safe, idempotent)."""
    if not _flag.is_set():
        _reason.append(reason)
        if signum is not None:
            _signum.append(signum)
    _flag.set()


def requested() -> bool:
    """True once a stop was requested."""
    return _flag.is_set()


def check(where: str) -> None:
    """Raise :class:`StopRequested` if a stop was requested; ``where`` names the connector and point."""
    if _flag.is_set():
        reason = _reason[0] if _reason else "stop requested"
        raise StopRequested(f"{where}: stopped at a batch boundary ({reason}); everything before it is stored",
                            _signum[0] if _signum else None)


def reset() -> None:
    """Forget a stop request (a new run in the same process, tests)."""
    _flag.clear()
    _reason.clear()
    _signum.clear()


def _handler(signum: int, _frame: Any) -> None:
    request(f"received {signal.Signals(signum).name}", signum)


def install() -> None:
    """Make SIGTERM and SIGINT request a stop instead of killing the process (main thread only)."""
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


@contextmanager
def installed() -> Iterator[None]:
    """:func:`install` for the duration of a block, restoring the previous handlers afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    install()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
