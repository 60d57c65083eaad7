"""Neuron clusters: MinHash-LSH against exact Jaccard, stage 2 against brute force, and recovery
of planted copy groups. (The data-driven threshold, Leiden and residual streams:
test_cluster_quality.py.)"""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score

from notebookcarto import ActivationStats, Atlas
from notebookcarto.analyses import clustering, minhash, refine
from notebookcarto.analyses.clustering import Clusters, cluster_neurons, cluster_table
from notebookcarto.analyses.minhash import (collision_table, exact_jaccard_pairs, lsh_clusters,
                                            minhash_signatures, s_curve, s_curve_figure,
                                            s_curve_threshold, synthetic_top_sets)
from notebookcarto.testing.planted_copies import planted_copies_atlas


@pytest.fixture(scope="module")
def planted():
    return planted_copies_atlas()


@pytest.fixture(scope="module")
def clustered(planted):
    data, model, images, atlas = planted
    return atlas.attach(cluster_neurons(atlas, model, images, progress=False))


@pytest.fixture(scope="module")
def synthetic():
    sets, group = synthetic_top_sets(2000, seed=1)
    return sets, exact_jaccard_pairs(sets)


# ------------------------------------------------------------------ S-curve and MinHash


def test_s_curve_formula_and_figure():
    s = np.array([0.0, 0.1, 0.5, 1.0])
    assert np.allclose(s_curve(s, 2, 100), 1 - (1 - s ** 2) ** 100)
    assert s_curve_threshold(2, 100) == pytest.approx(0.1)
    assert s_curve_threshold(5, 30) == pytest.approx((1 / 30) ** 0.2)
    fig = s_curve_figure(2, 100, compare=[(5, 30)])
    assert len(fig.data) == 2 and np.allclose(fig.data[0].y[-1], 1.0)
    observed = pd.DataFrame({"jaccard": [0.1, 0.12, 0.9], "collides": [True, False, True]})
    fig = s_curve_figure(2, 100, observed=observed, bins=10)
    assert list(fig.data[-1].y) == [0.5, 1.0]


def test_exact_jaccard_matches_brute_force():
    rng = np.random.default_rng(0)
    sets = rng.integers(0, 30, (25, 8))
    sets[3, 5:] = -1  # padding
    ref = {}
    py = [set(r[r >= 0].tolist()) for r in sets]
    for i, j in itertools.combinations(range(len(py)), 2):
        if py[i] & py[j]:
            ref[(i, j)] = len(py[i] & py[j]) / len(py[i] | py[j])
    got = exact_jaccard_pairs(sets)
    assert {(r.i, r.j): r.jaccard for r in got.itertuples()} == pytest.approx(ref)
    assert len(exact_jaccard_pairs(sets, 0.3)) == sum(v >= 0.3 for v in ref.values())


def test_shared_hashes_collide_with_probability_jaccard():
    # Two sets with J = 30/70: each shared permutation gives equal minima with probability J.
    a = np.arange(0, 50)
    b = np.arange(20, 70)
    sig, _ = minhash_signatures(np.stack([a, b]), 4000, seed=3)
    rate = (sig[0] == sig[1]).float().mean().item()
    j = 30 / 70
    assert abs(rate - j) < 4 * np.sqrt(j * (1 - j) / 4000)


def test_lsh_recall_and_s_curve(synthetic):
    sets, pairs = synthetic
    labels, sig, valid = lsh_clusters(sets, 2, 100, seed=0)
    table = collision_table(sig, pairs, 2, 100)
    high = table[table.jaccard >= 0.5]
    assert len(high) > 300
    assert high.collides.mean() >= 0.95
    # clusters hold every colliding pair
    lab = labels.numpy()
    assert (lab[high.i] == lab[high.j]).mean() >= high.collides.mean()
    # the measured collision rate follows the S-curve within sampling error in every bin
    bins = np.digitize(table.jaccard, np.linspace(0, 1, 21))
    checked = 0
    for _, part in table.groupby(bins):
        if len(part) < 30:
            continue
        p = part.expected.mean()
        se = np.sqrt(max(p * (1 - p), 1e-4) / len(part))
        assert abs(part.collides.mean() - p) <= 4 * se + 0.01, (part.jaccard.mean(), p)
        checked += 1
    assert checked >= 4


