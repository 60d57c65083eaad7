"""Helpers shared by the views: the front-end bundle and neuron ids."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["BUNDLE", "HOST", "NO_VIEW_ESM", "STATIC", "bundle_path", "neuron_index"]

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
BUNDLE = STATIC / "widget.js"
HOST = STATIC / "host.js"

# Models that only hold state (the shared selection, the atlas data) render nothing.
NO_VIEW_ESM = "export default { render() {} };\n"


def bundle_path() -> pathlib.Path:
    """The front-end bundle; a clear error if the package was installed without it."""
    if not BUNDLE.exists():
        raise FileNotFoundError(f"the front-end bundle {BUNDLE} is missing: reinstall notebookcarto "
                                "or build it with `npm ci && npm run build` in js/")
    return BUNDLE


def neuron_index(atlas, neuron) -> int:
    """A neuron id ``"layer:channel"`` (or an index) -> its index in ``atlas.neuron_ids``."""
    if isinstance(neuron, (int, np.integer)) and not isinstance(neuron, bool):
        n = len(atlas.neuron_ids)
        if not 0 <= int(neuron) < n:
            raise IndexError(f"neuron index {neuron} is out of range: the atlas has {n} neurons")
        return int(neuron)
    return int(atlas.neuron_index([neuron])[0])
