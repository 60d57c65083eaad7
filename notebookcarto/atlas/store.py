"""Versioned, atomic storage of an atlas: a folder with a JSON manifest and .npy arrays."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import files
from .sections import AtlasFormatError

__all__ = ["FORMAT", "MANIFEST", "VERSION", "read", "write"]

FORMAT = "notebookcarto.atlas"
VERSION = 2  # 2: typed results (sections per docs/atlas-sections.md), Chan moments
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write(path, manifest: dict, arrays: dict[str, np.ndarray]):
    """Write ``manifest`` and ``arrays`` to the folder ``path``, atomically: after a crash at
    any point exactly the old or the new atlas loads from ``path`` (``files.replace_folder``).
    An existing ``path`` is replaced only if it is an atlas itself."""

    def fill(folder: Path):
        (folder / "arrays").mkdir()
        entries = {}
        for i, (key, array) in enumerate(arrays.items()):
            file = f"arrays/{i:04d}.npy"
            np.save(folder / file, np.require(array, requirements="C"), allow_pickle=False)
            files.fsync_file(folder / file)
            entries[key] = {"file": file, "dtype": str(array.dtype), "shape": list(array.shape),
                            "sha256": _sha256(folder / file)}
        full = {"format": FORMAT, "version": VERSION, **manifest, "arrays": entries}
        with open(folder / MANIFEST, "w") as f:  # last: a folder with a manifest is complete
            json.dump(full, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    path = Path(path)
    if path.exists() and not (path / MANIFEST).is_file():
        raise FileExistsError(f"{path} exists and is not an atlas: choose another path or remove it")
    files.replace_folder(path, fill, replaceable=lambda p: (p / MANIFEST).is_file())


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read an atlas folder: the manifest and every array, each checked against its checksum.
    An interrupted save is finished first, and a save in progress is waited for."""
    path = Path(path)
    with files.read_lock(path):
        return _read(path)


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.exists():
        raise FileNotFoundError(f"no atlas at {path}: the path does not exist")
    if not (path / MANIFEST).is_file():
        raise AtlasFormatError(f"{path} is not an atlas: it has no {MANIFEST}")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AtlasFormatError(f"{path / MANIFEST} is corrupt or truncated ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AtlasFormatError(f"{path / MANIFEST} is not an atlas manifest")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise AtlasFormatError(f"{path / MANIFEST} has no valid format version (got "
                               f"{version!r}): it was not written by notebookcarto, or is damaged")
    if version > VERSION:
        raise AtlasFormatError(f"{path} was written in atlas format {version}, newer than this "
                               f"notebookcarto reads ({VERSION}): upgrade notebookcarto")
    entries = manifest.get("arrays", {})
    if not isinstance(entries, dict):
        raise AtlasFormatError(f"{path / MANIFEST}: 'arrays' must map array names to entries, got "
                               f"a {type(entries).__name__}")
    arrays = {}
    for key, entry in entries.items():
        if not (isinstance(entry, dict) and {"file", "sha256", "shape", "dtype"} <= set(entry)):
            raise AtlasFormatError(f"{path / MANIFEST}: the entry of array {key!r} is malformed")
        file = path / entry["file"]
        if not file.is_file() or _sha256(file) != entry["sha256"]:
            raise AtlasFormatError(f"{path}: array {key!r} ({entry['file']}) is missing, corrupt "
                                   "or truncated; save the atlas again")
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as err:  # e.g. a pickled object array: never loaded
            raise AtlasFormatError(f"{path}: array {key!r} ({entry['file']}) cannot be read "
                                   f"without pickle ({err}); save the atlas again") from None
        if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
            raise AtlasFormatError(f"{path}: array {key!r} has shape {array.shape} and dtype "
                                   f"{array.dtype}, the manifest says {entry['shape']} "
                                   f"{entry['dtype']}")
        arrays[key] = array
    return manifest, arrays
