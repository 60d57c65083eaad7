"""Per-class graphs of neuron clusters (NeuroCartography's graph view; Park et al., IEEE VIS
2021).

For one class: the top ``top_fraction`` of each layer's neurons by Summit's count A, each replaced
by its cluster (from ``cluster_neurons``); edges join nodes of consecutive graph layers. Output as
pandas DataFrames and as the graph JSON of docs/atlas-sections.md; ``cluster_graphs`` gives every
class's graph as a ``ClusterGraphs`` result. The same default view as the attribution graphs
(``analyses.graph_view``): at most 9 layers on deep networks, 10 nodes a layer and 40 edges into
a layer shown, the rest kept with ``"shown": false``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from .clustering import Clusters
from .graph_view import VIEW_DEFAULTS, graph_layers, mark_shown
from .influence import Influence
from .result import ClassGraphs

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["ClusterGraphs", "cluster_graph", "cluster_graphs"]


class ClusterGraphs(ClassGraphs):
    """Cluster graphs of several classes (``cluster_graphs``): ``graphs`` {class name: graph
    JSON (docs/atlas-sections.md)} and the ``params`` they were made with."""

    section: ClassVar[str] = "cluster_graphs"


def _counts(atlas, k: int) -> dict[str, np.ndarray]:
    atlas._require_classes()
    return {name: layer.aggregation.counts[k].detach().cpu().numpy()
            for name, layer in atlas.stats.layers.items()}


def _influence(atlas, earlier: str, later: str, k: int):
    """Summit's I[k] (C_later, C_earlier) for a layer pair, or None when not computed."""
    if not atlas.has(Influence):
        return None
    counts = atlas.get(Influence).counts.get((earlier, later))
    return None if counts is None else np.asarray(counts)[k]


def _nodes(atlas, labels, counts, top_fraction, listed_members, layers):
    widths = [layer.channels for layer in atlas.stats.layers.values()]
    layer_of = np.repeat(np.arange(len(widths)), widths)
    ok = labels >= 0
    spans = np.unique(np.stack([labels[ok], layer_of[ok]], 1), axis=0)[:, 0]
    layer_count = np.bincount(spans, minlength=int(labels.max()) + 1 if ok.any() else 0)
    offsets = atlas.layer_offsets
    nodes = []
    for layer in layers:
        a = counts[layer]
        channels = a.size
        offset = offsets[layer]
        lab = labels[offset:offset + channels]
        n_top = max(1, math.ceil(top_fraction * channels))
        top = np.argsort(-a, kind="stable")[:n_top]
        seen = set()
        for c in top[a[top] > 0]:
            if lab[c] < 0:
                members, node_id = [int(c)], f"{layer}:{c}"
            else:
                if lab[c] in seen:
                    continue
                seen.add(lab[c])
                members = np.flatnonzero(lab == lab[c]).tolist()
                node_id = (f"cluster:{lab[c]}" if layer_count[lab[c]] == 1
                           else f"cluster:{lab[c]}@{layer}")
            by_count = sorted(members, key=lambda m: (-a[m], m))
            nodes.append({
                "id": node_id, "layer": layer, "kind": "neuron" if lab[c] < 0 else "cluster",
                "cluster": int(lab[c]), "channels": members, "size": len(members),
                "count": float(np.mean(a[members])),
                "members": [f"{layer}:{m}" for m in members],
                "active": [f"{layer}:{m}" for m in by_count if a[m] > 0][:listed_members]})
    return nodes


def _coactivation(shared, earlier: list[int], later: list[int], e_layer: str,
                  l_layer: str) -> np.ndarray:
    """(len(later), len(earlier)): top images shared by each later / earlier neuron."""
    a = [shared(l_layer, c) for c in later]
    b = [shared(e_layer, c) for c in earlier]
    return np.array([[len(x & y) for y in b] for x in a], dtype=np.float64)