def test_other_bands_follow_their_s_curve(synthetic):
    sets, pairs = synthetic
    _, sig, _ = lsh_clusters(sets, 5, 30, seed=1)
    table = collision_table(sig, pairs[pairs.jaccard > 0.2], 5, 30)
    assert abs(table.collides.mean() - table.expected.mean()) < 0.05


@pytest.mark.skipif(minhash._kernels() is None, reason="numba not installed")
def test_numba_and_torch_back_ends_agree(synthetic):
    sets, _ = synthetic
    a = lsh_clusters(sets[:500], seed=4, backend="numba")
    b = lsh_clusters(sets[:500], seed=4, backend="torch")
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_union_find_matches_connected_components():
    rng = np.random.default_rng(0)
    n = 300
    u, v = rng.integers(0, n, 250), rng.integers(0, n, 250)
    parent = minhash.union_find(torch.arange(n), torch.from_numpy(u), torch.from_numpy(v))
    _, ref = connected_components(coo_matrix((np.ones(250), (u, v)), shape=(n, n)),
                                  directed=False)
    ours = parent.numpy()
    for i, j in itertools.combinations(range(0, n, 7), 2):
        assert (ours[i] == ours[j]) == (ref[i] == ref[j])
    labels = minhash.components(parent).numpy()
    sizes = np.bincount(ref)
    assert ((labels >= 0) == (sizes[ref] >= 2)).all()


def test_sets_are_validated():
    with pytest.raises(ValueError, match="integer array"):
        minhash_signatures(np.zeros((3, 4)), 10)
    with pytest.raises(ValueError, match="rows must be"):
        lsh_clusters(np.zeros((3, 4), dtype=int), rows=0)
    with pytest.raises(ValueError, match="bands must be"):
        lsh_clusters(np.zeros((3, 4), dtype=int), bands=0)
    # empty sets never cluster
    sets = np.array([[1, 2, 3], [1, 2, 3], [-1, -1, -1], [-1, -1, -1]])
    labels, _, valid = lsh_clusters(sets)
    assert labels.tolist() == [0, 0, -1, -1] and valid.tolist() == [True, True, False, False]


# ------------------------------------------------------------------ stage 2 pieces


