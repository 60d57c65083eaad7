"""Versioned, atomic storage of an atlas: a folder with a JSON manifest and .npy arrays."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

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


def _fsync(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, manifest: dict, arrays: dict[str, np.ndarray]):
    """Write ``manifest`` and ``arrays`` to the folder ``path``, atomically.

    Everything goes to a hidden temporary folder beside ``path`` first, which then replaces
    ``path`` by renames, so a crash never leaves a half-written atlas. An existing ``path`` is
    replaced only if it is an atlas itself.
    """
    path = Path(path)
    if path.exists() and not (path / MANIFEST).is_file():
        raise FileExistsError(f"{path} exists and is not an atlas: choose another path or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "arrays").mkdir(parents=True)
        entries = {}
        for i, (key, array) in enumerate(arrays.items()):
            file = f"arrays/{i:04d}.npy"
            np.save(tmp / file, np.require(array, requirements="C"), allow_pickle=False)
            _fsync(tmp / file)
            entries[key] = {"file": file, "dtype": str(array.dtype), "shape": list(array.shape),
                            "sha256": _sha256(tmp / file)}
        full = {"format": FORMAT, "version": VERSION, **manifest, "arrays": entries}
        with open(tmp / MANIFEST, "w") as f:
            json.dump(full, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read an atlas folder: the manifest and every array, each checked against its checksum."""
    path = Path(path)
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
    if not isinstance(version, int) or version > VERSION:
        raise AtlasFormatError(f"{path} was written in atlas format {version}, newer than this "
                               f"notebookcarto reads ({VERSION}): upgrade notebookcarto")
    arrays = {}
    for key, entry in manifest.get("arrays", {}).items():
        if not (isinstance(entry, dict) and {"file", "sha256", "shape", "dtype"} <= set(entry)):
            raise AtlasFormatError(f"{path / MANIFEST}: the entry of array {key!r} is malformed")
        file = path / entry["file"]
        if not file.is_file() or _sha256(file) != entry["sha256"]:
            raise AtlasFormatError(f"{path}: array {key!r} ({entry['file']}) is missing, corrupt "
                                   "or truncated; save the atlas again")
        array = np.load(file, allow_pickle=False)
        if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
            raise AtlasFormatError(f"{path}: array {key!r} has shape {array.shape} and dtype "
                                   f"{array.dtype}, the manifest says {entry['shape']} "
                                   f"{entry['dtype']}")
        arrays[key] = array
    return manifest, arrays