def _layout(nodes, edges, layers):
    """Layered layout: y from the layer (deepest on top, y = 1), x in (0, 1) ordered within a
    layer by the mean x of a node's sources (barycentre), the first layer by count."""
    ys = {layer: (i / (len(layers) - 1) if len(layers) > 1 else 0.5)
          for i, layer in enumerate(layers)}
    x = {}
    sources = {}
    for e in edges:
        sources.setdefault(e["target"], []).append((e["source"], e["weight"]))
    for layer in layers:
        here = [n for n in nodes if n["layer"] == layer]

        def key(n):
            inputs = [(x[s], w) for s, w in sources.get(n["id"], []) if s in x]
            if inputs:
                total = sum(w for _, w in inputs)
                return (0, sum(xs * w for xs, w in inputs) / total, -n["count"], n["id"])
            return (1, 0.0, -n["count"], n["id"])

        for rank, n in enumerate(sorted(here, key=key)):
            x[n["id"]] = (rank + 0.5) / len(here)
    for n in nodes:
        n["x"], n["y"] = float(x[n["id"]]), float(ys[n["layer"]])


def _pagerank(nodes, edges, damping):
    """Personalised PageRank (edges from earlier to later layers, weighted; restart in
    proportion to each node's count)."""
    import igraph

    index = {n["id"]: i for i, n in enumerate(nodes)}
    reset = np.array([max(n["count"], 0.0) for n in nodes], dtype=float)
    reset = reset / reset.sum() if reset.sum() > 0 else np.full(len(nodes), 1.0 / len(nodes))
    if not edges:
        return reset.tolist()
    g = igraph.Graph(n=len(nodes), edges=[(index[e["source"]], index[e["target"]]) for e in edges],
                     directed=True)
    return g.personalized_pagerank(damping=damping, reset=reset.tolist(),
                                   weights=[e["weight"] for e in edges])


