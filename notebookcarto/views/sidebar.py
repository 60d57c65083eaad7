"""ClassSidebar: Summit's class list."""

from __future__ import annotations

import numpy as np
import traitlets as t

from . import adapters
from .base import View
from .traits import Array, Option, check_options

__all__ = ["SORTS", "ClassSidebar"]

SORTS = ("similarity", "accuracy-desc", "accuracy-asc", "name")


class ClassSidebar(View):
    """Summit's class sidebar: search the classes, sort them by similarity to the selected class
    (cosine of their count vectors in A, from the class embedding), by accuracy (down or up) or
    by name; each row shows the accuracy and a histogram of the probability the model gave the
    true class. Click a row to select the class."""

    _view = t.Unicode("sidebar").tag(sync=True)
    accuracy = Array("float32", ndim=1).tag(sync=True)  # (classes,)
    images = t.List(t.Int()).tag(sync=True)
    hist = Array("float32", ndim=2).tag(sync=True)  # (classes, bins), each row sums to 1
    bins = t.Int(0).tag(sync=True)
    similarity = Array("float32", ndim=2).tag(sync=True)  # (classes, classes)
    sort = Option(SORTS, default_value="accuracy-desc").tag(sync=True)
    query = t.Unicode("").tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    SORTS = SORTS

    def __init__(self, atlas, *, sort: str = "accuracy-desc", height: int = 480, state=None,
                 data=None):
        check_options(type(self), sort=sort)
        traits, notes = {}, []
        if atlas.stats.num_classes:
            table = atlas.classes
            traits["images"] = [int(v) for v in table.get("images", [])]
            similarity = adapters.class_similarity(atlas)
            if similarity is not None:
                traits["similarity"] = similarity
            else:
                notes.append(adapters.note("class_embedding") + " to sort by similarity")
            if atlas.stats.accuracy is not None:
                traits["accuracy"] = table["accuracy"].to_numpy(np.float32)
                hist = np.asarray(atlas.probability_histogram, dtype=np.float64)
                total = hist.sum(1, keepdims=True)
                traits["hist"] = (hist / np.where(total > 0, total, 1)).astype(np.float32)
                traits["bins"] = hist.shape[1]
            else:
                notes.append("no accuracy statistics: the model's output gave no class logits")
        else:
            notes.append("this atlas has no classes: build it from a loader that yields labels")
        super().__init__(atlas, state=state, data=data, sort=sort, height=height, notes=notes,
                         **traits)
