"""Clusters that hold on real networks: candidate pairs and exact Jaccard against brute force, a
threshold above the background (where the reference's defaults chain everything), Leiden that
does not merge through one weak link, the warning for a dominating cluster, and residual streams
(found on a residual net, absent from a plain one, kept apart by default)."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from notebookcarto import ActivationStats, Atlas
from notebookcarto.analyses import Clusters, cluster_neurons
from notebookcarto.analyses.clustering import fence_threshold, leiden_groups
from notebookcarto.analyses.minhash import (candidate_pairs, choose_bands, exact_jaccard_pairs,
                                            lsh_clusters, minhash_signatures, pair_jaccard,
                                            s_curve)
from notebookcarto.analyses.streams import residual_streams, stream_units
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.models.resnet_cifar import CifarResNet

pytestmark = pytest.mark.usefixtures("one_thread")


def atlas_from_sets(layers: dict, n_images: int) -> Atlas:
    """An atlas without a model whose neurons have the given top-image sets ({layer: (channels,
    N) int array}), every value positive (every neuron fires on all its top images)."""
    top_n = next(iter(layers.values())).shape[1]
    stats = ActivationStats(top_n=top_n)
    for name, sets in layers.items():
        stats.add_layer(name, sets.shape[0], (4, 4))
        top = stats.layers[name].top
        top.index = torch.as_tensor(sets, dtype=torch.long)
        top.values = torch.linspace(2.0, 1.0, top_n).expand(sets.shape[0], -1).clone()
        top.positions = torch.zeros_like(top.index)
    stats.config["n_images"] = n_images
    return Atlas(stats)


def grouped_sets(rng, n_groups, size, top_n, universe, swap):
    """``n_groups`` groups of ``size`` noisy copies of a random base set (a share ``swap`` of
    each copy's ids replaced)."""
    sets = []
    for _ in range(n_groups):
        base = rng.choice(universe, top_n, replace=False)
        for _ in range(size):
            copy = base.copy()
            out = rng.random(top_n) < swap
            fresh = rng.permutation(np.setdiff1d(np.arange(universe), copy))[:out.sum()]
            copy[out] = fresh
            sets.append(copy)
    return np.array(sets)


# ------------------------------------------------------------------ candidate pairs


def test_pair_jaccard_matches_exact():
    rng = np.random.default_rng(0)
    sets = np.stack([rng.choice(60, 12, replace=False) for _ in range(40)])
    sets[5, 8:] = -1
    sets[7] = -1  # an empty set
    pairs = exact_jaccard_pairs(sets)
    got = pair_jaccard(sets, pairs["i"], pairs["j"], chunk=50)
    np.testing.assert_allclose(got, pairs["jaccard"])
    i, j = np.array([7, 7, 3]), np.array([7, 2, 3])
    np.testing.assert_allclose(pair_jaccard(sets, i, j), [0.0, 0.0, 1.0])


def test_candidate_pairs_are_exactly_the_colliding_pairs():
    rng = np.random.default_rng(1)
    sets = rng.integers(0, 40, (60, 6))
    signatures, valid = minhash_signatures(sets, 12, seed=2)
    valid[[3, 11]] = False
    i, j = candidate_pairs(signatures, valid, rows=2, bands=6)
    got = set(zip(i.tolist(), j.tolist()))
    want = set()
    for a, b in itertools.combinations(range(60), 2):
        if valid[a] and valid[b] and any(
                torch.equal(signatures[a, 2 * k:2 * k + 2], signatures[b, 2 * k:2 * k + 2])
                for k in range(6)):
            want.add((a, b))
    assert got == want and all(a < b for a, b in got)


@pytest.mark.parametrize("threshold", [0.1, 0.2, 0.35, 0.6])
def test_chosen_bands_find_pairs_at_the_threshold(threshold):
    rows, bands = choose_bands(threshold, recall=0.9, max_hashes=512)
    assert rows * bands <= 512
    assert s_curve(threshold, rows, bands) >= 0.9
    # one more row would not fit the budget at this recall (the most selective choice)
    more = int(np.ceil(np.log(0.1) / np.log(1 - threshold ** (rows + 1))))
    assert (rows + 1) * more > 512 or rows == 8


# ------------------------------------------------------------------ the threshold and Leiden


@pytest.fixture(scope="module")
def crowded():
    """The issue's situation in small: top sets of 50 out of 500 images (random pairs overlap
    at Jaccard ~0.05, their spread up to 0.15), 12 planted groups of 5 near-copies, and 140
    unrelated neurons."""
    rng = np.random.default_rng(4)
    grouped = grouped_sets(rng, 12, 5, 50, 500, swap=0.25)
    loose = np.stack([rng.choice(500, 50, replace=False) for _ in range(140)])
    sets = np.concatenate([grouped, loose])
    order = rng.permutation(len(sets))
    truth = np.concatenate([np.repeat(np.arange(12), 5), np.full(140, -1)])[order]
    sets = sets[order]
    atlas = atlas_from_sets({"a": sets[:100], "b": sets[100:]}, 500)
    return atlas, sets, truth


def test_reference_defaults_chain_everything_and_warn(crowded):
    atlas, sets, truth = crowded
    labels, _, _ = lsh_clusters(sets, 2, 100)
    assert np.bincount(labels[labels >= 0].numpy()).max() > 0.8 * len(sets)
    with pytest.warns(UserWarning, match="one cluster holds"):
        cluster_neurons(atlas, method="union-find", refine=False)


def test_auto_threshold_finds_the_planted_groups(crowded):
    atlas, sets, truth = crowded
    result = cluster_neurons(atlas, refine=False)
    params = result.params
    assert params["threshold"] > 0.1 and params["threshold"] == params["background_fence"]
    pairs = exact_jaccard_pairs(sets)
    background = pairs[(truth[pairs.i] < 0) | (truth[pairs.i] != truth[pairs.j])]
    assert (background.jaccard >= params["threshold"]).mean() < 0.002  # above the background
    planted = truth >= 0
    ari = adjusted_rand_score(truth[planted], np.where(result.labels >= 0, result.labels,
                                                       -1 - np.arange(len(truth)))[planted])
    assert ari >= 0.9, ari
    assert (result.labels[~planted] < 0).mean() > 0.9
    assert np.bincount(result.labels[result.labels >= 0]).max() <= 6
    # deterministic by seed
    assert np.array_equal(cluster_neurons(atlas, refine=False).labels, result.labels)


def test_fence_threshold_stays_a_jaccard():
    rng = np.random.default_rng(6)
    low = rng.beta(2, 150, 20_000)  # a low background: about the plain fence Q3 + 6 IQR
    q1, q3 = np.quantile(low, [0.25, 0.75])
    assert fence_threshold(low) == pytest.approx(q3 + 6 * (q3 - q1), rel=0.1)
    high = rng.beta(12, 8, 20_000)  # tiny data: random pairs share most exemplars
    q1, q3 = np.quantile(high, [0.25, 0.75])
    assert q3 + 6 * (q3 - q1) > 1 and q3 < fence_threshold(high) < 1
    assert fence_threshold(np.ones(10)) <= 1 and fence_threshold([]) == 0
    assert fence_threshold(low, 0) == pytest.approx(np.quantile(low, 0.75))


def test_tiny_data_warns_with_a_threshold_below_one():
    """Top sets of 20 out of 30 images: random pairs share about half their exemplars."""
    rng = np.random.default_rng(7)
    sets = np.stack([rng.choice(30, 20, replace=False) for _ in range(40)])
    atlas = atlas_from_sets({"a": sets}, 30)
    with pytest.warns(UserWarning, match=r"share much of their exemplars \(Jaccard: median 0\."):
        result = cluster_neurons(atlas, refine=False)
    assert 0.5 < result.params["threshold"] < 1


def test_leiden_does_not_merge_through_one_weak_link():
    """Two groups of 6 near-copies, and one neuron whose set is half the one base, half the
    other: union-find over the similar pairs chains both groups; Leiden keeps them apart."""
    rng = np.random.default_rng(5)
    two = grouped_sets(rng, 2, 6, 60, 5000, swap=0.2)
    bridge = np.concatenate([two[0][:30], two[6][30:]])
    sets = torch.as_tensor(np.concatenate([two, bridge[None]]))
    valid = torch.ones(len(sets), dtype=torch.bool)
    assert pair_jaccard(sets, [12, 12], [0, 6]).min() > 0.2  # the bridge is similar to both
    labels, params = leiden_groups(sets, valid, threshold=0.2)
    labels = labels.numpy()
    assert len({labels[i] for i in range(6)}) == 1 and len({labels[i] for i in range(6, 12)}) == 1
    assert labels[0] != labels[6]
    reference, _, _ = lsh_clusters(sets, 2, 100)  # union-find: one cluster
    assert reference[0] == reference[6] == reference[12]


def test_bad_clustering_arguments(crowded):
    atlas, _, _ = crowded
    for bad, match in ((dict(method="kmeans"), "method must be"),
                       (dict(streams="merge"), "streams must be"),
                       (dict(threshold=1.5), "threshold must be"),
                       (dict(threshold="high"), "threshold must be"),
                       (dict(fence=-1), "fence must be")):
        with pytest.raises(ValueError, match=match):
            cluster_neurons(atlas, refine=False, **bad)


# ------------------------------------------------------------------ residual streams


def playground_batches(n=240):
    data = ConceptPlayground(n=n, size=32, seed=7)
    images, labels = data.tensors(progress=False)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                       batch_size=120), data


