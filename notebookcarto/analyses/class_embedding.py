"""Summit's class embedding (REFERENCE section 1.4) and class similarity for the class table.

Per layer, a 2-D UMAP of the rows of the aggregation matrix A (one point per class, cosine
metric); each layer after the first starts from the previous layer's layout, so points move
little when the view switches layer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

SECTION = "class_embedding"


def _aggregation(atlas, layer: str) -> np.ndarray:
    if atlas.stats.num_classes is None:
        raise ValueError("this atlas has no class-wise statistics: build it from a loader that "
                         "yields (images, labels)")
    if layer not in atlas.stats.layers:
        raise KeyError(f"unknown layer {layer!r}: this atlas has {atlas.layers}")
    return atlas.stats.layers[layer].aggregation.counts.cpu().numpy().astype(np.float64)


def class_embedding(atlas, layers=None, *, n_neighbors: int = 15, min_dist: float = 0.1,
                    metric: str = "cosine", seed: int = 0, n_epochs: int | None = None,
                    learning_rate: float = 1.0) -> np.ndarray:
    """(layers, classes, 2) float32 class positions, one UMAP per layer (default: all atlas
    layers, in order) of the rows of A with ``metric``, ``n_neighbors`` (capped at classes - 1),
    ``min_dist`` and ``seed``; the first layer starts from UMAP's spectral layout, each later
    layer from the previous layer's result. Each layout is centred, scaled to unit
    root-mean-square radius and turned (rotation or reflection) to match the previous layer's
    as closely as possible, so a layer switch moves points mainly where the classes' relations
    change. ``learning_rate`` is UMAP's (lower keeps later layers closer to their start).
    Deterministic by ``seed``."""
    import umap  # slow to import: only when needed

    layers = list(atlas.layers if layers is None else layers)
    if not layers:
        raise ValueError("no layers given")
    k = atlas.stats.num_classes or 0
    if k < 3:
        raise ValueError(f"a class embedding needs at least 3 classes, the atlas has {k}")
    out, init = [], "spectral"
    for layer in layers:
        rows = _aggregation(atlas, layer)
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, k - 1),
                            min_dist=min_dist, metric=metric, random_state=seed, init=init,
                            n_epochs=n_epochs, learning_rate=learning_rate)
        with warnings.catch_warnings():
            # small inputs: umap warns about disconnected graphs, n_jobs under a seed, ...
            warnings.simplefilter("ignore")
            xy = reducer.fit_transform(rows)
        xy = _normalise(xy.astype(np.float64))
        if out:
            xy = _rotate_onto(xy, out[-1].astype(np.float64))
        out.append(xy.astype(np.float32))
        init = xy
    return np.stack(out)


def _rotate_onto(xy: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The rotation (or reflection) of ``xy`` closest to ``previous`` (orthogonal Procrustes);
    both centred. A layout has no meaningful orientation, and UMAP may turn it while it runs."""
    u, _, vt = np.linalg.svd(xy.T @ previous)
    return xy @ (u @ vt)


def _normalise(xy: np.ndarray) -> np.ndarray:
    """Centre on 0 and scale to unit root-mean-square radius: UMAP rescales and shifts each
    run, so without this a layer switch would move every point even where the layout stays."""
    xy = xy - xy.mean(0)
    radius = np.sqrt((xy ** 2).sum(1).mean())
    return xy / radius if radius > 0 else xy


def add_class_embedding(atlas, layers=None, **params) -> np.ndarray:
    """Compute ``class_embedding`` and store it in ``atlas.sections["class_embedding"]`` (meta
    ``layers``, ``params``; array ``xy`` (layers, classes, 2) float32). Returns ``xy``."""
    layers = list(atlas.layers if layers is None else layers)
    xy = class_embedding(atlas, layers, **params)
    atlas.sections[SECTION] = {"meta": {"layers": layers, "params": dict(params)},
                               "arrays": {"xy": xy}}
    return xy


def class_similarity(atlas, cls, layers=None) -> pd.Series:
    """Cosine similarity of every class to ``cls`` (index or name) over the count vectors of A
    (rows of A of ``layers``, default all, concatenated), one value per class in class order;
    0 where a class has no counts. Summit's sidebar compared vectors of top-channel indices
    instead of counts (a known defect); this compares the counts."""
    y = atlas.class_index(cls)
    layers = list(atlas.layers if layers is None else [layers] if isinstance(layers, str)
                  else layers)
    rows = np.concatenate([_aggregation(atlas, n) for n in layers], axis=1)
    norms = np.linalg.norm(rows, axis=1)
    dots = rows @ rows[y]
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(norms * norms[y] > 0, dots / (norms * norms[y]), 0.0)
    return pd.Series(sim, index=pd.RangeIndex(len(sim), name="class"),
                     name=f"similarity to {atlas.class_names[y]}")
