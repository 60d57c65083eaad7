"""Readable class graphs on deep networks: the default layer choice (stage outputs first),
bottleneck paths through the layers left out (against brute force), and the default view's caps
on nodes and edges (nothing dropped from the data)."""

import itertools

import numpy as np
import pytest
import torch

from notebookcarto import ActivationStats, Atlas
from notebookcarto.analyses import Clusters, Influence, cluster_table
from notebookcarto.analyses.attribution_graph import attribution_graph, attribution_graphs
from notebookcarto.analyses.cluster_graph import cluster_graph
from notebookcarto.analyses.graph_view import graph_layers, mark_shown, stages

K = 3


def deep_atlas(widths=(16,) * 9 + (32,) * 9 + (64,) * 9, seed=0, influence=True):
    """A ResNet-56-like atlas without a model: 27 layers in three stages (16, 32, 64 channels
    on 32, 16, 8 px maps), random A and random influence counts between consecutive layers."""
    rng = np.random.default_rng(seed)
    stats = ActivationStats(num_classes=K, top_n=5)
    stats.add_classes(K, with_accuracy=False)
    stats.config["n_images"] = 40
    names = []
    for k, c in enumerate(widths):
        stage = {16: 1, 32: 2, 64: 3}[c]
        name = f"layer{stage}.{k % 9}"
        names.append(name)
        side = {16: 32, 32: 16, 64: 8}[c]
        stats.add_layer(name, c, (side, side))
        stats.layers[name].aggregation.counts[:] = torch.as_tensor(
            rng.integers(0, 30, (K, c)) * (rng.random((K, c)) < 0.6))
        stats.layers[name].top.index = torch.as_tensor(
            np.stack([rng.choice(40, 5, replace=False) for _ in range(c)]))
    atlas = Atlas(stats, class_names=[f"c{i}" for i in range(K)])
    if influence:
        counts = {}
        for e, l in zip(names[:-1], names[1:]):
            ce, cl = stats.layers[e].channels, stats.layers[l].channels
            counts[(e, l)] = (rng.integers(1, 40, (K, cl, ce))
                              * (rng.random((K, cl, ce)) < 0.3)).astype(np.int64)
        atlas.attach(Influence(counts, "conv", 5))
    return atlas


def test_graph_layers_for_deep_nets():
    atlas = deep_atlas(influence=False)
    layers = atlas.layers
    assert [s[-1] for s in stages(atlas, layers)] == ["layer1.8", "layer2.8", "layer3.8"]
    chosen = graph_layers(atlas, layers)
    assert len(chosen) == 9 and chosen == [n for n in layers if n in chosen]  # in order
    assert {"layer1.0", "layer1.8", "layer2.8", "layer3.8"} <= set(chosen)
    gaps = np.diff([layers.index(n) for n in chosen])
    assert gaps.max() <= 5  # spread over the depth
    assert graph_layers(atlas, layers, None) == layers
    assert graph_layers(atlas, layers[:9]) == layers[:9]  # nine or fewer: all
    assert graph_layers(atlas, layers, 3) == ["layer1.0", "layer2.8", "layer3.8"]


def test_mark_shown_caps_and_keeps_the_strongest_in_edges():
    rng = np.random.default_rng(1)
    nodes = [{"id": f"{layer}:{c}", "layer": layer, "mass": float(rng.random())}
             for layer in ("a", "b") for c in range(15)]
    edges = [{"source": f"a:{i}", "target": f"b:{j}", "weight": float(rng.integers(1, 99))}
             for i in range(15) for j in range(15) if rng.random() < 0.5]
    mark_shown(nodes, edges, mass="mass", max_nodes=6, max_edges=8)
    for layer in ("a", "b"):
        here = [n for n in nodes if n["layer"] == layer]
        top = sorted(here, key=lambda n: -n["mass"])[:6]
        assert {n["id"] for n in here if n["shown"]} == {n["id"] for n in top}
    shown = {n["id"] for n in nodes if n["shown"]}
    picked = [e for e in edges if e["shown"]]
    assert all(e["source"] in shown and e["target"] in shown for e in picked)
    assert len(picked) == 8
    for target in {e["target"] for e in edges if e["source"] in shown and e["target"] in shown}:
        best = max(e["weight"] for e in edges if e["target"] == target and e["source"] in shown)
        assert any(e["target"] == target and e["weight"] == best for e in picked)
    mark_shown(nodes, edges, mass="mass", max_nodes=None, max_edges=None)
    assert all(n["shown"] for n in nodes) and all(e["shown"] for e in edges)


