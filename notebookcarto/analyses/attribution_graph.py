"""Summit's per-class attribution graphs (Hohman et al., IEEE VIS 2019), built with igraph.

For class y: a graph over all channels of the chosen layers, with edges from the influence
counts I (``count_influence``), personalised PageRank with the personalisation taken from the
activation aggregation A, one PageRank-mass threshold over all layers (raised until every layer
but the first keeps a node with a kept in-edge), and a layered Sugiyama layout with the deep layers
on top. The graph JSON is the one in docs/atlas-sections.md; ``attribution_graphs`` gives every
class's graph as an ``AttributionGraphs`` result.

On deep networks Summit's rules make hairballs (hundreds of nodes, thousands of edges), so by
default (``analyses.graph_view``) a graph spans at most 9 layers (stage outputs first; the
layers left out are bridged by bottleneck paths) and its default view shows at most 10 nodes a
layer and 40 edges into a layer; every node and edge the threshold keeps stays in the data, with
``"shown": false`` where the default view leaves it out.

The bottleneck step (max-min composition, then top-E per channel) reads only the non-zero
counts: each image adds at most ``top_inputs`` per row, so on GoogLeNet's 832-wide blocks (a few
images a class) it is about ten thousand pairs where the dense composition took 160 million.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import igraph as ig
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .graph_view import VIEW_DEFAULTS, graph_layers, mark_shown
from .influence import Influence
from .result import ClassGraphs

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["DIRECTIONS", "AttributionGraph", "AttributionGraphs", "GraphOptions",
           "attribution_graph", "attribution_graphs", "graph_frames"]

DIRECTIONS = ("backward", "forward")


class AttributionGraphs(ClassGraphs):
    """Summit's attribution graphs of several classes (``attribution_graphs``): ``graphs``
    {class name: graph JSON (docs/atlas-sections.md)} and the ``params`` they were made with."""

    section: ClassVar[str] = "attribution_graphs"

    def frames(self, cls: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(nodes, edges) DataFrames of one class's graph (by name)."""
        if cls not in self.graphs:
            raise KeyError(f"no attribution graph of class {cls!r}: there are graphs of "
                           f"{list(self.graphs)[:10]}")
        return graph_frames(self.graphs[cls])


class AttributionGraph(NamedTuple):
    """One class's graph: ``nodes`` and ``edges`` DataFrames, the JSON-ready ``data`` dict, and
    ``pagerank`` (Series over every channel of the graph layers, before the threshold)."""

    nodes: pd.DataFrame
    edges: pd.DataFrame
    data: dict
    pagerank: pd.Series


class _Plan:
    """What does not depend on the class: graph layers, their levels, and how they connect."""

    def __init__(self, atlas, layers=None, max_layers=VIEW_DEFAULTS["max_layers"]):
        if atlas.stats.num_classes is None:
            raise ValueError("this atlas has no class-wise statistics (A): build it from a "
                             "loader that yields (images, labels)")
        self.counts = {pair: np.asarray(c) for pair, c in atlas.get(Influence).counts.items()}
        pair_layers = list(dict.fromkeys(n for pair in self.counts for n in pair))
        if layers is None:
            layers = graph_layers(atlas, [n for n in atlas.layers if n in pair_layers],
                                  max_layers)
        layers = list(dict.fromkeys(layers))
        missing = [n for n in layers if n not in atlas.layers]
        if missing:
            raise KeyError(f"graph layer(s) {missing} are not in the atlas (it has "
                           f"{atlas.layers}): a graph layer needs the activation aggregation A")
        if not layers:
            raise ValueError("no graph layers: the influence pairs name none of the atlas layers")
        chosen = set(layers)
        self.direct = [(e, l) for e, l in self.counts if e in chosen and l in chosen]
        self.two_hop = _bottleneck_paths(self.counts, chosen)  # (e, [b, ...], l)
        links = {(e, l) for e, l in self.direct} | {(e, l) for e, _, l in self.two_hop}
        linked = {n for link in links for n in link}
        lonely = [n for n in layers if n not in linked]
        if len(layers) > 1 and lonely:
            raise ValueError(f"graph layer(s) {lonely} are linked to no other graph layer by the "
                             f"influence pairs {[list(p) for p in self.counts]}: run "
                             "count_influence with pairs that join them, or leave them out of "
                             "layers=")
        level = {n: 0 for n in layers}
        for _ in layers:  # longest path from the shallowest layers
            for e, l in links:
                level[l] = max(level[l], level[e] + 1)
        self.level = level
        order = {n: i for i, n in enumerate(atlas.layers)}
        self.layers = sorted(layers, key=lambda n: (level[n], order[n]))
        self.channels = {n: atlas.stats.layers[n].channels for n in self.layers}
        for (e, l), counts in self.counts.items():
            for name, c in ((l, counts.shape[1]), (e, counts.shape[2])):
                if name in self.channels and self.channels[name] != c:
                    raise ValueError(f"the influence counts of ({e!r}, {l!r}) have {c} channels "
                                     f"for {name!r}, the atlas {self.channels[name]}: run "
                                     "count_influence again for this atlas")
        self.offset = dict(zip(self.layers, np.cumsum([0] + [self.channels[n]
                                                             for n in self.layers])[:-1]))
        self.ids = [f"{n}:{c}" for n in self.layers for c in range(self.channels[n])]
        self.node_layer = np.concatenate([np.full(self.channels[n], i)
                                          for i, n in enumerate(self.layers)])
        self.aggregation = {n: atlas.stats.layers[n].aggregation.counts.cpu().numpy()
                            for n in self.layers}


