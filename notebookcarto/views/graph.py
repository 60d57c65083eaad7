"""AttributionGraph: Summit's attribution graph and NeuroCartography's cluster graph."""

from __future__ import annotations

import numpy as np
import traitlets as t

from ._common import section
from .base import View
from .data import missing_note

KINDS = {"attribution": "attribution_graphs", "cluster": "cluster_graphs"}


def _clean_graph(graph: dict) -> dict:
    """Keep the documented fields of a graph (see docs/atlas-sections.md), as plain JSON."""
    def number(v, default=0.0):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return default
        return v if np.isfinite(v) else default

    nodes = []
    for node in graph.get("nodes", []):
        item = {"id": str(node["id"]), "layer": str(node.get("layer", "")),
                "count": number(node.get("count")), "pagerank": number(node.get("pagerank")),
                "members": [str(m) for m in node.get("members", [node["id"]])],
                "top_inputs": [str(m) for m in node.get("top_inputs", [])]}
        if "x" in node and "y" in node:
            item["x"], item["y"] = number(node["x"]), number(node["y"])
        nodes.append(item)
    edges = []
    for e in graph.get("edges", []):
        edge = {"source": str(e["source"]), "target": str(e["target"]),
                "weight": number(e.get("weight"), 1.0)}
        if "kind" in e:  # cluster graphs: "influence" or "coactivation"
            edge["kind"] = str(e["kind"])
        edges.append(edge)
    return {"class": str(graph.get("class", "")), "layers": [str(x) for x in graph.get("layers", [])],
            "nodes": nodes, "edges": edges}


def top_neuron_graphs(atlas, per_layer: int | None = None) -> dict:
    """A stand-in graph per class from Summit's A: each layer's top neurons by count (default:
    the top 10 %, at least 3), with edges from the influence counts I when the atlas has them."""
    influence = section(atlas, "influence")
    pairs = {} if influence is None else {
        (str(a), str(b)): influence["arrays"].get(f"counts/{b}|{a}")
        for a, b in influence.get("meta", {}).get("pairs", [])}
    graphs = {}
    for k, name in enumerate(atlas.class_names):
        nodes, kept = [], {}
        for layer in atlas.layers:
            counts = atlas.stats.layers[layer].aggregation.counts[k].cpu().numpy()
            n = per_layer or max(3, int(np.ceil(0.1 * len(counts))))
            top = [int(c) for c in np.argsort(-counts, kind="stable")[:n] if counts[c] > 0]
            kept[layer] = top
            for rank, c in enumerate(top):
                nid = f"{layer}:{c}"
                nodes.append({"id": nid, "layer": layer, "count": float(counts[c]),
                              "pagerank": 0.0, "members": [nid], "top_inputs": []})
        edges = []
        for (earlier, later), counts in pairs.items():
            if counts is None or earlier not in kept or later not in kept:
                continue
            block = np.asarray(counts)[k]  # (C_later, C_earlier)
            for j in kept[later]:
                for i in kept[earlier]:
                    if block[j, i] > 0:
                        edges.append({"source": f"{earlier}:{i}", "target": f"{later}:{j}",
                                      "weight": float(block[j, i])})
        graphs[name] = {"class": name, "layers": atlas.layers, "nodes": nodes, "edges": edges}
    return graphs


class AttributionGraph(View):
    """Summit's graph view and NeuroCartography's cluster graph for the selected class.

    Layers run top (deep) to bottom (shallow); nodes show example patches, sized by count; edge
    width follows the influence weight. Hover greys out all but the node's neighbourhood and
    shows its patches (a cluster's members with theirs), animating its edges; click selects the
    neuron (or the cluster's members) and lists its top-3 inputs; ``min_count`` hides small
    nodes; the width and height sliders spread the layout; wheel zooms, drag pans, "fit" resets;
    the class picker searches the class names. ``kind`` switches between the attribution graph
    and the cluster graph. Without those sections the graph falls back to each layer's top
    neurons by Summit's A (with influence edges when the atlas has them) and says so.
    """

    _view = t.Unicode("graph").tag(sync=True)
    graphs = t.Dict().tag(sync=True)
    kinds = t.List(t.Unicode()).tag(sync=True)
    kind = t.Unicode("").tag(sync=True)
    min_count = t.Float(0).tag(sync=True)
    x_scale = t.Float(1.0).tag(sync=True)
    y_scale = t.Float(1.0).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, kind: str | None = None, min_count: float = 0,
                 height: int = 520, state=None, data=None):
        graphs, notes = {}, []
        for label, name in KINDS.items():
            found = section(atlas, name)
            stored = {} if found is None else found.get("meta", {}).get("graphs", {})
            if stored:
                graphs[label] = {str(c): _clean_graph(g) for c, g in stored.items()}
            else:
                notes.append(missing_note(name))
        if "attribution" not in graphs and atlas.stats.num_classes:
            graphs["top neurons"] = top_neuron_graphs(atlas)
            if section(atlas, "influence") is None:
                notes.append(missing_note("influence") + "; the top-neuron graph has no edges")
        kinds = list(graphs)
        if kind is None:
            kind = kinds[0] if kinds else ""
        elif kind not in kinds:
            raise ValueError(f"kind {kind!r} is not available: this atlas has {kinds}")
        super().__init__(atlas, state=state, data=data, graphs=graphs, kinds=kinds, kind=kind,
                         min_count=min_count, height=height, notes=notes)
