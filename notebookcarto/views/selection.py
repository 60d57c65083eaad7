"""The one selection model all views share, and its Python face."""

from __future__ import annotations

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from . import adapters
from ._common import NO_VIEW_ESM, neuron_index
from .traits import Array

__all__ = ["NeuronSelection", "SelectionModel", "resolve_neurons"]


class SelectionModel(anywidget.AnyWidget):
    """Shared state of linked views: selected neurons, hovered neurons, selected class.

    ``neurons`` (a uint32 array; ``indices`` as a list) and ``hover`` hold neuron indices
    (``atlas.neuron_ids`` order); ``cls`` is a class index or -1; ``origin`` names the view that
    made the last change. Every view holds a reference to one of these (anywidget
    ``WidgetTrait``); the front ends reach it with ``host.getModel``, so a change made in any
    view shows in all of them.
    """

    _esm = NO_VIEW_ESM
    # a binary uint32 array: a lasso over a million points stays a compact message (the front
    # end sets it too)
    neurons = Array("uint32", ndim=1, default_value=[], allow_none=False).tag(sync=True)
    hover = t.List(t.Int()).tag(sync=True)
    cls = t.Int(-1).tag(sync=True)
    origin = t.Unicode("").tag(sync=True)

    @property
    def indices(self) -> list[int]:
        """The selected neuron indices as a list."""
        return self.neurons.astype(int).tolist()

    @indices.setter
    def indices(self, values) -> None:
        self.neurons = np.asarray(list(values), dtype=np.uint32)


class NeuronSelection(list):
    """Selected neuron ids (a list of ``"layer:channel"``), with ``.frame`` (their rows of
    ``atlas.neurons``: layer, channel, statistics and the columns of the attached results,
    e.g. cluster, concept and IoU), ``.to_csv()`` and ``.indices`` (positions in
    ``atlas.neuron_ids``)."""

    def __init__(self, atlas, indices):
        ids = atlas.neuron_ids
        self.indices = [int(i) for i in indices]
        super().__init__(ids[i] for i in self.indices)
        self._atlas = atlas

    @property
    def frame(self) -> pd.DataFrame:
        """The selected neurons' rows of ``atlas.neurons``, in selection order."""
        return self._atlas.neurons.loc[list(self)]

    def to_csv(self, path=None, **options):
        """``frame`` as CSV: written to ``path`` (then None is returned), or returned as text
        without one; ``options`` go to ``DataFrame.to_csv``."""
        return self.frame.to_csv(path, **options)

    def __repr__(self) -> str:
        return f"NeuronSelection({list.__repr__(self)})"


def _cluster_members(atlas, name: str) -> list[int]:
    labels = adapters.cluster_labels(atlas)
    if labels is None:
        raise KeyError(f"{name!r} names a cluster but {adapters.note('clusters')}; or select "
                       "neuron ids")
    label, _, layer = name.split(":", 1)[1].partition("@")
    if not label.isdigit() or (layer and layer not in atlas.layers):
        raise KeyError(f"unknown cluster {name!r}: clusters are named 'cluster:<number>' or, for "
                       "the members in one layer, 'cluster:<number>@<layer>'")
    members = np.flatnonzero(labels == int(label))
    if layer:
        ids = atlas.neuron_ids
        members = [i for i in members if atlas.parse_neuron(ids[i])[0] == layer]
    if len(members) == 0:
        raise KeyError(f"cluster {name!r} has no members")
    return [int(i) for i in members]


def resolve_neurons(atlas, value) -> list[int]:
    """Neuron ids, indices, ``"cluster:<n>"`` (or ``"cluster:<n>@<layer>"``, the graph's cluster
    node ids) names, a DataFrame / Series (its index) or None -> a list of distinct neuron indices
    in the given order."""
    if value is None:
        return []
    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = list(value.index)
    elif isinstance(value, (str, int, np.integer)):
        value = [value]
    out, seen = [], set()
    for item in value:
        if isinstance(item, str) and item.startswith("cluster:"):
            indices = _cluster_members(atlas, item)
        else:
            indices = [neuron_index(atlas, item)]
        for i in indices:
            if i not in seen:
                seen.add(i)
                out.append(i)
    return out