@pytest.fixture(scope="module")
def residual_atlas():
    """A random CIFAR ResNet-20 whose residual branches are damped (the second BatchNorm of
    every block scaled by 0.2), so the identity shortcut carries each channel through a stage,
    as in a trained ResNet."""
    torch.manual_seed(0)
    model = CifarResNet(20, num_classes=8).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("bn2"):
                module.weight.mul_(0.2)
    loader, data = playground_batches()
    atlas = Atlas.build(model, loader, class_names=data.classes, top_n=20, progress=False)
    return model, loader, atlas


def test_streams_of_a_residual_net(residual_atlas):
    model, loader, atlas = residual_atlas
    streams = residual_streams(atlas)
    assert streams.stages == [[f"layer{s}.{b}" for b in range(3)] for s in (1, 2, 3)]
    assert len(streams.names) == 16 + 32 + 64 and streams.names[17] == "layer2.0..layer2.2:1"
    offsets = atlas.layer_offsets
    for layer in ("layer1.0", "layer1.2"):
        assert streams.ids[offsets[layer] + 5] == 5  # channel 5 of stage 1
    assert all(linked for *_, linked in streams.links)


def test_a_plain_net_has_no_streams():
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Conv2d(3 if k == 0 else 16, 16, 3, padding=1), nn.ReLU())
              for k in range(4)]
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 8))
    loader, data = playground_batches()
    atlas = Atlas.build(model, loader, ["0", "1", "2", "3"], top_n=20, progress=False)
    streams = residual_streams(atlas)
    assert streams.stages == [] and (streams.ids < 0).all()
    assert len(streams.links) == 3 and not any(linked for *_, linked in streams.links)


