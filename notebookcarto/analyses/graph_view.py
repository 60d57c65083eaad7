"""What a class graph shows by default: a layer choice for deep networks and caps on nodes and
edges per layer, shared by the attribution graphs and the cluster graphs.

Summit's published graphs had 39 to 91 nodes over nine layers. On a 56-layer ResNet its rules
keep 128 to 490 nodes and up to 5,900 edges over 27 layers: a hairball. So by default a graph
shows at most ``max_layers`` layers (``graph_layers``: the first, the last, the output of every
stage, then evenly spaced ones), at most ``max_nodes`` nodes a layer (those with the most mass)
and at most ``max_edges`` edges into a layer (each shown node's strongest in-edge first, then
the heaviest). Nothing is thrown away: every node and edge the graph's own rules keep stays in
the data, with ``"shown": false`` where the default view leaves it out.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["VIEW_DEFAULTS", "graph_layers", "mark_shown", "stages"]

# The defaults of the caps: about Summit's published graphs on any depth.
VIEW_DEFAULTS = {"max_layers": 9, "max_nodes": 10, "max_edges": 40}


def stages(atlas, layers) -> list[list[str]]:
    """``layers`` (in order) split into runs of consecutive layers with the same channel count
    and map shape: the stages of a ResNet-like network."""
    out = []
    for name in layers:
        key = (atlas.stats.layers[name].channels, tuple(atlas.stats.shapes[name]))
        if out and out[-1][0] == key:
            out[-1][1].append(name)
        else:
            out.append((key, [name]))
    return [names for _, names in out]


def graph_layers(atlas, layers, max_layers: int | None = VIEW_DEFAULTS["max_layers"]) -> list:
    """The default layers of a class graph among ``layers`` (in order): all of them when there
    are at most ``max_layers`` (None: no limit); else the first, the last and the output of each
    stage (``stages``), then others up to ``max_layers``, each splitting the widest gap left."""
    layers = list(layers)
    if max_layers is None or len(layers) <= max_layers:
        return layers
    if max_layers < 2:
        raise ValueError(f"max_layers must be at least 2 (or None for all), got {max_layers}")
    position = {name: i for i, name in enumerate(layers)}
    ends = [position[s[-1]] for s in stages(atlas, layers)]
    must = sorted({0, len(layers) - 1, *ends})
    if len(must) > max_layers:  # more stages than room: spread over the stage outputs
        picks = np.linspace(0, len(must) - 1, max_layers).round().astype(int)
        return [layers[must[i]] for i in sorted(set(picks.tolist()))]
    chosen = list(must)
    while len(chosen) < max_layers:  # split the widest gap in the middle
        gaps = [(b - a, -a, a, b) for a, b in zip(chosen[:-1], chosen[1:]) if b - a >= 2]
        if not gaps:
            break
        _, _, a, b = max(gaps)
        chosen = sorted(chosen + [(a + b) // 2])
    return [layers[i] for i in chosen]


def mark_shown(nodes: list[dict], edges: list[dict], *, mass: str,
               max_nodes: int | None = VIEW_DEFAULTS["max_nodes"],
               max_edges: int | None = VIEW_DEFAULTS["max_edges"]) -> None:
    """Set ``"shown"`` on every node and edge (in place): per layer the ``max_nodes`` nodes
    with the largest ``node[mass]`` (ties by id); per target layer at most ``max_edges`` edges
    between shown nodes, each shown node's heaviest in-edge first, then by weight. None: no cap.
    """
    by_layer = defaultdict(list)
    for node in nodes:
        by_layer[node["layer"]].append(node)
    shown = set()
    for members in by_layer.values():
        ranked = sorted(members, key=lambda n: (-float(n[mass]), str(n["id"])))
        keep = ranked if max_nodes is None else ranked[:max_nodes]
        shown.update(n["id"] for n in keep)
    for node in nodes:
        node["shown"] = node["id"] in shown
    layer_of = {n["id"]: n["layer"] for n in nodes}
    into = defaultdict(list)
    for k, edge in enumerate(edges):
        edge["shown"] = False
        if edge["source"] in shown and edge["target"] in shown:
            into[layer_of[edge["target"]]].append(k)
    for candidates in into.values():
        order = sorted(candidates, key=lambda k: (-edges[k]["weight"], k))
        picked, served = [], set()
        for k in order:  # the heaviest in-edge of every shown node
            if edges[k]["target"] not in served:
                served.add(edges[k]["target"])
                picked.append(k)
        limit = len(order) if max_edges is None else max(max_edges, len(picked))
        taken = set(picked)
        rest = [k for k in order if k not in taken]
        for k in picked + rest[:max(0, limit - len(picked))]:
            edges[k]["shown"] = True
