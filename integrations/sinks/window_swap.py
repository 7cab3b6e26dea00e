"""The folder swap of a window rebuild (:mod:`integrations.sinks.windows`): the rebuilt folder replaces
the live one, and the files streaming runs wrote meanwhile are carried over, never replaced, and never
carried when a streaming run wrote their offsets again during the swap.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.fs as pafs

from integrations.sinks.parquet import _NO_LINK, file_origin
from integrations.sinks.parquet_partitioners import list_files


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        shutil.rmtree(path, ignore_errors=True)
    elif _exists(fs, path):
        fs.delete_dir(path)


def _is_tmp(name: str) -> bool:
    """A streaming run's file being written (``.<name>.<uuid>.tmp``): its rename fails once its folder moved."""
    return name.startswith(".") and name.endswith(".tmp")


def swap_folder(fs: pafs.FileSystem, local: bool, src: str, dst: str, trash: str, verified: set[str],
          judge: Callable[[str], str], token: str) -> tuple[bool, list[str], list[str]]:
    """Replace folder ``dst`` by ``src`` (absent ``src``: by nothing). Old files in ``verified`` go; any
    other old file is kept unless ``judge(file)`` says ``drop`` (its records are all in ``src``).
    Returns whether either folder existed, the files kept, and those kept with a warning (``judge`` said
    ``overlap``, or the name was taken)."""
    if not local:
        return _swap_objects(fs, src, dst, verified, judge)
    has_src, had_dst = os.path.isdir(src), os.path.isdir(dst)
    staged = set(os.listdir(src)) if has_src else set()
    old = f"{trash}/{uuid.uuid4().hex}"
    if had_dst:
        os.makedirs(trash, exist_ok=True)
        os.rename(dst, old)  # from here the old folder is frozen: a streaming run's rename into it fails
    carried, warned = [], []
    try:
        if has_src:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.rename(src, dst)
            except OSError:  # a streaming run made the folder again meanwhile: move the staged files in
                os.makedirs(dst, exist_ok=True)
                for name in sorted(os.listdir(src)):
                    target = f"{dst}/{name}"
                    if os.path.lexists(target):  # never over a streaming run's file (only if nothing was committed)
                        target = _kept_name(dst, name, token)
                        warned.append(target)
                    os.rename(f"{src}/{name}", target)
        if had_dst:
            origins: dict[str, tuple[str, int, int, int] | None] = {}
            for name in sorted(os.listdir(old)):
                if name in verified or _is_tmp(name):
                    continue
                here = f"{old}/{name}"
                verdict = judge(here) if os.path.isfile(here) else "keep"
                if verdict == "drop":
                    continue
                if verdict == "streamed" and _superseded(here, dst, staged, origins):  # staged: grows with carried
                    continue  # a streaming run wrote these offsets again meanwhile, without this file: theirs stand
                target = f"{dst}/{name}"
                os.makedirs(dst, exist_ok=True)
                if not move_if_free(here, target):  # never over a file a streaming run published meanwhile
                    if verdict == "streamed":  # that run published this very name: see _superseded
                        continue
                    target, verdict = _kept_name(dst, name, token), "overlap"
                    os.rename(here, target)
                carried.append(target)
                staged.add(os.path.basename(target))  # not evidence of a streaming run's write
                if verdict == "overlap":
                    warned.append(target)
    except BaseException:
        if had_dst and not os.path.exists(dst):
            os.rename(old, dst)  # put the old folder back rather than lose it
        raise
    shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(trash)  # other swaps of this rebuild may still use it
    return has_src or had_dst, carried, warned


def move_if_free(src: str, dst: str) -> bool:
    """Move ``src`` to ``dst`` unless ``dst`` exists (False then). A file is hard-linked and unlinked,
    so a file published at ``dst`` meanwhile is never replaced; where the filesystem has no hard links
    (and for folders) it is a check, then a rename, as the Parquet sink's own publishing does."""
    if os.path.isfile(src):
        try:
            os.link(src, dst)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise
        else:
            os.unlink(src)
            return True
    if os.path.lexists(dst):
        return False
    os.rename(src, dst)
    return True


def _superseded(path: str, dst: str, staged: set[str],
                origins: dict[str, tuple[str, int, int, int] | None]) -> bool:
    """Whether the new folder ``dst`` holds a file of the same source topic-partition, not one the rebuild
    staged or carried (``staged``), whose offsets overlap those of the streamed file ``path`` of the old
    folder.

    Such a file was published during the swap by a streaming run that could not see ``path`` (the old
    folder was already moved away). Its run fenced every older run when it started, so ``path``'s
    segment was never committed (a committed segment ends at or before where any later run starts) and
    no run relies on it: the later run's files stand, and carrying ``path`` would write its records
    twice. ``origins`` caches the new folder's files' offset spans."""
    mine = file_origin(pafs.LocalFileSystem(), path)
    if mine is None:
        return False
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(dst):
            if name in staged or _is_tmp(name):
                continue
            if name not in origins:
                try:
                    origins[name] = file_origin(pafs.LocalFileSystem(), f"{dst}/{name}")
                except (FileNotFoundError, OSError, pa.ArrowInvalid):
                    continue
            other = origins[name]
            if other is not None and other[:2] == mine[:2] and other[2] < mine[3] and mine[2] < other[3]:
                return True
    return False


def _kept_name(folder: str, name: str, token: str) -> str:
    """A free name beside ``name`` for a file kept although its name is taken (``<stem>.kept-<token>.<ext>``)."""
    stem, dot, ext = name.rpartition(".")
    return f"{folder}/{stem}.kept-{token}{dot}{ext}" if dot else f"{folder}/{name}.kept-{token}"


def _swap_objects(fs: pafs.FileSystem, src: str, dst: str, verified: set[str], judge: Callable[[str], str]
                  ) -> tuple[bool, list[str], list[str]]:
    """Object storage: copy the new objects in, then delete only the old objects whose records they hold."""
    has_src = _exists(fs, src)
    new = {f.rsplit("/", 1)[1] for f in list_files(fs, src)} if has_src else set()
    if has_src:
        fs.create_dir(dst, recursive=True)
        for name in sorted(new):  # each object appears atomically; readers may briefly see old and new
            fs.copy_file(f"{src}/{name}", f"{dst}/{name}")
    old = [f for f in list_files(fs, dst) if f.rsplit("/", 1)[1] not in new]
    verdicts = {f: "drop" if f.rsplit("/", 1)[1] in verified else judge(f) for f in old}  # streamed: kept
    for f in old:
        if verdicts[f] == "drop":
            fs.delete_file(f)
    kept = [f for f in old if verdicts[f] != "drop"]
    return has_src or bool(old), kept, [f for f in kept if verdicts[f] == "overlap"]
