"""Crash injection for every write path: a child process is killed (SIGKILL) at each rename,
write and flush step of a save; afterwards the path holds exactly the old or the new version,
and the next read or write removes what the dead writer left."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import atlas_from_aggregation, kill_at_step
from notebookcarto import Atlas, files

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or files.fcntl is None,
                                reason="needs fork and fcntl (POSIX)")

def run_killed(write, at: int) -> int:
    """Run ``write()`` in a forked child that dies at step ``at``; its exit code."""
    def child():
        kill_at_step(at)
        write()
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    return process.exitcode


def steps_of(write) -> int:
    calls, restore = kill_at_step(-1)
    try:
        write()
    finally:
        restore()
    return calls[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")
                  and not p.name.endswith(".lock"))


def small_atlas(version: str) -> Atlas:
    rng = np.random.default_rng(0)
    atlas = atlas_from_aggregation({"a": rng.integers(0, 9, (3, 4)),
                                    "b": rng.integers(0, 9, (3, 5))})
    atlas.data_info = {"version": version}
    return atlas


@pytest.mark.parametrize("existing", [True, False], ids=["over-an-atlas", "new-path"])
def test_atlas_save_killed_at_every_step_leaves_old_or_new(tmp_path, existing):
    path, probe = tmp_path / "atlas", tmp_path / "probe" / "atlas"
    new = small_atlas("new")
    if existing:
        small_atlas("old").save(probe)
    n = steps_of(lambda: new.save(probe))
    shutil.rmtree(probe.parent)
    assert n >= 10  # arrays, manifest, flushes and renames
    seen = set()
    for at in range(n + 1):  # the last one: past the end, the save completes
        if path.exists():
            shutil.rmtree(path)
        if existing:
            small_atlas("old").save(path)
        code = run_killed(lambda: new.save(path), at)
        assert code in (-signal.SIGKILL, 0), code
        if not existing and code != 0 and not path.exists():
            seen.add("none")  # a first save that died: nothing at the path, as before
            with pytest.raises(FileNotFoundError, match="no atlas at"):
                Atlas.load(path)  # ... and the dead writer's folder is removed
        else:
            loaded = Atlas.load(path)  # finishes an interrupted swap, cleans what was left
            seen.add(loaded.data_info["version"])
            assert loaded.layers == ["a", "b"]
        assert leftovers(tmp_path) == [], (at, leftovers(tmp_path))
    assert seen == ({"old", "new"} if existing else {"none", "new"})


def test_html_export_killed_at_every_step_keeps_old_or_new(tmp_path):
    path = tmp_path / "atlas.html"
    n = steps_of(lambda: files.write_file(tmp_path / "probe.html", "new"))
    seen = set()
    for at in range(n + 1):
        path.write_text("old")
        code = run_killed(lambda: files.write_file(path, "<!doctype html>new"), at)
        assert code in (-signal.SIGKILL, 0)
        seen.add(path.read_text())
        files.write_file(tmp_path / "other.html", "x")  # unrelated writes leave it alone
        assert path.read_text() in ("old", "<!doctype html>new")
        files.write_file(path, path.read_text())  # the next write cleans the dead one's file
        assert leftovers(tmp_path) == []
    assert seen == {"old", "<!doctype html>new"}


def test_a_writer_in_progress_is_waited_for_and_its_files_kept(tmp_path):
    """Leftovers are removed only when provably abandoned: while another process holds the
    lock, a reader neither cleans its temporary folder nor reads a half-swapped path."""
    path = tmp_path / "atlas"
    small_atlas("old").save(path)
    busy = tmp_path / ".atlas.tmp-busy"
    busy.mkdir()
    import fcntl

    fd = os.open(tmp_path / files.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        files.recover(path)  # the lock is held: nothing is touched
        assert busy.exists()
    finally:
        os.close(fd)
    files.recover(path)
    assert not busy.exists()


def test_saving_where_nothing_can_be_written_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        small_atlas("new").save(blocker / "atlas")
    with pytest.raises(OSError, match=r"could not write .*proc.*atlas"):
        small_atlas("new").save("/proc/notebookcarto-atlas")
    assert leftovers(tmp_path) == []


def test_a_full_disk_names_itself_and_keeps_the_old_atlas(tmp_path, monkeypatch):
    path = tmp_path / "atlas"
    small_atlas("old").save(path)
    real = np.save

    def full(file, array, **kwargs):
        real(file, array, **kwargs)
        raise OSError("512 requested and 496 written")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError, match=r"could not write .*atlas: the disk is full; what was at "
                                      r".*atlas before is unchanged"):
        small_atlas("new").save(path)
    monkeypatch.undo()
    assert Atlas.load(path).data_info == {"version": "old"}
    assert leftovers(tmp_path) == []
    assert torch.get_num_threads() >= 1
