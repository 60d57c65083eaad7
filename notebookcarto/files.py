"""The one way the library writes files: built beside the target, then renamed into place.

``write_file(path, data)`` writes a file; ``replace_folder(path, fill)`` writes a folder (an
atlas). After a crash at any point (``kill -9``, a full disk, a power cut after the data reached
the disk) exactly the old or the new version is at ``path``:

* a file is written to a hidden temporary file beside it, flushed to disk, and renamed over the
  old one (``os.replace`` is atomic);
* a folder is built beside the old one; then a journal (``.NAME.swap``, written like a file)
  names both, the old folder is renamed aside, the new one into place, and the journal removed.
  ``recover(path)`` finishes a swap a crash interrupted: forward when the new folder is complete
  (the journal is written only then), so a reader never finds the path empty.

Writers hold an exclusive lock on ``.notebookcarto.lock`` in the target's folder (``fcntl.flock``:
the system drops it when a process dies, even by ``kill -9``; one empty lock file a folder, kept),
so the hidden leftovers of a crashed writer (``.NAME.tmp-*``, ``.NAME.old-*``) are provably
abandoned when the lock is free, and the next write or read of that path removes them. Where ``fcntl`` is missing (Windows) writes are still
atomic, but leftovers are kept, as nothing proves them abandoned.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK", "fsync_file", "read_lock", "recover", "replace_folder", "write_file"]

LOCK = ".notebookcarto.lock"  # the writers' lock of a folder


def _hidden(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}"


def _fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (a no-op where folders can't be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lock(path: Path, shared: bool = False, wait: bool = True):
    """Hold the lock of ``path``; yields True when held, False when it could not be taken
    (no ``fcntl``, a read-only folder, or ``wait=False`` and another process holds it)."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(path.parent / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: nobody can be writing there through us
        yield False
        return
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the lock


def _check_parent(path: Path) -> None:
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {path.parent} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {path.parent} is not writable "
                              "(choose a path in a folder you can write to)")


def _write_atomic(target: Path, raw: bytes, tmp: Path) -> None:
    """Write ``raw`` to ``tmp``, flush it to disk and rename it over ``target``."""
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(target.parent)


def _failed(path: Path, err: OSError) -> OSError:
    """A write error that names the path, says nothing changed there, and names a full disk."""
    full = err.errno == errno.ENOSPC or "requested and" in str(err)
    why = "the disk is full" if full else (err.strerror or str(err))
    return type(err)(err.errno, f"could not write {path}: {why}; what was at {path} before is "
                                f"unchanged")


def write_file(path, data: bytes | str) -> Path:
    """Write ``data`` to the file ``path`` atomically (see the module docstring); returns it."""
    path = Path(path)
    _check_parent(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the file {path}: it is a folder")
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with _lock(path) as held:
        if held:
            _clean(path)
        try:
            _write_atomic(path, raw, _hidden(path, f"tmp-{uuid.uuid4().hex[:8]}"))
        except OSError as err:
            raise _failed(path, err) from err
    return path


def replace_folder(path, fill: Callable[[Path], None],
                   replaceable: Callable[[Path], bool] = lambda p: True) -> Path:
    """Build a folder with ``fill(new_folder)`` and put it at ``path`` atomically (see the module
    docstring). An existing ``path`` is replaced only if ``replaceable(path)``."""
    path = Path(path)
    _check_parent(path)
    with _lock(path) as held:
        if held:
            recover(path, locked=True)
        if path.exists() and not (path.is_dir() and replaceable(path)):
            raise FileExistsError(f"{path} exists and is not what this writes: choose another "
                                  "path or remove it")
        new = _hidden(path, f"tmp-{uuid.uuid4().hex[:8]}")
        try:
            try:
                new.mkdir()
                fill(new)
            except OSError as err:
                raise _failed(path, err) from err
            _fsync_dir(new)
            if not path.exists():
                os.rename(new, path)
                _fsync_dir(path.parent)
                return path
            old = _hidden(path, f"old-{uuid.uuid4().hex[:8]}")
            journal = json.dumps({"old": old.name, "new": new.name}).encode()
            _write_atomic(_hidden(path, "swap"), journal,
                          _hidden(path, f"tmp-journal-{uuid.uuid4().hex[:8]}"))
            try:
                os.rename(path, old)
                os.rename(new, path)
            except BaseException:
                if not path.exists() and old.exists():
                    os.rename(old, path)  # put the old folder back
                raise
            finally:
                _fsync_dir(path.parent)
                _hidden(path, "swap").unlink(missing_ok=True)
                _fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if new.exists():
                shutil.rmtree(new, ignore_errors=True)
    return path


def recover(path, *, locked: bool = False) -> None:
    """Finish a folder swap that a crash interrupted, and remove the leftovers of crashed
    writers; only while no writer holds the lock (``locked``: the caller holds it)."""
    path = Path(path)
    with (contextlib.nullcontext(True) if locked else _lock(path, wait=False)) as held:
        if not held:
            return
        journal = _hidden(path, "swap")
        if journal.exists():
            try:
                names = json.loads(journal.read_text())
                old, new = path.parent / names["old"], path.parent / names["new"]
            except (OSError, ValueError, KeyError, TypeError):
                old = new = None  # a journal is written atomically: this one is not ours
            if new is not None and not path.exists():
                if new.is_dir():
                    os.rename(new, path)  # the new folder is complete: roll forward
                elif old.is_dir():
                    os.rename(old, path)
            journal.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        _clean(path)


def _clean(path: Path) -> None:
    """Remove the hidden temporary files and folders of ``path`` (the lock is held)."""
    for kind in ("tmp-", "old-"):
        for leftover in path.parent.glob(f".{_glob_escape(path.name)}.{kind}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def read_lock(path):
    """Read ``path`` consistently: finish an interrupted swap first if no writer is busy, then
    wait for any writer to finish while reading."""
    path = Path(path)
    recover(path)
    with _lock(path, shared=True):
        yield
