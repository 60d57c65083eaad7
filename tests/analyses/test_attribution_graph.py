"""Attribution graphs: the planted circuit's ground truth, PageRank and the mass threshold
against plain reimplementations, two-hop bottleneck edges, storage, the real CIFAR ResNet-20
and the errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.analyses import Influence, count_influence
from notebookcarto.analyses.attribution_graph import (AttributionGraphs, attribution_graph,
                                                      attribution_graphs, graph_frames)
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.testing.circuit import circuit_model

from helpers import atlas_from_aggregation

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_atlas(aggregation: dict, influence: dict) -> Atlas:
    """An atlas with the given A per layer ((classes, channels)) and influence counts per pair
    ((classes, C_later, C_earlier)), without a model."""
    atlas = atlas_from_aggregation(aggregation)
    atlas.attach(Influence({pair: np.asarray(v, np.int64) for pair, v in influence.items()},
                           "conv", 5))
    return atlas


# -- plain reimplementations ----------------------------------------------------------------------

def power_iteration_pagerank(n, edges, reset, damping=0.85, steps=3000):
    """Personalised PageRank by power iteration; edges (from, to, weight) in walk direction; a
    node without out-edges sends its mass by the reset distribution."""
    out = np.zeros(n)
    for a, _, w in edges:
        out[a] += w
    r = np.asarray(reset, float) / np.sum(reset)
    p = r.copy()
    for _ in range(steps):
        new = (1 - damping) * r + damping * r * p[out == 0].sum()
        for a, b, w in edges:
            new[b] += damping * p[a] * w / out[a]
        p = new
    return p


def mass_threshold(pagerank, layer_of, first_layers, edges, mass=0.075, step=0.005):
    """Summit's rule, written out: keep the top nodes holding ``mass``; raise it until every
    layer but the first has a kept node with a kept in-edge."""
    order = sorted(range(len(pagerank)), key=lambda i: -pagerank[i])
    m = mass
    while True:
        total, cut = 0.0, None
        for i in order:
            total += pagerank[i]
            if total >= m * sum(pagerank) * (1 - 1e-12):
                cut = pagerank[i]
                break
        kept = {i for i in range(len(pagerank)) if pagerank[i] >= cut and pagerank[i] > 0}
        served = {layer_of[b] for a, b, _ in edges if a in kept and b in kept}
        layers = set(layer_of) - set(first_layers)
        if layers <= served or m >= 1:
            return kept
        m = min(1.0, round(m + step, 10))


# -- the planted circuit --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def circuit():
    data = ConceptPlayground(n=400, size=32, seed=5)
    model = circuit_model(data)
    x, y = data.tensors()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100)
    # tau = 0.9: with 9 and 8 channels, the default tau (0.03) would count only each image's
    # single strongest channel, and red and purple tie exactly (both clamp to 1)
    atlas = Atlas.build(model, loader, [model.earlier, model.later], class_names=data.classes,
                        tau=0.9, top_n=10, progress=False)
    return data, model, loader, atlas


def test_circuit_detectors_are_exact(circuit):
    data, model, _, _ = circuit
    x, _ = data.tensors()
    with torch.no_grad():
        colour = model.colour(torch.cat([model.pixels(x[:100]), x[:100] - 0.5], 1))
        conj = model.conjunction(colour).flatten(1)
    table = data.concept_table()[:100]
    for i in range(100):
        masks = data.masks(i)
        for ch, name in model.planted.items():
            want = torch.from_numpy(masks[data.concept_names.index(name)]).float()
            assert torch.equal(colour[i, ch], want), (i, name)
    red, purple = (table[:, data.concept_names.index(c)] for c in ("red", "purple"))
    np.testing.assert_array_equal(conj[:, 0].numpy(), (red & purple).astype(np.float32))


@pytest.mark.parametrize("estimator", ["conv", "gradient"])
def test_circuit_graph_ground_truth(circuit, estimator):
    data, model, loader, atlas = circuit
    atlas.attach(count_influence(atlas, model, loader, estimator=estimator, progress=False))
    graph = attribution_graph(atlas, model.and_class)
    e, l = model.earlier, model.later
    red, purple = (f"{e}:{c}" for c in model.and_inputs)
    and_unit = f"{l}:{model.and_channel}"
    edges = set(zip(graph.edges["source"], graph.edges["target"]))
    assert {(red, and_unit), (purple, and_unit)} <= edges
    pr = graph.pagerank
    for layer, planted in ((e, {red, purple}), (l, {and_unit})):
        others = [n for n in pr.index if n.startswith(layer + ":") and n not in planted]
        assert pr[list(planted)].min() > pr[others].max(), (layer, pr.round(4).to_dict())
    distractors = {f"{e}:{model.distractor}", f"{l}:{model.distractor_unit}"}
    assert not distractors & set(graph.nodes.index)
    assert not distractors & {n for edge in edges for n in edge}
    # the distractor fires on some images of the class, so A counts it: only the influence and
    # PageRank keep it out
    assert atlas.aggregation(e).iloc[model.and_class][f"{e}:{model.distractor}"] > 0
    assert graph.nodes.loc[and_unit, "top_inputs"] == [red, purple]
    assert graph.nodes.loc[and_unit, "y"] == 1.0 and graph.nodes.loc[red, "y"] == 0.0
    assert graph.nodes["x"].between(0, 1).all()


def test_all_graphs_saved_with_the_atlas(circuit, tmp_path):
    data, model, loader, atlas = circuit
    atlas.attach(count_influence(atlas, model, loader, progress=False))
    graphs = atlas.attach(attribution_graphs(atlas, progress=False)).graphs
    assert list(graphs) == data.classes
    atlas.save(tmp_path / "atlas")
    loaded = Atlas.load(tmp_path / "atlas")
    stored = loaded.get(AttributionGraphs).graphs
    assert stored == json.loads(json.dumps(graphs))
    first = stored[data.classes[model.and_class]]
    assert set(first) >= {"class", "layers", "nodes", "edges"}
    assert set(first["nodes"][0]) >= {"id", "layer", "count", "pagerank", "x", "y", "members",
                                      "top_inputs", "shown", "x_all"}
    assert set(first["edges"][0]) == {"source", "target", "weight", "shown"}
    nodes, edges = graph_frames(first)
    assert loaded.get(AttributionGraphs).frames(first["class"])[0].equals(nodes)
    again = attribution_graph(loaded, model.and_class)
    assert nodes.equals(again.nodes) and edges.equals(again.edges)


# -- PageRank, threshold and two-hop edges against plain reimplementations ------------------------

@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_pagerank_and_threshold_match_plain_implementations(direction):
    rng = np.random.default_rng(0)
    k, sizes = 3, {"a": 12, "b": 10, "c": 8}
    agg = {n: rng.integers(0, 20, (k, c)) * (rng.random((k, c)) < 0.5) for n, c in sizes.items()}
    infl = {("a", "b"): rng.integers(0, 30, (k, 10, 12)) * (rng.random((k, 10, 12)) < 0.2),
            ("b", "c"): rng.integers(0, 30, (k, 8, 10)) * (rng.random((k, 8, 10)) < 0.2)}
    atlas = synthetic_atlas(agg, infl)
    offset = {"a": 0, "b": 12, "c": 22}
    for y in range(k):
        graph = attribution_graph(atlas, y, direction=direction)
        edges = []  # (earlier node, later node, weight)
        for (e, l), counts in infl.items():
            for j, i in zip(*np.nonzero(counts[y])):
                edges.append((offset[e] + i, offset[l] + j, float(counts[y][j, i])))
        walk = [(b, a, w) for a, b, w in edges] if direction == "backward" else edges
        reset = np.concatenate([agg[n][y] / max(agg[n][y].max(), 1) for n in sizes])
        want = power_iteration_pagerank(30, walk, reset)
        np.testing.assert_allclose(graph.pagerank.to_numpy(), want, atol=1e-6)
        layer_of = ["a"] * 12 + ["b"] * 10 + ["c"] * 8
        kept = mass_threshold(graph.pagerank.to_numpy(), layer_of, ["a"], edges)
        ids = graph.pagerank.index
        assert set(graph.nodes.index) == {ids[i] for i in kept}
        want_edges = {(ids[a], ids[b]) for a, b, _ in edges if a in kept and b in kept}
        assert set(zip(graph.edges["source"], graph.edges["target"])) == want_edges
        assert graph.data["layers"] == ["a", "b", "c"]


def test_two_hop_bottleneck_edges():
    """E -> B -> L with B not in the atlas (an inception bottleneck): two-hop weight max_b
    min(I[j][b], I[b][i]), top-E per channel with E the mean number of direct in-edges."""
    rng = np.random.default_rng(1)
    k = 2
    i_eb = rng.integers(1, 50, (k, 4, 6)) * (rng.random((k, 4, 6)) < 0.7)
    i_bl = rng.integers(1, 50, (k, 3, 4)) * (rng.random((k, 3, 4)) < 0.8)
    i_el = np.zeros((k, 3, 6), np.int64)
    i_el[:, 0, :2] = [[5, 7], [3, 9]]  # only channel 0 of L has direct in-edges: E = 2
    agg = {"E": rng.integers(1, 9, (k, 6)), "L": rng.integers(1, 9, (k, 3))}
    atlas = synthetic_atlas(agg, {("E", "B"): i_eb, ("B", "L"): i_bl, ("E", "L"): i_el})
    for y in range(k):
        graph = attribution_graph(atlas, y, mass=1.0)  # keep every node with PageRank > 0
        assert graph.data["layers"] == ["E", "L"]
        got = {(s, t): w for s, t, w in
               graph.edges[["source", "target", "weight"]].itertuples(index=False)}
        want = {}
        for j in range(3):
            two_hop = [max(min(i_bl[y, j, b], i_eb[y, b, i]) for b in range(4)) for i in range(6)]
            cut = sorted(two_hop, reverse=True)[1]  # top 2 per channel, ties kept
            for i in range(6):
                w = max(i_el[y, j, i], two_hop[i] if two_hop[i] >= cut else 0)
                if w > 0:
                    want[(f"E:{i}", f"L:{j}")] = float(w)
        assert got == want
        top = graph.nodes.loc["L:1", "top_inputs"]  # raw inputs: bottleneck channels
        order = np.argsort(-i_bl[y, 1], kind="stable")
        assert top == [f"B:{b}" for b in order[:3] if i_bl[y, 1, b] > 0]


# -- the real CIFAR ResNet-20 ---------------------------------------------------------------------

@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_resnet20_every_class_graph_spans_every_layer(shared, two_threads):
    from notebookcarto.capture import mappable_layers
    from notebookcarto.datasets import cifar10_test
    from notebookcarto.models import load_resnet20

    model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
    full = cifar10_test(shared / "data" / "cifar10-test")
    data = torch.utils.data.Subset(full, range(0, 10_000, 33))  # 304, all classes
    batches = list(torch.utils.data.DataLoader(data, batch_size=100))
    layers = mappable_layers(model)
    atlas = Atlas.build(model, batches, layers, progress=False)
    atlas.attach(count_influence(atlas, model, batches, progress=False))
    graphs = attribution_graphs(atlas, progress=False).graphs
    assert len(graphs) == 10
    for name, graph in graphs.items():
        per_layer = {n: sum(node["layer"] == n for node in graph["nodes"]) for n in layers}
        print(f"class {name}: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges, mass "
              f"{graph['mass']:.3f}, nodes per layer {list(per_layer.values())}")
        assert min(per_layer.values()) >= 1, (name, per_layer)
        assert graph["edges"]
        # the default view: about Summit's published sizes (39 to 91 nodes)
        shown = sum(node["shown"] for node in graph["nodes"])
        assert 20 <= shown <= 100 and sum(e["shown"] for e in graph["edges"]) <= 400, name


# -- bad input ------------------------------------------------------------------------------------

def test_bad_input():
    rng = np.random.default_rng(2)
    agg = {"a": rng.integers(0, 5, (3, 4)), "b": rng.integers(0, 5, (3, 5)),
           "c": rng.integers(0, 5, (3, 2))}
    atlas = synthetic_atlas(agg, {("a", "b"): rng.integers(0, 5, (3, 5, 4))})
    with pytest.raises(KeyError, match="unknown class"):
        attribution_graph(atlas, 3)
    with pytest.raises(KeyError, match="unknown class"):
        attribution_graph(atlas, "no such class")
    with pytest.raises(KeyError, match="not in the atlas"):
        attribution_graph(atlas, 0, layers=["a", "z"])
    with pytest.raises(ValueError, match="linked to no other graph layer"):
        attribution_graph(atlas, 0, layers=["a", "b", "c"])
    with pytest.raises(ValueError, match="direction"):
        attribution_graph(atlas, 0, direction="sideways")
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_inputs'"):
        attribution_graphs(atlas, top_inputs=3, progress=False)
    atlas.detach(Influence)
    with pytest.raises(KeyError, match="count_influence"):
        attribution_graph(atlas, 0)
    with pytest.raises(KeyError, match="count_influence"):
        attribution_graphs(atlas, progress=False)


def test_class_without_counts_gives_an_empty_graph():
    agg = {"a": np.array([[3, 1], [0, 0]]), "b": np.array([[2, 0, 1], [0, 0, 0]])}
    atlas = synthetic_atlas(agg, {("a", "b"): np.ones((2, 3, 2), np.int64)})
    graph = attribution_graph(atlas, 1)
    assert graph.nodes.empty and graph.edges.empty and graph.data["nodes"] == []
    assert not attribution_graph(atlas, 0).nodes.empty
