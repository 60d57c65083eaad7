"""The series on disk: a folder of snapshots, each a complete atlas, appended one at a time.

Layout::

    run/
      series.json                  what was monitored (format, layers, classes, probe, analyses)
      snapshots/
        step-0000000000/           an atlas folder (Atlas.save), loads with Atlas.load
        step-0000000100/
        ...

Crash safety comes from the library's one way of writing (``notebookcarto.files``): the
manifest is written with ``files.write_file`` and every snapshot with ``Atlas.save``, which
builds the folder beside its final name and renames it into place when complete. So a process
killed at any point leaves every completed snapshot loadable and the one being written either
complete or absent; the hidden leftovers of a dead writer are removed when the series is
opened again (``Series.clean``). A folder ``step-N`` is complete by construction; the list of
steps is the list of those folders, so there is no index to fall out of step with them.

Snapshots are only appended, never replaced. The one exception is ``rewind(step)``: resuming
training from a checkpoint taken at an earlier step drops the snapshots after it (they belong to
a trajectory the resumed run does not follow). Each is first renamed to a hidden trash name (one
atomic rename, so no reader ever sees half a snapshot) and then deleted.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from .. import __version__, files
from ..atlas import Atlas
from ..atlas.store import MANIFEST as ATLAS_MANIFEST
from ..atlas.store import AtlasFormatError

__all__ = ["FORMAT", "MANIFEST", "SNAPSHOTS", "VERSION", "Series", "SeriesFormatError"]

FORMAT = "notebookcarto.series"
VERSION = 1
MANIFEST = "series.json"
SNAPSHOTS = "snapshots"
_NAME = re.compile(r"^step-(\d{10,})$")
_TRASH = ".trash-"


class SeriesFormatError(ValueError):
    """The folder is not a readable series (no manifest, a corrupt one, a newer format)."""


def snapshot_name(step: int) -> str:
    return f"step-{int(step):010d}"


class Series:
    """A series folder: its manifest, the steps of its complete snapshots, each as an Atlas."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is a file, not a series folder: choose "
                                     "another path")

    @property
    def folder(self) -> Path:
        """Where the snapshots are."""
        return self.path / SNAPSHOTS

    def exists(self) -> bool:
        """Whether a series was started here (its manifest or any snapshot)."""
        return self.has_manifest() or bool(self.steps())

    def has_manifest(self) -> bool:
        return (self.path / MANIFEST).is_file()

    # -- the manifest -----------------------------------------------------------------------
    def read_manifest(self) -> dict:
        file = self.path / MANIFEST
        if not file.is_file():
            raise SeriesFormatError(f"{self.path} is not a series: it has no {MANIFEST}")
        try:
            manifest = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SeriesFormatError(f"{file} is corrupt ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SeriesFormatError(f"{file} is not a series manifest")
        version = manifest.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SeriesFormatError(f"{file} has no valid format version (got {version!r})")
        if version > VERSION:
            raise SeriesFormatError(f"{self.path} was written in series format {version}, newer "
                                    f"than this notebookcarto reads ({VERSION}): upgrade "
                                    "notebookcarto")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        full = {"format": FORMAT, "version": VERSION, "library_version": __version__,
                **manifest}
        files.write_file(self.path / MANIFEST, json.dumps(full, indent=1))

    # -- snapshots --------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """The steps of the complete snapshots, in order."""
        if not self.folder.is_dir():
            return []
        steps = []
        for entry in self.folder.iterdir():
            match = _NAME.match(entry.name)
            if match and (entry / ATLAS_MANIFEST).is_file():
                steps.append(int(match.group(1)))
        return sorted(steps)

    def snapshot_path(self, step: int) -> Path:
        return self.folder / snapshot_name(step)

    def load(self, step: int, device=None) -> Atlas:
        """The snapshot of ``step`` as an Atlas."""
        path = self.snapshot_path(step)
        if not (path / ATLAS_MANIFEST).is_file():
            steps = self.steps()
            shown = steps if len(steps) <= 12 else steps[:6] + ["..."] + steps[-5:]
            raise KeyError(f"the series at {self.path} has no snapshot of step {step}; it has "
                           f"{shown}")
        try:
            return Atlas.load(path, device=device)
        except AtlasFormatError as err:
            raise AtlasFormatError(f"snapshot of step {step}: {err}") from None

    def append(self, step: int, atlas: Atlas) -> Path:
        """Write ``atlas`` as the snapshot of ``step`` (crash-safe; never over an existing
        snapshot: the series is append-only)."""
        path = self.snapshot_path(step)
        if path.exists():
            raise FileExistsError(f"the series at {self.path} already has a snapshot of step "
                                  f"{step}: snapshots are only appended")
        atlas.save(path)
        return path

    def rewind(self, step: int | None) -> list[int]:
        """Drop the snapshots after ``step`` (all of them for None); returns their steps."""
        dropped = [s for s in self.steps() if step is None or s > step]
        for s in reversed(dropped):
            trash = self.folder / f"{_TRASH}{uuid.uuid4().hex[:8]}-{snapshot_name(s)}"
            self.snapshot_path(s).rename(trash)  # atomic: the snapshot is whole or gone
            shutil.rmtree(trash, ignore_errors=True)
        return dropped

    def clean(self) -> None:
        """Remove what crashed writers left: trash of an interrupted rewind, and the hidden
        temporary folders of interrupted snapshot writes (``files.recover``; only those no live
        writer holds)."""
        if not self.folder.is_dir():
            return
        names = set()
        for entry in self.folder.iterdir():
            if entry.name.startswith(_TRASH):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".step-"):
                name, _, kind = entry.name[1:].partition(".")
                if kind.startswith(("tmp-", "old-")) or kind == "swap":  # not the locks
                    names.add(name)
        for name in sorted(names):
            if _NAME.match(name):
                files.recover(self.folder / name)

    def size_bytes(self) -> int:
        """Bytes on disk of the manifest and every snapshot."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def __repr__(self) -> str:
        steps = self.steps()
        span = f", steps {steps[0]}..{steps[-1]}" if steps else ""
        return f"Series({str(self.path)!r}, {len(steps)} snapshots{span})"
