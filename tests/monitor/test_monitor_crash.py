"""Crash safety of the series: a training process killed (SIGKILL) while it writes a snapshot
leaves every earlier snapshot loadable, and resuming from its last checkpoint continues the
series without a gap or a duplicate, to the same snapshots an uninterrupted run writes.

The child process trains a tiny model with a monitor and checkpoints every 3 steps; it is killed
at a chosen file-system step (rename, replace, fsync, mkdir, unlink, numpy's array writes,
rmtree) of the write of the snapshot of step 6, which runs on the monitor's writer thread. Its
last checkpoint is the one of step 3 (the checkpoint of step 6 waits for that write), so the
resumed run also rewinds the snapshot of step 4 and writes it again."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest
import torch

from helpers import kill_at_step
from monitor_setups import CLASSES, load_checkpoint, make, probe, train
from notebookcarto import Atlas, files
from notebookcarto.monitor import Monitor, Series

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork") or files.fcntl is None,
                                 reason="needs fork and fcntl (POSIX)"),
              pytest.mark.usefixtures("one_thread")]

LAST, KILLED = 8, 6


def new_monitor(folder, **options):
    return Monitor(folder / "run", probe(per_colour=4), ["conv1", "conv2"], every=2,
                   class_names=CLASSES, top_n=4, **options)


def count_steps_of_snapshot(step: int, kill_at: int, log: list | None = None):
    """From the start of the write of ``step``'s snapshot, count the steps made by the thread
    that writes it; the ``kill_at``-th (from 0) kills the process before it runs."""
    real_append = Series.append
    calls = [0]

    def append(self, s, atlas):
        if s != step:
            return real_append(self, s, atlas)
        _, undo = kill_at_step(kill_at, thread=threading.get_ident(), log=log, calls=calls)
        try:
            return real_append(self, s, atlas)
        finally:
            undo()

    Series.append = append
    return calls, lambda: setattr(Series, "append", real_append)


def train_all(folder):
    model, opt = make(seed=0, width=4)
    monitor = new_monitor(folder)
    monitor.observe(model, 0)
    train(model, opt, range(1, LAST + 1), monitor=monitor, checkpoint=folder / "ckpt.pt",
          every_checkpoint=3)
    monitor.close()


def killed_run(folder, at: int) -> int:
    def child():
        torch.set_num_threads(1)
        count_steps_of_snapshot(KILLED, at)
        train_all(folder)
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(120)
    return process.exitcode


def resume(folder):
    model, opt = make(seed=0, width=4)
    state = load_checkpoint(folder / "ckpt.pt", model, opt)
    monitor = new_monitor(folder, resume=True)
    monitor.load_state_dict(state["monitor"])
    train(model, opt, range(state["step"] + 1, LAST + 1), monitor=monitor)
    monitor.close()
    return monitor


def content(atlas: Atlas) -> dict:
    stats = atlas.stats
    out = {f"{name}/top": layer.top.index.numpy() for name, layer in stats.layers.items()}
    out["confusion"] = stats.accuracy.confusion.numpy()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The snapshots of an uninterrupted run, and the write steps of the snapshot of step 6."""
    folder = tmp_path_factory.mktemp("reference")
    log: list[str] = []
    _, undo = count_steps_of_snapshot(KILLED, -1, log)
    try:
        train_all(folder)
    finally:
        undo()
    series = Series(folder / "run")
    return {step: content(series.load(step)) for step in series.steps()}, log


def kill_points(log: list[str]) -> list[int]:
    """The first step, the middle, the rename that puts the snapshot in place and the step
    after it, the last step and past the end (the write completes)."""
    rename = max(i for i, name in enumerate(log) if name == "rename")
    n = len(log)
    return sorted({0, n // 2, rename, rename + 1, n - 1, n})


def test_the_reference_run_writes_every_scheduled_snapshot(reference):
    snapshots, log = reference
    assert list(snapshots) == [0, 2, 4, 6, 8]
    assert len(log) >= 20 and "save" in log and "fsync" in log


def test_killed_while_writing_a_snapshot_then_resumed(tmp_path, reference):
    snapshots, log = reference
    seen = set()
    for at in kill_points(log):
        folder = tmp_path / f"kill-{at}"
        folder.mkdir()
        code = killed_run(folder, at)
        assert code in (-signal.SIGKILL, 0), (at, code)
        series = Series(folder / "run")
        steps = series.steps()
        assert steps[:3] == [0, 2, 4] and set(steps) <= {0, 2, 4, 6, 8}, (at, steps)
        for step in steps:  # every completed snapshot loads, as written
            loaded = content(series.load(step))
            for key, value in snapshots[step].items():
                assert np.array_equal(loaded[key], value), (at, step, key)
        seen.add(KILLED in steps)
        if code == 0:
            assert steps == [0, 2, 4, 6, 8]
            continue
        resume(folder)
        assert series.steps() == [0, 2, 4, 6, 8], at  # no gap, no duplicate
        for step in series.steps():
            loaded = content(series.load(step))
            for key, value in snapshots[step].items():
                assert np.array_equal(loaded[key], value), (at, step, key)
        hidden = [p.name for p in series.folder.iterdir()
                  if p.name.startswith(".") and not p.name.endswith(".lock")]
        assert hidden == [], (at, hidden)  # the dead writer's leftovers are gone
    assert seen == {True, False}  # killed before and after the snapshot was in place
