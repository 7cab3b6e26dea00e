"""Spooling-directory file source (Kafka Connect's SpoolDir): CSV, JSON lines and Parquet files → Kafka.

- **Partitions.** One source partition per file, ``{"file": <path relative to input_path>}``, listed
  in name order: files matching ``input_file_pattern``, older than ``file_minimum_age``, not hidden
  (no segment starting with ``.``), outside ``finished_path`` / ``error_path``.
- **Offsets.** ``{"size", "mtime_ns" | "blake2b", "record": <next record number>, "done": bool}``.
  The identity (size + mtime, or a content hash) tells whether a stored offset belongs to this very
  file; a changed file is read again from record 0, unless it stopped at a bad record and its lines
  before that one are unchanged (``stopped``: the line and a digest of the lines before it): a fixed
  file resumes where it stopped, as SpoolDir does. A crash mid-file resumes at ``record``.
- **Cleanup after the offset.** The runner stores a batch's offset before it asks the generator for
  the next batch, so when ``poll`` resumes after its last batch (``done: true``) the offset is stored
  and the file is finished. The cleanup policy is applied to the run's finished files in ``close()``,
  at the end of the run (and in ``end_turn()``, after every turn of a continuous run). A crash before
  that finds ``done`` on the next run, which only cleans up.
- **Bad records.** Under ``errors_tolerance: all`` a malformed CSV line, a value that does not convert
  to its column's type, or a JSON line that does not parse is skipped and attached to the batch it
  falls in as a ``Rejected`` (its text, ``line N``), which the runner dead-letters before the batch's
  offset is stored; the file then finishes normally. Each line is filed under a record number that
  depends only on the file (``FileRejects``), so a re-read after a crash skips the lines already
  reported with their batch; a batch cut by the runner's row budget stores ``rejects_from`` so that
  its lines are reported by the next run. Under ``none`` the records before a bad value are sent and
  their offset stored, then the file fails with ``BadRecord`` (line, column, value).
- **Bad files.** A parse error (or a bad record under ``none``) stops the file; the error names the
  line. ``halt_on_error: true`` raises ``FileSourceError``: the run stops, the file stays in place
  and nothing of the run is moved or deleted (files finished before it are cleaned up by the next
  run). ``false`` moves the file to ``error_path`` at once and the run goes on. Records read before
  the error are delivered first (the look-ahead batch, then the rest before the bad record, or before
  the block that does not parse).
- **Throughput.** The next batch is parsed in a worker thread while the runner delivers this one, so
  at most three batches are in memory (the one in flight, the one looked ahead at, the one parsing).
- **Confinement.** Files are only listed under ``input_path``; a relative name with ``..`` or an
  absolute name is refused, as is a local symlink resolving outside the root; destinations under
  ``finished_path`` / ``error_path`` are checked the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import posixpath
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from integrations.config import FileSourceConfig, resolve_env, resolve_path
from integrations.errors import ConfigError, HeadraceError
from integrations.runtime.errors import Rejected
from integrations.runtime.faults import fault_point
from integrations.sources.base import Source, SourceBatch
from integrations.sources.files_readers import (
    DATA_ERRORS,
    BadLine,
    BadRecord,
    FileRejects,
    empty_table,
    locate_malformed_line,
    prefix_digest,
    read_tables,
)

log = logging.getLogger("headrace.source.files")


class FileSourceError(HeadraceError):
    """A file could not be read and ``halt_on_error`` is true."""


def open_location(location: str, storage_options: dict[str, str]) -> tuple[pafs.FileSystem, str, bool]:
    """The filesystem, the folder inside it, and whether it is the local disk."""
    raw = resolve_env(location)
    if "://" not in raw or raw.startswith("file://"):
        return pafs.LocalFileSystem(), os.path.realpath(resolve_path(raw.removeprefix("file://"))), True
    scheme, _, rest = raw.partition("://")
    opts = {k: resolve_env(v) for k, v in storage_options.items()}
    if scheme in ("s3", "s3a"):
        keys = ("endpoint_override", "region", "access_key", "secret_key", "scheme", "session_token")
        return pafs.S3FileSystem(**{k: v for k, v in opts.items() if k in keys}), rest.rstrip("/"), False
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fsspec.filesystem(scheme, **opts))), rest.rstrip("/"), False


def safe_join(root: str, rel: str) -> str:
    """``root/rel``, refusing a relative name that is absolute or climbs out of ``root``."""
    if not rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise ConfigError(f"path {rel!r} is not relative to {root!r}")
    parts = rel.replace("\\", "/").split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise ConfigError(f"path {rel!r} escapes or is not normalised under {root!r}")
    out = posixpath.join(root, *parts)
    if not (out + "/").startswith(root.rstrip("/") + "/"):
        raise ConfigError(f"path {rel!r} escapes {root!r}")
    return out


def _under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (filesystems differ on a leading '/'), or None when outside it."""
    p, r = path.strip("/"), root.strip("/")
    if not r:
        return p
    return p[len(r) + 1:] if p.startswith(r + "/") else None


