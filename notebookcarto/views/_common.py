"""Helpers shared by the views: the front-end bundle, binary traits, neuron ids."""

from __future__ import annotations

import pathlib

import numpy as np

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


def f32(array) -> bytes:
    """A float32 array as raw little-endian bytes (a binary trait)."""
    return np.ascontiguousarray(np.asarray(array, dtype="<f4")).tobytes()


def u32(array) -> bytes:
    return np.ascontiguousarray(np.asarray(array, dtype="<u4")).tobytes()


def i32(array) -> bytes:
    return np.ascontiguousarray(np.asarray(array, dtype="<i4")).tobytes()


def layer_offsets(atlas) -> dict[str, int]:
    """Index of each layer's first neuron in ``atlas.neuron_ids`` order."""
    offsets, start = {}, 0
    for name, layer in atlas.stats.layers.items():
        offsets[name] = start
        start += layer.channels
    return offsets


def neuron_index(atlas, neuron) -> int:
    """A neuron id ``"layer:channel"`` (or an index) -> its index in ``atlas.neuron_ids``."""
    if isinstance(neuron, (int, np.integer)) and not isinstance(neuron, bool):
        n = len(atlas.neuron_ids)
        if not 0 <= int(neuron) < n:
            raise IndexError(f"neuron index {neuron} is out of range: the atlas has {n} neurons")
        return int(neuron)
    layer, channel = atlas.parse_neuron(neuron)
    return layer_offsets(atlas)[layer] + channel


def section(atlas, name: str):
    """The section ``name`` of the atlas, or None."""
    found = atlas.sections.get(name)
    return found if isinstance(found, dict) else None
