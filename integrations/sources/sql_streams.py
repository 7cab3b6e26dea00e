"""Background reading of result streams for the SQL reader: one stream read ahead in a thread
(``prefetch``), or several read at once and interleaved (``merge_streams``, parallel key ranges)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any


def prefetch(it: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Run ``it`` in a background thread, ``depth`` items ahead (reading overlaps producing)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            item = (done, None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            item = (done, e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    t = threading.Thread(target=work, name="headrace-sql-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        t.join()


def merge_streams(streams: list[Iterator[Any]], depth: int = 2) -> Iterator[Any]:
    """Run each of ``streams`` in its own thread and yield their items as they arrive (interleaved);
    at most ``depth`` items per stream wait in memory. The first error of any stream is raised once the
    others are stopped; closing the generator stops them all."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth * len(streams)))
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(it: Iterator[Any]) -> None:
        err: BaseException | None = None
        try:
            for item in it:
                if not put((item, None)):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            err = e
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        put((done, err))

    threads = [threading.Thread(target=work, args=(it,), name=f"headrace-sql-range-{i}", daemon=True)
               for i, it in enumerate(streams)]
    for t in threads:
        t.start()
    left = len(threads)
    try:
        while left:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                left -= 1
                continue
            yield item
    finally:
        stop.set()
        for t in threads:
            t.join()