def cluster_graph(atlas: "Atlas", cls, *, top_fraction: float = 0.1, listed_members: int = 10,
                  image_labels=None, damping: float = 0.85, layers=None,
                  max_layers: int | None = VIEW_DEFAULTS["max_layers"],
                  max_nodes: int | None = VIEW_DEFAULTS["max_nodes"],
                  max_edges: int | None = VIEW_DEFAULTS["max_edges"]):
    """The cluster graph of one class (``cls``: index or name).

    Nodes: the top ``top_fraction`` of each layer's neurons by A for the class (only A > 0),
    each replaced by its cluster's members in that layer (``members``; ``active``: those with
    A > 0, most counted first, at most ``listed_members``; ``count``: mean A over the members).
    Unclustered neurons are single-neuron nodes with their neuron id; a cluster node's id is
    ``"cluster:<n>"``, or ``"cluster:<n>@<layer>"`` when the cluster spans several layers.
    Layers: ``layers`` (default: the atlas's, at most ``max_layers`` of them, chosen by
    ``graph_view.graph_layers``: first, last and stage outputs first). Edges: between nodes of
    consecutive graph layers, weight
    sum over n in G, n' in G' of I[class][n][n'] / (|G| |G'|), with Summit's influence counts
    from the atlas section ``"influence"`` when it holds that layer pair, else the same mean
    over member pairs of the number of top images the two neurons share (restricted to images
    of the class when ``image_labels``, the label of every image id, is given). ``pagerank``:
    personalised PageRank (``damping``) restarting in proportion to ``count``.

    Default view (``graph_view.mark_shown``): per layer the ``max_nodes`` nodes with the largest
    ``count``, per target layer at most ``max_edges`` edges between them, marked ``"shown":
    true``; the others stay in the data. ``x``, ``y`` lay out the default view, ``x_all`` all
    nodes. None: no cap.

    Returns ``(nodes, edges, graph)``: two DataFrames and the JSON-ready dict.
    """
    k = atlas.class_index(cls)
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    labels = np.asarray(atlas.get(Clusters).labels, dtype=np.int64)
    counts = _counts(atlas, k)
    if layers is None:
        layers = graph_layers(atlas, atlas.layers, max_layers)
    layers = list(layers)
    unknown = [name for name in layers if name not in atlas.layers]
    if unknown:
        raise KeyError(f"graph layer(s) {unknown} are not in the atlas (it has {atlas.layers})")
    order = {name: i for i, name in enumerate(atlas.layers)}
    layers = sorted(dict.fromkeys(layers), key=order.get)
    nodes = _nodes(atlas, labels, counts, top_fraction, listed_members, layers)

    keep_images = None
    if image_labels is not None:
        image_labels = np.asarray(image_labels)
        if image_labels.shape[0] < atlas.stats.n_images:
            raise ValueError(f"image_labels has {image_labels.shape[0]} entries for "
                             f"{atlas.stats.n_images} images")
        keep_images = set(np.flatnonzero(image_labels == k).tolist())
    cache = {}

    def shared(layer, channel):
        """A neuron's top images (of the class only, with image_labels), as a set."""
        if (layer, channel) not in cache:
            top = atlas.stats.layers[layer].top.index[channel]
            s = set(top[top >= 0].tolist())
            cache[(layer, channel)] = s & keep_images if keep_images is not None else s
        return cache[(layer, channel)]

    edges = []
    for earlier, later in zip(layers[:-1], layers[1:]):
        lower = [n for n in nodes if n["layer"] == earlier]
        upper = [n for n in nodes if n["layer"] == later]
        if not lower or not upper:
            continue
        influence = _influence(atlas, earlier, later, k)
        kind = "influence" if influence is not None else "coactivation"
        for up in upper:
            for low in lower:
                if influence is not None:
                    block = influence[np.ix_(up["channels"], low["channels"])]
                else:
                    block = _coactivation(shared, low["channels"], up["channels"],
                                          earlier, later)
                weight = float(block.sum()) / (len(up["channels"]) * len(low["channels"]))
                if weight > 0:
                    edges.append({"source": low["id"], "target": up["id"], "weight": weight,
                                  "kind": kind})

    used = [layer for layer in layers if any(n["layer"] == layer for n in nodes)]
    for n, rank in zip(nodes, _pagerank(nodes, edges, damping) if nodes else []):
        n["pagerank"] = float(rank)
    for n in nodes:
        inputs = sorted((e for e in edges if e["target"] == n["id"]),
                        key=lambda e: (-e["weight"], e["source"]))
        n["top_inputs"] = [e["source"] for e in inputs[:3]]
    mark_shown(nodes, edges, mass="count", max_nodes=max_nodes, max_edges=max_edges)
    _layout(nodes, edges, used)
    for n in nodes:
        n["x_all"] = n["x"]
    shown = [n for n in nodes if n["shown"]]
    if len(shown) < len(nodes):  # every used layer keeps a shown node: the same heights
        _layout(shown, [e for e in edges if e["shown"]], used)

    columns = ["id", "layer", "kind", "cluster", "size", "count", "pagerank", "x", "y",
               "members", "active", "top_inputs", "shown", "x_all"]
    node_df = pd.DataFrame([{c: n[c] for c in columns} for n in nodes], columns=columns)
    node_df = node_df.set_index("id")
    edge_df = pd.DataFrame(edges, columns=["source", "target", "weight", "kind", "shown"])
    graph = {"class": atlas.class_names[k], "layers": used,
             "nodes": [{c: n[c] for c in columns} for n in nodes],
             "edges": [dict(e) for e in edges]}
    return node_df, edge_df, graph


def cluster_graphs(atlas: "Atlas", classes=None, **options) -> ClusterGraphs:
    """``cluster_graph`` for every class (or those in ``classes``), as ``ClusterGraphs``
    ({class name: graph JSON}); ``options`` go to ``cluster_graph``."""
    chosen = range(len(atlas.class_names)) if classes is None else classes
    graphs = {}
    for cls in chosen:
        k = atlas.class_index(cls)
        graphs[atlas.class_names[k]] = cluster_graph(atlas, k, **options)[2]
    defaults = {"max_layers": VIEW_DEFAULTS["max_layers"], "max_nodes": VIEW_DEFAULTS["max_nodes"],
                "max_edges": VIEW_DEFAULTS["max_edges"]}
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
              for k, v in {**defaults, **options}.items() if k != "image_labels"}
    params["class_images_only"] = options.get("image_labels") is not None
    return ClusterGraphs(graphs, params)