def _bottleneck_paths(counts: dict, chosen: set) -> list[tuple[str, list, str]]:
    """Every path e -> b1 -> ... -> bk -> l along the influence pairs from a chosen layer e to a
    chosen layer l through layers that are not chosen (k >= 1)."""
    following = {}
    for e, l in counts:
        following.setdefault(e, []).append(l)
    paths = []

    def walk(start, through, at):
        for nxt in following.get(at, []):
            if nxt in chosen:
                paths.append((start, list(through), nxt))
            elif nxt not in through and nxt != start:
                walk(start, through + [nxt], nxt)

    for e in [e for e in following if e in chosen]:
        for b in following[e]:
            if b not in chosen:
                walk(e, [b], b)
    return paths


@dataclass(frozen=True)
class GraphOptions:
    """The parameters of an attribution graph (Summit's defaults, and the default view's
    caps); see ``attribution_graph``."""

    damping: float = 0.85
    mass: float = 0.075
    mass_step: float = 0.005
    listed_inputs: int = 3
    direction: str = "backward"
    two_hop_edges: int | None = None
    max_layers: int | None = VIEW_DEFAULTS["max_layers"]
    max_nodes: int | None = VIEW_DEFAULTS["max_nodes"]
    max_edges: int | None = VIEW_DEFAULTS["max_edges"]

    def __post_init__(self):
        for name in ("max_layers", "max_nodes", "max_edges"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1 or None (no cap), got "
                                 f"{value!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 0 < self.damping < 1:
            raise ValueError(f"damping must be in (0, 1), got {self.damping}")
        if not (0 < self.mass <= 1 and self.mass_step > 0):
            raise ValueError(f"need 0 < mass <= 1 and mass_step > 0, got {self.mass} and "
                             f"{self.mass_step}")


def attribution_graph(atlas: "Atlas", cls, *, layers=None, **options) -> AttributionGraph:
    """Summit's attribution graph of class ``cls`` (index or name).

    Needs an ``Influence`` result attached (``count_influence``) first. ``options`` are those of
    ``GraphOptions`` (Summit's defaults, and the default view's caps). ``layers``: the graph's
    layers (default: the atlas layers in the influence pairs, at most ``max_layers`` of them,
    chosen by ``graph_view.graph_layers``: first, last and stage outputs first); pair layers left
    out act as bottlenecks: for E -> B -> L with B not shown, the edge i -> j gets weight max
    over b of min(I[j][b], I[b][i]) (Summit's rule; over longer paths E -> B1 -> ... -> L the
    same max-min composition hop by hop), keeping per channel j only its top ``two_hop_edges``
    such edges (default: the mean number of non-zero direct in-edges per channel of L, or of the
    last hop's when L has no direct pair). Where a direct and a bottleneck edge join the same
    channels, the larger weight counts.

    PageRank: personalised (``damping``), with edge weights I[y][j][i] and the personalisation
    v(l, c) = A^l[y, c] / max_c' A^l[y, c']. ``direction="backward"`` (default) walks from deep
    channels to the inputs that drive them, so mass flows from the class's strongest late
    channels to their sources (attribution); ``"forward"`` walks along the influence.

    Threshold: sort PageRank values descending, keep the nodes down to the shortest prefix that
    holds ``mass`` of the total (ties kept, zero-PageRank nodes never), and the edges between kept
    nodes; while a layer other than the first keeps no node with a kept in-edge, raise ``mass``
    by ``mass_step`` (Summit: 0.075 and 0.005). Nodes carry their count A^l[y, c], PageRank,
    layout position (x, y in [0, 1]; deep layers on top, y = 1) and their ``listed_inputs``
    largest raw inputs by I (``top_inputs``, which may lie outside the graph). A class without
    counts in A (no images) gives an empty graph.

    Default view (``graph_view.mark_shown``): per layer the ``max_nodes`` kept nodes with the
    most PageRank, per target layer at most ``max_edges`` edges between them (each shown node's
    heaviest in-edge first), marked ``"shown": true``; every kept node and edge stays in the
    data. ``x``, ``y`` lay out the default view (hidden nodes where the layout of all kept nodes
    puts them); ``x_all`` is that layout of all kept nodes. None: no cap.
    """
    chosen = GraphOptions(**options)
    plan = _Plan(atlas, layers, chosen.max_layers)
    data, pagerank = _graph(plan, atlas, atlas.class_index(cls), chosen)
    nodes, edges = graph_frames(data)
    return AttributionGraph(nodes, edges, data,
                            pd.Series(pagerank, index=pd.Index(plan.ids, name="neuron"),
                                      name="pagerank"))


def _graph(plan: _Plan, atlas, y: int, options: GraphOptions) -> tuple[dict, np.ndarray]:
    """The graph JSON of class ``y`` and the PageRank of every channel of the graph layers."""
    reset = np.concatenate([_personalisation(plan.aggregation[n][y]) for n in plan.layers])
    src, dst, weight = _edges(plan, y, options.two_hop_edges)
    name = atlas.class_names[y]
    mass = options.mass
    if reset.sum() <= 0:  # the class has no images in the aggregation
        pagerank = np.zeros(len(plan.ids))
        return _result(plan, y, name, np.zeros(len(plan.ids), bool), pagerank, src, dst,
                       weight, mass, options)
    backward = options.direction == "backward"
    graph = ig.Graph(n=len(plan.ids), directed=True,
                     edges=list(zip(dst, src) if backward else zip(src, dst)))
    pagerank = np.asarray(graph.personalized_pagerank(
        reset=(reset / reset.sum()).tolist(), damping=options.damping, directed=True,
        weights=weight.tolist() if len(weight) else None))
    keep, mass = _threshold(plan, pagerank, src, dst, mass, options.mass_step)
    return _result(plan, y, name, keep, pagerank, src, dst, weight, mass, options)


def _personalisation(row: np.ndarray) -> np.ndarray:
    top = row.max() if len(row) else 0
    return row / top if top > 0 else np.zeros(len(row))


def _edges(plan: _Plan, y: int, two_hop_edges):
    """(src, dst, weight) node-index arrays of the class's edges, src in the earlier layer."""
    weights = {}  # (earlier layer, later layer) -> (C_later, C_earlier) counts
    for e, l in plan.direct:
        weights[(e, l)] = plan.counts[(e, l)][y]
    by_later = {}
    for e, through, l in plan.two_hop:
        hops = [e, *through, l]
        w = plan.counts[(hops[0], hops[1])][y]  # (C_b1, C_e)
        for a, b in zip(hops[1:-1], hops[2:]):
            w = _max_min(plan.counts[(a, b)][y], w)  # (C_b, C_e)
        by_later.setdefault(l, {})
        prev = by_later[l].get(e)
        by_later[l][e] = w if prev is None else np.maximum(prev, w)
    for l, sources in by_later.items():
        limit = two_hop_edges if two_hop_edges is not None else _mean_in_edges(plan, y, l)
        stacked = np.concatenate(list(sources.values()), axis=1)
        if limit < stacked.shape[1]:
            stacked = _top_per_row(stacked, limit)
        start = 0
        for e, w in sources.items():
            part = stacked[:, start:start + w.shape[1]]
            start += w.shape[1]
            prev = weights.get((e, l))
            weights[(e, l)] = part if prev is None else np.maximum(prev, part)
    src, dst, weight = [], [], []
    for (e, l), w in weights.items():
        j, i = np.nonzero(w > 0)
        src.append(plan.offset[e] + i)
        dst.append(plan.offset[l] + j)
        weight.append(w[j, i])
    if not src:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(weight).astype(np.float64)


def _top_per_row(w: np.ndarray, limit: int) -> np.ndarray:
    """Non-negative ``w`` with the entries below each row's ``limit``-th largest set to 0 (ties
    kept); only rows with more than ``limit`` positive entries change."""
    if limit <= 0:
        return np.zeros_like(w)
    rows = np.flatnonzero((w > 0).sum(1) > limit)
    if not len(rows):
        return w
    k = w.shape[1] - limit
    part = w[rows]
    cut = np.partition(part, k, axis=1)[:, k:k + 1]
    out = w.copy()
    out[rows] = np.where(part >= cut, part, 0)
    return out


def _max_min(second: np.ndarray, first: np.ndarray, budget: int = 1 << 20) -> np.ndarray:
    """(C_l, C_e): max over b of min(second[j, b], first[b, i]) for non-negative weights.

    Only positive entries can give a positive value, so each positive second[j, b] is paired
    with the positive entries of row b of ``first`` (about ``budget`` pairs at a time) and the
    pair minima are max-reduced into their (j, i); the rest stays 0.
    """
    out = np.zeros((second.shape[0], first.shape[1]), np.result_type(second, first))
    rows, cols = np.nonzero(first > 0)  # row-major: the entries of row b are contiguous
    starts = np.searchsorted(rows, np.arange(first.shape[0] + 1))
    j, b = np.nonzero(second > 0)
    n = starts[b + 1] - starts[b]  # pairs of each entry of second
    j, b, n = j[n > 0], b[n > 0], n[n > 0]
    if not len(n):
        return out
    total = np.cumsum(n)
    bounds = np.unique(np.searchsorted(total, np.arange(budget, total[-1], budget)))
    bounds = bounds[bounds > 0]
    for lo, hi in zip([0, *bounds], [*bounds, len(n)]):
        _max_min_pairs(out, second, first, j[lo:hi], b[lo:hi], n[lo:hi], starts, cols)
    return out


def _max_min_pairs(out, second, first, j, b, n, starts, cols) -> None:
    """Max-reduce into ``out`` min(second[j, b], first[b, i]) over the positive first[b, i] of
    the given entries (j, b) of ``second``, entry k having ``n[k]`` of them."""
    entry = np.repeat(np.arange(len(n)), n)
    within = np.arange(len(entry)) - np.repeat(np.cumsum(n) - n, n)
    i = cols[starts[b][entry] + within]
    value = np.minimum(second[j, b][entry], first[b[entry], i])
    np.maximum.at(out, (j[entry], i), value)


def _mean_in_edges(plan: _Plan, y: int, later: str) -> int:
    """Mean number of non-zero direct in-edges per channel of ``later`` (over channels with
    any); with no direct pair into it, the same over the bottleneck hops into it."""
    direct = [plan.counts[(e, l)][y] for e, l in plan.direct if l == later]
    if not direct:
        direct = [plan.counts[(through[-1], l)][y] for _, through, l in plan.two_hop
                  if l == later]
    per_channel = sum((d > 0).sum(1) for d in direct)
    with_any = per_channel[per_channel > 0]
    return int(round(with_any.mean())) if len(with_any) else 0


def _threshold(plan: _Plan, pagerank, src, dst, mass, step):
    """Summit's single mass threshold with its adaptive increase: (kept mask, final mass)."""
    order = np.argsort(-pagerank, kind="stable")
    cumulative = np.cumsum(pagerank[order])
    total = cumulative[-1]
    need = {i for i, n in enumerate(plan.layers) if plan.level[n] > 0}
    n_steps = 0
    while True:
        m = min(1.0, round(mass + n_steps * step, 10))
        n_keep = min(len(order), int(np.searchsorted(cumulative, m * total * (1 - 1e-12))) + 1)
        keep = (pagerank >= pagerank[order[n_keep - 1]]) & (pagerank > 0)
        kept_edges = keep[src] & keep[dst]
        served = set(plan.node_layer[dst[kept_edges]].tolist())
        if need <= served or m >= 1.0:
            return keep, m
        n_steps += 1


def _result(plan: _Plan, y, name, keep, pagerank, src, dst, weight, mass,
            options: GraphOptions):
    kept = np.nonzero(keep)[0]
    kept_edges = np.nonzero(keep[src] & keep[dst])[0] if len(src) else np.zeros(0, int)
    nodes = []
    for node in kept:
        layer = plan.layers[plan.node_layer[node]]
        channel = int(node - plan.offset[layer])
        neuron = plan.ids[node]
        nodes.append({"id": neuron, "layer": layer, "channel": channel,
                      "count": int(plan.aggregation[layer][y][channel]),
                      "pagerank": float(pagerank[node]), "members": [neuron],
                      "top_inputs": _top_inputs(plan, y, layer, channel,
                                                options.listed_inputs)})
    edges = [{"source": plan.ids[src[e]], "target": plan.ids[dst[e]],
              "weight": float(weight[e])} for e in kept_edges]
    mark_shown(nodes, edges, mass="pagerank", max_nodes=options.max_nodes,
               max_edges=options.max_edges)
    x_all, yy = _layout(plan, kept, src[kept_edges], dst[kept_edges])
    shown = np.array([n["shown"] for n in nodes], bool)
    shown_edges = np.array([e["shown"] for e in edges], bool)
    x = x_all.copy()
    if shown.any() and not shown.all():
        x[shown], _ = _layout(plan, kept[shown], src[kept_edges][shown_edges],
                              dst[kept_edges][shown_edges])
    for node, px, pa, py in zip(nodes, x, x_all, yy):
        node.update(x=float(px), y=float(py), x_all=float(pa))
    data = {"class": name, "layers": list(plan.layers), "nodes": nodes, "edges": edges,
            "mass": float(mass)}
    return data, pagerank


def _top_inputs(plan: _Plan, y, layer, channel, n) -> list[str]:
    """The ``n`` inputs with the largest raw counts I[y][channel][i] over every influence pair
    into ``layer`` (bottleneck and non-graph layers included)."""
    found = []
    for (e, l), counts in plan.counts.items():
        if l == layer:
            row = counts[y][channel]
            found += [(int(v), f"{e}:{i}") for i, v in enumerate(row) if v > 0]
    found.sort(key=lambda t: -t[0])
    return [neuron for _, neuron in found[:n]]


def _layout(plan: _Plan, kept, src, dst):
    """igraph's layered (Sugiyama) layout of the kept subgraph: x in [0, 1] from the layout,
    y = level / deepest level (deep layers on top, y = 1)."""
    if len(kept) == 0:
        return np.zeros(0), np.zeros(0)
    where = {node: i for i, node in enumerate(kept)}
    levels = [plan.level[plan.layers[plan.node_layer[node]]] for node in kept]
    base = min(levels)
    sub = ig.Graph(n=len(kept), edges=[(where[s], where[d]) for s, d in zip(src, dst)],
                   directed=True)
    coords = np.asarray(sub.layout_sugiyama(layers=[lv - base for lv in levels]).coords)
    x = coords[:len(kept), 0]
    span = x.max() - x.min()
    x = (x - x.min()) / span if span > 0 else np.full(len(kept), 0.5)
    top = max(plan.level.values())
    y = np.asarray(levels, float) / top if top > 0 else np.full(len(kept), 0.5)
    return x, y


def graph_frames(data: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nodes (index: neuron id) and edges DataFrames of a graph JSON dict (``shown``: in the
    default view; graphs saved before it existed show everything)."""
    node_columns = ["layer", "channel", "count", "pagerank", "x", "y", "members", "top_inputs",
                    "shown", "x_all"]
    nodes = pd.DataFrame(data["nodes"], columns=["id"] + node_columns).set_index("id")
    nodes.index.name = "neuron"
    edges = pd.DataFrame(data["edges"], columns=["source", "target", "weight", "shown"])
    for frame in (nodes, edges):
        frame["shown"] = frame["shown"].fillna(True).astype(bool)
    nodes["x_all"] = nodes["x_all"].fillna(nodes["x"])
    return nodes, edges


def attribution_graphs(atlas: "Atlas", classes=None, *, layers=None, progress: bool = True,
                       **options) -> AttributionGraphs:
    """The attribution graphs of several classes (default: all), as ``AttributionGraphs``;
    ``layers`` and ``options`` (``GraphOptions``) as in ``attribution_graph``."""
    chosen = GraphOptions(**options)
    plan = _Plan(atlas, layers, chosen.max_layers)
    classes = range(len(atlas.class_names)) if classes is None else classes
    graphs = {}
    for cls in tqdm(list(classes), desc="attribution graphs", disable=not progress):
        data, _ = _graph(plan, atlas, atlas.class_index(cls), chosen)
        graphs[data["class"]] = data
    return AttributionGraphs(graphs, dict(asdict(chosen), layers=list(plan.layers)))
