"""ClassSidebar: Summit's class list."""

from __future__ import annotations

import numpy as np
import traitlets as t

from ._common import f32
from .base import View


def class_similarity(atlas) -> np.ndarray:
    """(classes, classes) cosine similarity of the classes' count vectors: each class's row of
    Summit's A over all layers. (Summit's sidebar stored channel indices in these vectors
    instead of counts; here they are the counts.)"""
    rows = [layer.aggregation.counts.cpu().numpy().astype(np.float64)
            for layer in atlas.stats.layers.values()]
    a = np.concatenate(rows, axis=1)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    a = a / np.where(norm > 0, norm, 1)
    return (a @ a.T).astype(np.float32)


class ClassSidebar(View):
    """Summit's class sidebar: search the classes, sort them by similarity to the selected class
    (cosine of their count vectors in A), by accuracy (down or up) or by name; each row shows
    the accuracy and a histogram of the probability the model gave the true class. Click a row
    to select the class."""

    _view = t.Unicode("sidebar").tag(sync=True)
    accuracy = t.Bytes(b"").tag(sync=True)
    images = t.List(t.Int()).tag(sync=True)
    hist = t.Bytes(b"").tag(sync=True)
    bins = t.Int(0).tag(sync=True)
    similarity = t.Bytes(b"").tag(sync=True)
    sort = t.Unicode("accuracy-desc").tag(sync=True)
    query = t.Unicode("").tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    SORTS = ("similarity", "accuracy-desc", "accuracy-asc", "name")

    def __init__(self, atlas, *, sort: str = "accuracy-desc", height: int = 480, state=None,
                 data=None):
        if sort not in self.SORTS:
            raise ValueError(f"sort must be one of {self.SORTS}, got {sort!r}")
        traits, notes = {}, []
        if atlas.stats.num_classes:
            table = atlas.classes
            traits["images"] = [int(v) for v in table.get("images", [])]
            traits["similarity"] = f32(class_similarity(atlas))
            if atlas.stats.accuracy is not None:
                traits["accuracy"] = f32(table["accuracy"].to_numpy())
                hist = np.asarray(atlas.probability_histogram, dtype=np.float64)
                total = hist.sum(1, keepdims=True)
                traits["hist"] = f32(hist / np.where(total > 0, total, 1))
                traits["bins"] = hist.shape[1]
            else:
                notes.append("no accuracy statistics: the model's output gave no class logits")
        else:
            notes.append("this atlas has no classes: build it from a loader that yields labels")
        super().__init__(atlas, state=state, data=data, sort=sort, height=height, notes=notes,
                         **traits)
