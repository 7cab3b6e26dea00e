"""Timed child processes: wall time from spawn (start-up included), peak RSS and the load average.

Batch processes (Headrace's CLI, the Python peers) are timed until they exit. A Kafka Connect worker never
exits by itself: it is timed until ``done()`` (a check of its output) first holds, polled every 50 ms, then
stopped; its shutdown is not timed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Timed:
    """One measured process."""

    seconds: float
    peak_rss_mb: float
    load_avg: float  # mean of the 1-minute load average sampled every 0.5 s during the run
    load_max: float
    returncode: int
    log: str = field(default="", repr=False)


class _LoadSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(0.5):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> tuple[float, float]:
        self._stop_evt.set()
        self.join()
        self.samples.append(os.getloadavg()[0])
        return sum(self.samples) / len(self.samples), max(self.samples)


def _peak_rss_of_tree(pid: int) -> float:
    """VmHWM of a live process and its live children, in MB (for a worker that is killed, not waited)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def run_batch(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
              timeout: float = 3600) -> Timed:
    """Run ``cmd`` to completion; its wall time, peak RSS and load.

    Peak RSS is the process's VmHWM polled every 5 ms (``wait4``'s maxrss would report the harness's own
    size: Linux keeps the high-water mark of the forked copy across exec)."""
    log_path = Path(f"/tmp/headrace-peers-{os.getpid()}-{time.monotonic_ns()}.log")
    sampler = _LoadSampler()
    sampler.start()
    with open(log_path, "w+b") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        peak = 0.0
        while True:
            peak = max(peak, _peak_rss_of_tree(proc.pid))
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, _usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        avg, mx = sampler.stop()
        log.seek(0)
        text = log.read().decode(errors="replace")
    log_path.unlink(missing_ok=True)
    return Timed(seconds, round(peak, 1), round(avg, 2), round(mx, 2), proc.returncode, text)


def run_until(cmd: Sequence[str], done: Callable[[], bool], *, env: dict[str, str] | None = None,
              log_path: Path, timeout: float = 1800, poll: float = 0.05) -> Timed:
    """Start a long-lived process, time it until ``done()`` holds, then stop it (SIGTERM, then SIGKILL)."""
    sampler = _LoadSampler()
    sampler.start()
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        ok, why = False, "timed out"
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    why = "exited early"
                    break
                try:
                    if done():
                        ok = True
                        break
                except RuntimeError as e:
                    why = str(e)
                    break
                time.sleep(poll)
            seconds = time.perf_counter() - t0
            peak = _peak_rss_of_tree(proc.pid)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    avg, mx = sampler.stop()
    rc = 0 if ok else (124 if why != "exited early" else proc.returncode or 1)  # 124: we stopped it
    text = log_path.read_text(errors="replace") + ("" if ok else f"\n{why} after {seconds:.0f} s")
    return Timed(seconds, round(peak, 1), round(avg, 2), round(mx, 2), rc, text)
