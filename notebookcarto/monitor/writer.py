"""Snapshots written one at a time, on a background thread, while training goes on."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..atlas import Atlas
    from .series import Series

__all__ = ["Writer", "Written"]

THREAD_NAME = "notebookcarto-monitor-writer"


@dataclass
class Written:
    """A snapshot safely on disk: its step, folder and the seconds the write took."""

    step: int
    path: Path
    seconds: float
    info: dict = field(default_factory=dict)


class Writer:
    """Writes one snapshot at a time to a series (``Series.append``).

    With ``background=True`` the write runs on a worker thread and ``submit`` returns at once;
    the next ``submit`` (or ``flush``) first waits for the write before, so at most one
    snapshot is in memory waiting for the disk. A failed write is raised by the next ``submit``
    or ``flush``. ``poll()`` hands over the snapshots written since it was last called,
    in order, to be announced on the caller's thread.

    The worker is started by the first write and kept until ``close``: starting a thread for
    each write held the training loop about 1.3 ms a snapshot (the new thread runs before the
    caller gets the interpreter back). A write in progress when Python exits is finished first
    (``concurrent.futures`` joins its workers at exit).
    """

    def __init__(self, series: "Series", background: bool = True):
        self.series, self.background = series, background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._error: BaseException | None = None
        self._failed_step: int | None = None
        self._done: list[Written] = []
        self._lock = threading.Lock()

    def submit(self, step: int, atlas: "Atlas", info: dict | None = None) -> None:
        self.flush()
        if not self.background:
            self._write(step, atlas, info or {})
            self._raise()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME)
        self._pending = self._pool.submit(self._write, step, atlas, info or {})

    def _write(self, step: int, atlas: "Atlas", info: dict) -> None:
        start = time.perf_counter()
        try:
            path = self.series.append(step, atlas)
        except BaseException as err:  # handed to the caller's thread
            self._error, self._failed_step = err, step
            return
        with self._lock:
            self._done.append(Written(step, path, time.perf_counter() - start, info))

    def flush(self) -> None:
        """Wait for the write in progress; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # _write keeps its own errors
        self._raise()

    def close(self) -> None:
        """Flush, and end the worker thread (a later ``submit`` starts a new one)."""
        try:
            self.flush()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown()

    def _raise(self) -> None:
        if self._error is not None:
            err, step = self._error, self._failed_step
            self._error = self._failed_step = None
            raise RuntimeError(f"the snapshot of step {step} could not be written to "
                               f"{self.series.path}: {err}") from err

    def poll(self) -> list[Written]:
        """The snapshots written since the last call, in order."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def check(self) -> None:
        """Raise the error of a write that failed, once it has ended."""
        if self._error is not None and not self.busy:
            self.flush()

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()