class _Spool:
    """The three folders of a connector and the listing rules."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config
        self.fs, self.root, self.local = open_location(config.input_path, config.storage_options)
        self.finished = open_location(config.finished_path, config.storage_options)[1] if config.finished_path else None
        self.errors = open_location(config.error_path, config.storage_options)[1] if config.error_path else None
        for name, other in (("finished_path", self.finished), ("error_path", self.errors)):
            if other is not None and other.rstrip("/") == self.root.rstrip("/"):
                raise ConfigError(f"connector {config.name}: {name} may not be input_path itself")
        self.pattern = re.compile(config.input_file_pattern)
        self.by_path = "/" in config.input_file_pattern.replace("\\/", "/")

    def _excluded(self, path: str) -> bool:
        return any(d is not None and _under(path, d) is not None for d in (self.finished, self.errors))

    def _confined(self, path: str) -> bool:
        if not self.local:
            return True
        real = os.path.realpath(path)
        return real.startswith(self.root.rstrip("/") + os.sep)

    def ready(self) -> list[tuple[str, pafs.FileInfo]]:
        """``(relative name, FileInfo)`` of every file ready to read, in name order."""
        sel = pafs.FileSelector(self.root, recursive=self.config.recursive, allow_not_found=True)
        now_ns = time.time_ns()
        min_age_ns = int(self.config.file_minimum_age * 1e9)
        out = []
        for info in self.fs.get_file_info(sel):
            rel = _under(info.path, self.root)
            if info.type != pafs.FileType.File or rel is None or self._excluded(info.path):
                continue
            parts = rel.split("/")
            if any(p.startswith(".") for p in parts):
                continue
            if not self.pattern.fullmatch(rel if self.by_path else parts[-1]):
                continue
            if not self._confined(info.path):
                log.warning("file source %s: %s resolves outside %s; refused", self.config.name, rel, self.root)
                continue
            if min_age_ns and info.mtime_ns is not None and now_ns - info.mtime_ns < min_age_ns:
                continue
            out.append((rel, info))
        return sorted(out, key=lambda x: x[0])


def _prefetched(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Read the next table in a worker thread while the caller delivers this one (parsing frees the GIL)."""
    with ThreadPoolExecutor(1, thread_name_prefix="file-source-read") as pool:
        future = pool.submit(next, tables, None)
        while (table := future.result()) is not None:
            future = pool.submit(next, tables, None)
            yield table


def list_ready_files(config: FileSourceConfig) -> list[tuple[str, int, float]]:
    """``(relative name, size, mtime in epoch seconds)`` of files ready to read: the sensor's cheap check."""
    return [(rel, int(info.size or 0), (info.mtime_ns or 0) / 1e9) for rel, info in _Spool(config).ready()]


