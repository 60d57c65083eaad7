"""Locate the shared data folder (CIFAR-10 test images, pretrained weights).

The folder is never part of the repository. It is found, in order, from:

1. the ``NOTEBOOKCARTO_SHARED`` environment variable;
2. a ``shared`` folder beside the repository root (``<repo>/../shared``);
3. ``<cwd>/../shared`` and ``<cwd>/shared``.

A candidate counts only if it holds ``REFERENCE.md``, ``data/`` or ``models/``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NOTEBOOKCARTO_SHARED"
_MARKERS = ("REFERENCE.md", "data", "models")


def _looks_shared(folder: Path) -> bool:
    return folder.is_dir() and any((folder / m).exists() for m in _MARKERS)


def _candidates() -> list[Path]:
    """Folders searched when the environment variable is not set, in order."""
    repo_root = Path(__file__).resolve().parent.parent.parent
    cwd = Path.cwd()
    out: list[Path] = []
    for folder in (repo_root.parent / "shared", cwd.parent / "shared", cwd / "shared"):
        folder = folder.resolve()
        if folder not in out:
            out.append(folder)
    return out


def find_shared() -> Path | None:
    """Return the shared data folder, or None when it cannot be found.

    ``NOTEBOOKCARTO_SHARED`` wins when set (it is returned only if it looks like
    a shared folder); otherwise the folders beside the repository and the
    current working directory are tried.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        folder = Path(env).expanduser().resolve()
        return folder if _looks_shared(folder) else None
    for folder in _candidates():
        if _looks_shared(folder):
            return folder
    return None


def shared_path(*parts: str) -> Path:
    """Return ``<shared>/<parts...>``, checking that it exists.

    Raises FileNotFoundError naming the places searched and the environment
    variable to set when the shared folder or the requested path is missing.
    """
    root = find_shared()
    if root is None:
        env = os.environ.get(ENV_VAR)
        if env:
            where = f"{ENV_VAR}={env} (it holds none of {', '.join(_MARKERS)})"
        else:
            where = ", ".join(str(p) for p in _candidates())
        raise FileNotFoundError(
            f"shared data folder not found; looked in: {where}. "
            f"Set {ENV_VAR} to the folder holding data/ and models/."
        )
    path = root.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist in the shared folder {root}. "
            f"Put it there, or set {ENV_VAR} to a shared folder that has it."
        )
    return path
