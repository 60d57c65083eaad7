"""Per-class cluster graphs: node selection, edge weights against brute force (co-activation and
influence counts), the graph JSON format and the atlas round trip."""

import json
import math

import numpy as np
import pytest

from notebookcarto import Atlas
from notebookcarto.analyses import Influence
from notebookcarto.analyses.cluster_graph import ClusterGraphs, cluster_graph, cluster_graphs
from notebookcarto.analyses.clustering import cluster_neurons
from notebookcarto.testing.planted_copies import planted_copies_atlas


@pytest.fixture(scope="module")
def planted():
    data, model, images, atlas = planted_copies_atlas()
    result = atlas.attach(cluster_neurons(atlas, model, images, progress=False))
    return data, model, atlas, result


def _top_sets(atlas):
    return {f"{name}:{c}": set(layer.top.index[c].tolist())
            for name, layer in atlas.stats.layers.items() for c in range(layer.channels)}


def test_nodes_are_top_neurons_replaced_by_clusters(planted):
    data, model, atlas, result = planted
    for k, cls in enumerate(atlas.class_names):
        nodes, edges, graph = cluster_graph(atlas, cls)
        expected = set()
        for layer in atlas.layers:
            a = atlas.aggregation(layer).iloc[k]
            top = a.sort_values(ascending=False, kind="stable").head(math.ceil(0.1 * len(a)))
            expected |= {n for n, v in top.items() if v > 0}
        covered = {m for members in nodes["members"] for m in members}
        assert expected <= covered
        for node_id, row in nodes.iterrows():
            labels = {result.labels[atlas.neuron_ids.index(m)] for m in row["members"]}
            assert len(labels) == 1 and {row["layer"]} == {m.rpartition(":")[0]
                                                           for m in row["members"]}
            if row["kind"] == "cluster":
                c = labels.pop()
                assert node_id.startswith(f"cluster:{c}")
                # all the cluster's members in this layer
                assert sorted(row["members"]) == sorted(
                    m for m in result.members(c) if m.startswith(row["layer"] + ":"))
            else:
                assert row["members"] == [node_id] and labels == {-1}
            a = atlas.aggregation(row["layer"]).iloc[k]
            assert row["count"] == pytest.approx(a[row["members"]].mean())
            assert all(a[m] > 0 for m in row["active"])


def test_coactivation_weights_match_brute_force(planted):
    data, model, atlas, result = planted
    sets = _top_sets(atlas)
    nodes, edges, graph = cluster_graph(atlas, "red circle + purple cross")
    assert len(edges) and set(edges["kind"]) == {"coactivation"}
    members = nodes["members"].to_dict()
    order = {layer: i for i, layer in enumerate(atlas.layers)}
    for e in edges.itertuples():
        low, up = members[e.source], members[e.target]
        assert order[nodes.loc[e.target, "layer"]] == order[nodes.loc[e.source, "layer"]] + 1
        ref = np.mean([len(sets[a] & sets[b]) for a in up for b in low])
        assert e.weight == pytest.approx(ref)
    # pairs of nodes without an edge share no top image
    for up in nodes.index[nodes.layer == "block2"]:
        for low in nodes.index[nodes.layer == "block1"]:
            if not ((edges.source == low) & (edges.target == up)).any():
                assert all(not sets[a] & sets[b] for a in members[up] for b in members[low])


def test_class_images_only(planted):
    data, model, atlas, result = planted
    labels = np.array([data.label(i) for i in range(len(data))])
    k = data.classes.index("red circle + purple cross")
    sets = _top_sets(atlas)
    mine = set(np.flatnonzero(labels == k).tolist())
    nodes, edges, _ = cluster_graph(atlas, k, image_labels=labels)
    members = nodes["members"].to_dict()
    for e in edges.itertuples():
        ref = np.mean([len(sets[a] & sets[b] & mine) for a in members[e.target]
                       for b in members[e.source]])
        assert e.weight == pytest.approx(ref)


def test_influence_counts_weigh_edges_when_present(planted):
    data, model, atlas, result = planted
    rng = np.random.default_rng(0)
    widths = {name: layer.channels for name, layer in atlas.stats.layers.items()}
    counts = rng.integers(0, 20, (len(atlas.class_names), widths["block2"], widths["block1"]))
    atlas.attach(Influence({("block1", "block2"): counts}, "test", 5, {}))
    try:
        k = 4
        nodes, edges, _ = cluster_graph(atlas, k)
    finally:
        atlas.detach(Influence)
    channel = {n: int(n.rpartition(":")[2]) for n in atlas.neuron_ids}
    members = nodes["members"].to_dict()
    for e in edges.itertuples():
        if nodes.loc[e.target, "layer"] == "block2":
            assert e.kind == "influence"
            low, up = members[e.source], members[e.target]
            ref = sum(counts[k, channel[a], channel[b]] for a in up for b in low)
            assert e.weight == pytest.approx(ref / (len(up) * len(low)))
        else:  # block2 -> block3 has no influence counts: co-activation
            assert e.kind == "coactivation"


def test_graph_json_format_and_round_trip(planted, tmp_path):
    data, model, atlas, result = planted
    graphs = atlas.attach(cluster_graphs(atlas)).graphs
    assert list(graphs) == atlas.class_names
    g = graphs["white circle + green triangle"]
    json.dumps(graphs)  # JSON-ready
    assert g["class"] == "white circle + green triangle"
    assert set(g["layers"]) <= set(atlas.layers)
    keys = {"id", "layer", "count", "pagerank", "x", "y", "members", "top_inputs"}
    ids = {n["id"] for n in g["nodes"]}
    y = {}
    for n in g["nodes"]:
        assert keys <= set(n)
        assert 0 <= n["x"] <= 1 and 0 <= n["y"] <= 1
        y.setdefault(n["layer"], set()).add(n["y"])
        assert set(n["top_inputs"]) <= ids and len(n["top_inputs"]) <= 3
    ys = [y[layer].pop() for layer in g["layers"]]
    assert ys == sorted(ys) and ys[-1] > ys[0]  # deep layers on top
    assert sum(n["pagerank"] for n in g["nodes"]) == pytest.approx(1.0)
    for e in g["edges"]:
        assert e["source"] in ids and e["target"] in ids and e["weight"] > 0
    # the pair detectors of this class are the top block1 neurons, each its own node
    pair = model.pairs["white circle + green triangle"]
    assert pair[0] in ids
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas")
    assert back.get(ClusterGraphs).graphs == graphs


def test_needs_clusters_and_a_valid_class(planted):
    data, model, atlas, result = planted
    bare = Atlas(atlas.stats, class_names=atlas.class_names)
    with pytest.raises(KeyError, match="cluster_neurons"):
        cluster_graph(bare, 0)
    with pytest.raises(KeyError, match="unknown class"):
        cluster_graph(atlas, "no such class")
    with pytest.raises(ValueError, match="top_fraction"):
        cluster_graph(atlas, 0, top_fraction=0)
