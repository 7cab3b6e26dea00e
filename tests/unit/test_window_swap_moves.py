"""The window swap's carry of a file into the new folder: never over a file published meanwhile, with
hard links or, where the filesystem has none, a check then a rename."""

from __future__ import annotations

import errno
import os

import pytest

from integrations.sinks.window_swap import move_if_free


@pytest.mark.parametrize("links", [True, False])
def test_move_if_free_never_replaces(tmp_path, monkeypatch, links):
    if not links:  # a filesystem without hard links (FAT, some FUSE mounts)
        def no_link(_src, _dst):  # noqa: ANN001, ANN202
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    src, dst, taken = tmp_path / "a.parquet", tmp_path / "new" / "a.parquet", tmp_path / "new" / "b.parquet"
    dst.parent.mkdir()
    src.write_text("old")
    assert move_if_free(str(src), str(dst)) is True
    assert not src.exists() and dst.read_text() == "old"
    src.write_text("stale")
    taken.write_text("published meanwhile")
    assert move_if_free(str(src), str(taken)) is False
    assert src.read_text() == "stale" and taken.read_text() == "published meanwhile"
