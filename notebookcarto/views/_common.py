"""Helpers shared by the views: the front-end bundle, neuron ids, user text for Plotly."""

from __future__ import annotations

import html
import os
import pathlib

import numpy as np

__all__ = ["BUNDLE", "HOST", "NO_VIEW_ESM", "STATIC", "bundle_path", "neuron_index",
           "plotly_text", "short_label", "short_labels"]

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


def plotly_text(text) -> str:
    """A user string (class, layer, concept name) as Plotly shows it literally.

    Plotly reads labels, hover texts, tick texts and titles as pseudo-HTML (``<a href>``,
    ``<span style>``, ``<b>``, ``<br>``) and decodes entities; escaping ``&``, ``<`` and ``>``
    makes it show exactly what was typed, and never builds a link or a style from it."""
    return html.escape(str(text), quote=False)


def short_label(text, limit: int = 26) -> str:
    """``text`` cut to at most ``limit`` characters for an axis, keeping both ends (module
    paths differ at their ends: ``features.denseblock4.denselayer16.conv2`` ->
    ``features.dens…ayer16.conv2``)."""
    text = str(text)
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 2
    return text[:limit - 1 - tail] + "…" + text[-tail:]


def short_labels(names, limit: int = 26) -> list[str]:
    """``short_label`` of each name, told apart: names that would shorten alike (module paths
    that differ in the middle, ``features.denseblock1.denselayer16.conv2`` and
    ``features.denseblock2...``) keep the part where they differ, and any still alike get a
    number."""
    names = [str(n) for n in names]
    out = [short_label(n, limit) for n in names]
    if len(set(out)) < len(out):
        prefix = len(os.path.commonprefix(names))
        for i, name in enumerate(names):
            start = max(0, prefix - 6)  # a little context before the difference
            if len(name) > limit and 0 < start < len(name) - limit // 2:
                out[i] = "…" + short_label(name[start:], limit - 1)
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            out[i] = f"{label} ({seen[label]})"
    return out