def test_position_tables_hash_the_upsampled_set():
    shapes = {"fine": (6, 6), "coarse": (3, 3), "tokens": (6,)}
    tables, common = refine._position_tables(shapes, 40, seed=2, device="cpu")
    assert common == (6, 6)
    g = torch.Generator().manual_seed(2 + 7919)
    perms = torch.stack([torch.randperm(36, generator=g) for _ in range(40)], 1)
    rng = np.random.default_rng(1)
    for name, (h, w) in (("fine", (6, 6)), ("coarse", (3, 3)), ("tokens", (1, 6))):
        active = torch.from_numpy(rng.random((5, h * w)) < 0.3)
        sig, empty = refine._position_minhash(active, tables[name])
        for q in range(5):
            cells = [i * 6 + j for i in range(6) for j in range(6)
                     if active[q, (i * h // 6) * w + (j * w // 6)]]
            assert bool(empty[q]) == (not cells)
            if cells:
                assert torch.equal(sig[q], perms[cells].min(0).values)


@pytest.mark.parametrize("budget", [1 << 24, 50])  # 50: one image at a time
def test_group_pair_counts_match_brute_force(monkeypatch, budget):
    monkeypatch.setattr(refine, "_BUDGET", budget)
    rng = np.random.default_rng(0)
    k, m, bands = 7, 9, 3
    keys = torch.from_numpy(rng.integers(0, 3, (k, m, bands)))
    empty = torch.from_numpy(rng.random((k, m)) < 0.15)
    counts = refine.group_pair_counts(keys, empty)
    assert counts.shape == (m, m) and torch.equal(counts, counts.T)
    for a, b in itertools.product(range(m), repeat=2):
        want = 0 if a == b else sum(
            1 for i in range(k) if not empty[i, a] and not empty[i, b]
            and bool((keys[i, a] == keys[i, b]).any()))
        assert counts[a, b] == want, (a, b)


# ------------------------------------------------------------------ planted ground truth


def test_planted_copy_groups_are_recovered(planted, clustered):
    data, model, images, atlas = planted
    truth = model.grouping()
    ids = atlas.neuron_ids
    planted_idx = [ids.index(n) for n in truth]
    pred = [f"c{clustered.labels[i]}" if clustered.labels[i] >= 0 else f"alone{i}"
            for i in planted_idx]
    ari = adjusted_rand_score([truth[n] for n in truth], pred)
    assert ari >= 0.9, ari
    # each always-together pair shares its top images (one stage-1 group) but fires at other
    # places, so stage 2 splits it
    for pair in model.pairs.values():
        a, b = (ids.index(n) for n in pair)
        assert clustered.candidates[a] == clustered.candidates[b] >= 0
        assert clustered.labels[a] < 0 or clustered.labels[a] != clustered.labels[b]


def test_cluster_table_and_atlas_round_trip(planted, clustered, tmp_path):
    data, model, images, atlas = planted
    assert atlas.neurons["cluster"].tolist() == clustered.labels.tolist()
    table = clustered.table
    assert table["size"].sum() == (clustered.labels >= 0).sum()
    red = table.loc[clustered.labels[atlas.neuron_ids.index(model.copies["red"][0])]]
    assert sorted(red["members"]) == sorted(model.copies["red"])
    assert red["layers"] == ["block1", "block2", "block3"]
    sets = clustering.top_sets(atlas).numpy()
    members = [atlas.neuron_ids.index(m) for m in red["members"]]
    for image, share in zip(red["shared_exemplars"], red["exemplar_shares"]):
        assert share == pytest.approx((sets[members] == image).any(1).mean(), abs=1e-4)
        assert share >= 0.5
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas")
    loaded = back.get(Clusters)
    assert np.array_equal(loaded.labels, clustered.labels)
    assert np.array_equal(loaded.candidates, clustered.candidates)
    assert loaded.params == clustered.params
    assert back.neurons["cluster"].tolist() == clustered.labels.tolist()
    assert cluster_table(back, loaded.labels).equals(table)


def test_deterministic_by_seed(planted, clustered):
    data, model, images, atlas = planted
    again = cluster_neurons(atlas, model, images, progress=False)
    assert np.array_equal(again.labels, clustered.labels)
    assert np.array_equal(again.candidates, clustered.candidates)


def test_bad_input(planted):
    data, model, images, atlas = planted
    with pytest.raises(ValueError, match="no statistics"):
        cluster_neurons(Atlas(ActivationStats()), refine=False)
    small = torch.utils.data.TensorDataset(*[t[:30] for t in images.tensors])
    tiny = Atlas.build(model, torch.utils.data.DataLoader(small, batch_size=10), model.layers,
                       top_n=50, progress=False)
    with pytest.raises(ValueError, match="larger than the data set"):
        cluster_neurons(tiny, model, small)
    for bad in (dict(rows=0), dict(bands=0), dict(refine_rows=0), dict(refine_bands=-1),
                dict(rows=1.5)):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            cluster_neurons(atlas, model, images, **bad)
    with pytest.raises(ValueError, match="pass model"):
        cluster_neurons(atlas)
    stage1 = cluster_neurons(atlas, refine=False)
    assert np.array_equal(stage1.labels, stage1.candidates)
