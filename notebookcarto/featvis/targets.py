"""What a feature visualisation is of: a neuron, a class, or a cluster of neurons.

Targets are given by key, with the ids the atlas and its graphs use:

- ``"layer:channel"``: a neuron (a channel of a layer);
- ``"class:<index>"`` or ``"class:<name>"``: a class neuron (the model's output ``index``);
- ``"cluster:<n>"`` or ``"cluster:<n>@<layer>"``: the members of a neuron cluster in one layer,
  as the mean direction of their channels (the id of the cluster graph's node; a cluster that
  spans several layers has one target per layer, and ``"cluster:<n>"`` then names them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["Target", "class_targets", "cluster_targets", "resolve_targets"]


@dataclass(frozen=True)
class Target:
    """One thing to visualise.

    Attributes:
        key: the id it is stored under (see the module docstring).
        kind: "neuron", "class" or "cluster".
        layer: the layer of its channels, None for a class (the model's output).
        channels: the channel(s) whose mean direction is the target (one for a neuron, the
            members for a cluster); for a class, its output index.
        label: text to show (the class name, the neuron id, the cluster and its size).
    """

    key: str
    kind: str
    layer: str | None
    channels: tuple
    label: str

    def direction(self, n_channels: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """(n_channels,) the unit's direction: 1/|channels| on its channels, 0 elsewhere."""
        v = torch.zeros(n_channels, device=device, dtype=dtype)
        v[list(self.channels)] = 1.0 / len(self.channels)
        return v


def class_targets(atlas_or_names) -> list[str]:
    """The keys of every class of an atlas (or of a list of class names)."""
    names = getattr(atlas_or_names, "class_names", atlas_or_names)
    return [f"class:{k}" for k in range(len(names))]


def cluster_targets(atlas: "Atlas") -> list[str]:
    """The keys of every cluster of an atlas with ``Clusters`` attached, one per cluster and
    layer, named as the cluster graph names its nodes."""
    return [t.key for parts in _cluster_table(atlas).values() for t in parts]


def resolve_targets(targets, *, atlas: "Atlas | None" = None,
                    class_names=None) -> list[Target]:
    """Keys (or ``Target`` objects) -> ``Target`` objects, checked; raises before any work with
    what was wrong and how to name it instead. Neuron channels are checked against the model
    later (their layer's width is known only after a forward pass)."""
    if isinstance(targets, (str, Target)):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise ValueError("no targets given: pass keys such as 'layer3:5', 'class:2' or "
                         "'cluster:4'")
    if class_names is None and atlas is not None:
        class_names = atlas.class_names or None
    out: list[Target] = []
    clusters = None
    for spec in targets:
        if isinstance(spec, Target):
            out.append(spec)
            continue
        if not isinstance(spec, str):
            raise TypeError(f"a target is a key string such as 'layer3:5', 'class:2' or "
                            f"'cluster:4', got {type(spec).__name__} {spec!r}")
        if spec.startswith("class:"):
            out.append(_class_target(spec, class_names))
        elif spec.startswith("cluster:"):
            if clusters is None:
                clusters = _cluster_table(atlas)
            out.extend(_cluster_target(spec, clusters))
        else:
            out.append(_neuron_target(spec, atlas))
    keys = [t.key for t in out]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"targets repeat: {repeated}; give each once")
    return out


def _class_target(spec: str, class_names) -> Target:
    name = spec[len("class:"):]
    names = list(class_names) if class_names is not None else None
    if name.isdigit():
        k = int(name)
        if names is not None and k >= len(names):
            raise KeyError(f"unknown class {spec!r}: there are {len(names)} classes "
                           f"(class:0 .. class:{len(names) - 1})")
    elif names is not None and name in names:
        k = names.index(name)
    else:
        raise KeyError(f"unknown class {spec!r}: give 'class:<index>'"
                       + (f" or 'class:<name>' with a name from {names[:8]}" if names else
                          " (or pass atlas= to name classes)"))
    label = names[k] if names is not None else f"class {k}"
    return Target(f"class:{k}", "class", None, (k,), label)


def _neuron_target(spec: str, atlas) -> Target:
    layer, _, channel = spec.rpartition(":")
    if not layer or not (channel.isascii() and channel.isdigit()):
        raise KeyError(f"cannot read target {spec!r}: a neuron is 'layer:channel' (e.g. "
                       "'layer3.1:7'), a class 'class:<index>', a cluster 'cluster:<n>'")
    if atlas is not None and layer in atlas.layers:
        atlas.parse_neuron(spec)  # channel range, with the atlas's message
    return Target(spec, "neuron", layer, (int(channel),), spec)


def _cluster_target(spec: str, table: dict) -> list[Target]:
    body = spec[len("cluster:"):]
    number, _, layer = body.partition("@")
    if not number.isdigit() or int(number) not in table:
        raise KeyError(f"unknown cluster {spec!r}: the atlas has clusters 0.."
                       f"{max(table) if table else -1} ('cluster:<n>' or "
                       "'cluster:<n>@<layer>')")
    parts = table[int(number)]
    if not layer:
        return list(parts)
    chosen = [t for t in parts if t.layer == layer]
    if not chosen:
        raise KeyError(f"cluster {number} has no members in layer {layer!r}; its layers: "
                       f"{[t.layer for t in parts]}")
    return chosen


def _cluster_table(atlas) -> dict[int, list[Target]]:
    """{cluster id: one Target per layer of its members}, keys as the cluster graph's."""
    if atlas is None or not atlas.has("clusters"):
        raise ValueError("cluster targets need an atlas with clusters: pass atlas= after "
                         "atlas.attach(analyses.cluster_neurons(atlas, model, data))")
    clusters = atlas.get("clusters")
    labels = np.asarray(clusters.labels)
    ids = list(clusters.neuron_ids)
    table: dict[int, list[Target]] = {}
    for n in sorted(int(v) for v in np.unique(labels[labels >= 0])):
        by_layer: dict[str, list[int]] = {}
        for i in np.flatnonzero(labels == n):
            layer, _, channel = ids[i].rpartition(":")
            by_layer.setdefault(layer, []).append(int(channel))
        layers = [layer for layer in atlas.layers if layer in by_layer]
        table[n] = [Target(f"cluster:{n}" if len(layers) == 1 else f"cluster:{n}@{layer}",
                           "cluster", layer, tuple(by_layer[layer]),
                           f"cluster {n} ({len(by_layer[layer])} neurons of {layer})")
                    for layer in layers]
    return table