def test_clusters_span_streams_by_default(residual_atlas, tmp_path):
    model, loader, atlas = residual_atlas
    across = cluster_neurons(atlas, refine=False)
    within = cluster_neurons(atlas, refine=False, streams="include")
    table = within.table
    # with stream pairs, the clusters are one stream repeated through its blocks
    assert len(table) >= 20 and table["stream_share"].mean() > 0.9
    assert (table["stream"] != "").mean() > 0.9
    # by default clusters span streams: no stream holds most of a cluster
    assert len(across.table) >= 2 and across.table["stream_share"].mean() < 0.75
    assert (across.table["stream"] == "").mean() >= 0.8, across.table[["size", "stream"]]
    assert atlas.attach(across) is across
    columns = atlas.neurons[["cluster", "stream"]]
    assert columns.loc["layer2.1:3", "stream"] == "layer2.0..layer2.2:3"
    assert (columns["stream"] != "").all()  # every block output of this net is on a stream
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(Clusters)
    assert np.array_equal(back.stream, across.stream) and back.stages == across.stages
    assert back.table.equals(across.table)
    assert {"n_streams", "stream", "stream_share"} <= set(back.table.columns)


def test_stream_units():
    unit, representative = stream_units([0, 1, -1, 0, 1, -1])
    assert unit.tolist() == [2, 3, 1, 2, 3, 0]  # streams 0, 1 and two neurons on none
    assert representative.tolist() == [5, 2, 3, 4]
    assert (unit[representative] == np.arange(4)).all()


def test_collapsed_streams_cluster_as_units(residual_atlas):
    atlas = residual_atlas[2]
    collapsed = cluster_neurons(atlas, refine=False, streams="collapse")
    stream = collapsed.stream
    labels = collapsed.labels
    assert collapsed.n_clusters >= 2 and collapsed.params["streams"] == "collapse"
    # a stream is never split: all its neurons share one label (or none)
    for s in np.unique(stream[labels >= 0]):
        assert len(set(labels[stream == s])) == 1
    # every cluster holds whole streams, at least two of them
    assert (collapsed.table["n_streams"] >= 2).all()
    assert (collapsed.table["size"] % 3 == 0).all()  # three blocks a stage


# ------------------------------------------------------------------ the CIFAR ResNet-20


@pytest.fixture(scope="module")
def resnet20_atlas(shared):
    """The pretrained CIFAR ResNet-20 over every tenth CIFAR-10 test image (1,000)."""
    from notebookcarto.datasets import cifar10_test
    from notebookcarto.models import load_resnet20

    data = torch.utils.data.Subset(cifar10_test(shared / "data" / "cifar10-test"),
                                   range(0, 10_000, 10))  # the files are sorted by class
    model = load_resnet20(shared / "models" / "resnet20-cifar10.th").eval()
    return Atlas.build(model, data, progress=False)


def test_resnet20_clusters_do_not_collapse(resnet20_atlas):
    atlas = resnet20_atlas
    n = len(atlas.neuron_ids)
    with pytest.warns(UserWarning, match="one cluster holds"):  # the reference chains them
        reference = cluster_neurons(atlas, method="union-find", refine=False)
    assert np.bincount(reference.labels[reference.labels >= 0]).max() > 0.5 * n
    result = cluster_neurons(atlas, refine=False)
    assert result.n_clusters >= 10 and result.table["size"].max() <= 0.1 * n
    assert result.params["threshold"] > 0.1
    # the identity shortcut: one stream per channel through each of the three stages
    assert result.stages == [[f"layer{s}.{b}" for b in range(3)] for s in (1, 2, 3)]
    included = cluster_neurons(atlas, refine=False, streams="include")
    assert result.table["stream_share"].mean() <= 0.6 < included.table["stream_share"].mean()