class FileSource(Source):
    """Reads a spooling directory; one partition per file, resumable per record number."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config
        self.spool = _Spool(config)
        self.fs = self.spool.fs
        self._infos: dict[str, pafs.FileInfo] = {}
        # identity, first record and (when collecting malformed lines) their floor, of the last batch
        self._current: tuple[dict[str, Any], int, int | None] | None = None
        self._truncated = False
        self._finished: list[tuple[str, str, pafs.FileInfo]] = []  # offsets stored as done in this run
        self._halted = False
        self._located: tuple[BaseException, int | None] | None = None  # the last error's malformed line

    def partitions(self) -> list[dict[str, Any]]:
        ready = self.spool.ready()
        self._infos = dict(ready)
        return [{"file": rel} for rel, _ in ready]

    # -- identity and cleanup ----------------------------------------------------------------------
    def _identity(self, path: str, info: pafs.FileInfo) -> dict[str, Any]:
        if self.config.file_identity == "hash":
            h = hashlib.blake2b(digest_size=20)
            with self.fs.open_input_stream(path, compression=None) as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            return {"size": info.size, "blake2b": h.hexdigest()}
        return {"size": info.size, "mtime_ns": info.mtime_ns}

    def _move(self, src: str, dst: str) -> None:
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        if self.spool.local:
            shutil.move(src, dst)  # rename, or copy + delete across devices
        else:
            self.fs.move(src, dst)

    def _finish(self, rel: str, path: str, info: pafs.FileInfo) -> None:
        """Apply the cleanup policy to a file whose last offset is stored."""
        policy = self.config.cleanup_policy
        if policy == "delete":
            self.fs.delete_file(path)
        elif policy in ("move", "move_by_date"):
            assert self.spool.finished is not None
            sub = rel
            if policy == "move_by_date":
                day = dt.datetime.fromtimestamp((info.mtime_ns or time.time_ns()) / 1e9, dt.UTC)
                sub = f"{day:%Y-%m-%d}/{rel}"
            self._move(path, safe_join(self.spool.finished, sub))
        if policy != "none":
            log.info("file source %s: %s finished (%s)", self.config.name, rel, policy)

    def _failure_line(self, path: str, exc: BaseException) -> int | None:
        """The line a file's reading stopped at: a bad record's, or the first malformed CSV line's."""
        if isinstance(exc, BadRecord):
            return exc.line
        if self.config.format == "csv" and "CSV parse error" in str(exc):
            if self._located is None or self._located[0] is not exc:
                self._located = (exc, locate_malformed_line(self.fs, path, self.config))
            return self._located[1]
        return None

    def _stopped(self, path: str, exc: BaseException) -> dict[str, Any] | None:
        """What the offset before a bad record keeps to recognise the file once fixed: the bad line and a
        digest of the lines before it."""
        line = self._failure_line(path, exc)
        digest = prefix_digest(self.fs, path, self.config, line) if line else None
        return {"line": line, "blake2b": digest} if digest else None

    def _fixed(self, rel: str, path: str, offset: dict[str, Any]) -> int | None:
        """The record to resume a changed file at: where it stopped, if it stopped at a bad record and its
        lines before that record are unchanged (the file was fixed); None otherwise."""
        stopped = offset.get("stopped")
        if not stopped or offset.get("done"):
            return None
        if prefix_digest(self.fs, path, self.config, int(stopped["line"])) != stopped["blake2b"]:
            return None
        record = int(offset.get("record", 0))
        log.info("file source %s: %s changed after it stopped at line %s, but not before it: resuming at "
                 "record %d", self.config.name, rel, stopped["line"], record)
        return record

    def _failed(self, rel: str, path: str, record: int, exc: BaseException) -> None:
        if isinstance(exc, BadRecord):
            msg = (f"file source {self.config.name}: bad record in {rel} line {exc.line}: {exc.detail}; the "
                   f"records before it are delivered (offset record {record})")
        else:
            line = self._failure_line(path, exc)
            where = f"{rel}, after record {record}" if record else rel
            msg = f"file source {self.config.name}: cannot read {where}: {type(exc).__name__}: {exc}"
            if line:
                msg += f" (at {rel} line {line})"
        if self.config.halt_on_error:
            self._halted = True
            raise FileSourceError(
                f"{msg}; halt_on_error is true, so the connector stopped and the file stays in "
                f"{self.config.input_path} (fix or remove it, or set halt_on_error: false with error_path)"
            ) from exc
        assert self.spool.errors is not None
        self._move(path, safe_join(self.spool.errors, rel))
        log.error("%s; moved to %s", msg, self.config.error_path)

    # -- reading -----------------------------------------------------------------------------------
    def _rejected(self, rel: str, bad: BadLine) -> Rejected:
        """Bad input as the runner dead-letters it: the line's bytes, its file and line number."""
        error = BadRecord(bad.line, bad.detail, rel) if bad.kind is BadRecord \
            else bad.kind(f"{rel} line {bad.line}: {bad.detail}")
        return Rejected(bad.value, error, f"line {bad.line}")

    def poll(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> Iterator[SourceBatch]:
        rel = partition["file"]
        path = safe_join(self.spool.root, rel)
        info = self._infos.get(rel) or self.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return  # gone since it was listed
        identity = self._identity(path, info)
        start = floor = 0  # floor: bad lines filed below it were reported by an earlier run
        if offset and {k: offset.get(k) for k in identity} == identity:
            if offset.get("done"):
                self._finished.append((rel, path, info))  # a crash came between the last offset and the cleanup
                return
            start = int(offset.get("record", 0))
            floor = int(offset.get("rejects_from", start))
        elif offset and (fixed := self._fixed(rel, path, offset)) is not None:
            start = floor = fixed
        elif offset:
            log.warning("file source %s: %s changed since its offset was stored; reading it from the start",
                        self.config.name, rel)
        if not info.size:
            self._finished.append((rel, path, info))  # nothing to deliver
            return
        topic = self.config.topic
        rejects = FileRejects(self.config) if self.config.format != "parquet" and self.config.errors_tolerance == "all" \
            else None
        tables = _prefetched(read_tables(self.fs, path, self.config, start, rejects))
        pos, count = start, 0
        try:
            pending = next(tables, None)
        except DATA_ERRORS as e:
            self._failed(rel, path, pos, e)
            return
        if pending is None:  # header only, or nothing after ``start``: bad lines may remain
            bad = rejects.take(floor, None) if rejects is not None else []
            if bad:
                self._current, self._truncated = (identity, pos, floor), False
                empty = empty_table(self.fs, path, self.config)
                batch = SourceBatch(partition, topic, empty, {**identity, "record": pos, "done": True})
                batch.rejects = [self._rejected(rel, b) for b in bad]  # type: ignore[attr-defined]
                yield batch
            self._finished.append((rel, path, info))
            return
        error: BaseException | None = None
        while pending is not None:
            try:  # read ahead: the batch knows whether it is the last, or the one before a bad record
                after = next(tables, None)
            except DATA_ERRORS as e:
                after, error = None, e
            self._current = (identity, pos, floor if rejects is not None else None)
            self._truncated = False
            pos += pending.num_rows
            done = after is None and error is None
            off = {**identity, "record": pos, "done": done}
            if error is not None and (stopped := self._stopped(path, error)):
                off["stopped"] = stopped
            batch = SourceBatch(partition, topic, pending, off)
            if rejects is not None:  # the bad lines filed under this batch's records
                batch.rejects = [self._rejected(rel, b)  # type: ignore[attr-defined]
                                 for b in rejects.take(floor, None if done else pos)]
                floor = pos
            yield batch
            if self._truncated:  # the runner cut the batch at its row budget: stop here
                return
            count += 1
            fault_point(f"file_source_after_batch_{count}")
            pending = after
        if error is not None:
            self._failed(rel, path, pos, error)
            return
        self._finished.append((rel, path, info))

    def _advance(self, _offset: dict[str, Any], records: pa.Table) -> dict[str, Any]:
        """The offset after the first ``len(records)`` records of the last batch (runner's row budget)."""
        assert self._current is not None
        identity, first, floor = self._current
        self._truncated = True
        out = {**identity, "record": first + records.num_rows, "done": False}
        if floor is not None:  # the cut batch's malformed lines are not reported: the next run does
            out["rejects_from"] = floor
        return out

    def close(self) -> None:
        """Apply the cleanup policy to the files finished in this run, unless a bad file halted it."""
        self.end_turn()

    def end_turn(self) -> None:
        """Apply the cleanup policy to the files finished so far (their last offsets are stored), unless a
        bad file halted the run. A continuous run calls it after every turn: finished files leave the
        folder while the run goes on, instead of being listed and finished again at every turn."""
        finished, self._finished = self._finished, []
        if self._halted:
            if finished:
                log.warning("file source %s halted: %d finished file(s) stay in place until the next run",
                            self.config.name, len(finished))
            return
        for rel, path, info in finished:
            try:
                self._finish(rel, path, info)
            except OSError as e:  # the offset says done: the next run tries again
                log.error("file source %s: cleanup of %s failed: %s", self.config.name, rel, e)
