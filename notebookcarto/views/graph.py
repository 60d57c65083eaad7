"""AttributionGraph: Summit's attribution graph and NeuroCartography's cluster graph."""

from __future__ import annotations

import numpy as np
import traitlets as t

from . import adapters
from .base import View
from .traits import Option, OptionError

__all__ = ["GRAPH_KINDS", "AttributionGraph", "check_kind"]

GRAPH_KINDS = tuple(adapters.GRAPHS)  # every kind of graph the view can show


def check_kind(kind: str, kinds: list[str]) -> str:
    """``kind`` if this atlas has graphs of that kind (``kinds``), else an ``OptionError`` (a
    ``ValueError``); "" only when it has none."""
    if kind in kinds or (kind == "" and not kinds):
        return kind
    raise OptionError(f"kind {kind!r} is not available: this atlas has {kinds}"
                      + ("" if kind in GRAPH_KINDS or kind == "" else
                         f" (graph kinds are {list(GRAPH_KINDS)})"))


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


class AttributionGraph(View):
    """Summit's graph view and NeuroCartography's cluster graph for the selected class.

    Layers run top (deep) to bottom (shallow); nodes show example patches, sized by count; edge
    width follows the influence weight. Hover greys out all but the node's neighbourhood and
    shows its patches (a cluster's members with theirs), animating its edges; click selects the
    neuron (or the cluster's members) and lists its top-3 inputs; ``min_count`` hides small
    nodes; the width and height sliders spread the layout; wheel zooms, drag pans, "fit" resets;
    the class picker searches the class names. ``kind`` switches between the attribution graph
    and the cluster graph; a note says which analysis makes a graph the atlas lacks.
    """

    _view = t.Unicode("graph").tag(sync=True)
    graphs = t.Dict().tag(sync=True)
    kinds = t.List(t.Unicode()).tag(sync=True)
    kind = Option(("", *GRAPH_KINDS), default_value="").tag(sync=True)  # one of kinds
    min_count = t.Float(0).tag(sync=True)
    x_scale = t.Float(1.0).tag(sync=True)
    y_scale = t.Float(1.0).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, kind: str | None = None, min_count: float = 0,
                 height: int = 520, state=None, data=None):
        found, notes = adapters.graphs(atlas)
        graphs = {kind: {str(c): _clean_graph(g) for c, g in by_class.items()}
                  for kind, by_class in found.items()}
        kinds = list(graphs)
        if kind is None:
            kind = kinds[0] if kinds else ""
        check_kind(kind, kinds)
        super().__init__(atlas, state=state, data=data, graphs=graphs, kinds=kinds, kind=kind,
                         min_count=min_count, height=height, notes=notes)

    @t.validate("kind")
    def _check_kind(self, proposal):
        return check_kind(proposal["value"], self.kinds)