def test_default_attribution_graphs_of_a_deep_net_are_readable():
    atlas = deep_atlas()
    graphs = attribution_graphs(atlas, progress=False)
    assert graphs.params["max_layers"] == 9
    for graph in graphs.graphs.values():
        assert len(graph["layers"]) == 9
        shown = [n for n in graph["nodes"] if n["shown"]]
        edges = [e for e in graph["edges"] if e["shown"]]
        per_layer = np.bincount([graph["layers"].index(n["layer"]) for n in shown])
        assert per_layer.max() <= 10 and len(shown) <= 90 and len(edges) <= 8 * 40
        ids = {n["id"] for n in shown}
        assert all(e["source"] in ids and e["target"] in ids for e in edges)
        assert len(graph["nodes"]) >= len(shown)  # the others are kept, hidden
    everything = attribution_graph(atlas, 0, max_layers=None, max_nodes=None, max_edges=None)
    assert len(everything.data["layers"]) == 27 and everything.nodes["shown"].all()


def test_bottleneck_paths_compose_hop_by_hop():
    """A -> B -> C -> D with only A and D shown: the edge i -> j weighs max over (b, c) of
    min(I[j][c], I[c][b], I[b][i]); per channel j the top E, E the mean in-degree of C -> D."""
    rng = np.random.default_rng(2)
    widths = {"A": 5, "B": 4, "C": 3, "D": 4}
    stats = ActivationStats(num_classes=K)
    stats.add_classes(K, with_accuracy=False)
    for name, c in widths.items():
        stats.add_layer(name, c, (1, 1))
        stats.layers[name].aggregation.counts[:] = torch.as_tensor(rng.integers(1, 9, (K, c)))
    atlas = Atlas(stats, class_names=[f"c{i}" for i in range(K)])
    chain = list(widths)
    counts = {(e, l): (rng.integers(1, 50, (K, widths[l], widths[e]))
                       * (rng.random((K, widths[l], widths[e])) < 0.7)).astype(np.int64)
              for e, l in zip(chain[:-1], chain[1:])}
    atlas.attach(Influence(counts, "conv", 5))
    for y in range(K):
        graph = attribution_graph(atlas, y, layers=["A", "D"], mass=1.0, max_nodes=None,
                                  max_edges=None)
        got = {(s, t): w for s, t, w in
               graph.edges[["source", "target", "weight"]].itertuples(index=False)}
        last = counts[("C", "D")][y]
        degree = (last > 0).sum(1)
        top_e = int(round(degree[degree > 0].mean()))
        want = {}
        for j in range(4):
            w = [max(min(counts[("C", "D")][y, j, c], counts[("B", "C")][y, c, b],
                         counts[("A", "B")][y, b, i])
                     for b, c in itertools.product(range(4), range(3))) for i in range(5)]
            cut = sorted(w, reverse=True)[top_e - 1]
            for i in range(5):
                if w[i] >= cut and w[i] > 0:
                    want[(f"A:{i}", f"D:{j}")] = float(w[i])
        kept = set(graph.nodes.index)
        assert got == {k: v for k, v in want.items() if k[0] in kept and k[1] in kept}


def test_cluster_graphs_get_the_same_caps():
    atlas = deep_atlas(influence=False)
    n = len(atlas.neuron_ids)
    labels = np.full(n, -1, np.int64)
    labels[: n // 2: 2] = np.arange(len(labels[: n // 2: 2])) // 3  # clusters of three
    atlas.attach(Clusters(labels, labels.copy(), atlas.neuron_ids, cluster_table(atlas, labels)))
    nodes, edges, graph = cluster_graph(atlas, 0, top_fraction=0.5, max_nodes=4, max_edges=6)
    assert len(graph["layers"]) <= 9
    shown = nodes[nodes["shown"]]
    assert shown.groupby("layer").size().max() <= 4
    assert edges[edges["shown"]].groupby(edges["target"].map(nodes["layer"])).size().max() <= 6
    assert len(nodes) > len(shown)  # the rest kept, hidden
    assert nodes["x"].between(0, 1).all() and nodes["x_all"].between(0, 1).all()
    with pytest.raises(KeyError, match="not in the atlas"):
        cluster_graph(atlas, 0, layers=["layer1.0", "nope"])
