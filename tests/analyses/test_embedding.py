"""Neuron embedding: SGNS gradients against autograd, sentences against brute force, planted
always-together pairs, determinism and the atlas round trip."""

import itertools

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.analyses.embedding import (Embedding, embed_neurons, epoch_pairs,
                                              sentences_from_sets, sgns_step, train_sgns)
from notebookcarto.testing.planted_copies import planted_copies_atlas


@pytest.fixture(scope="module")
def planted():
    return planted_copies_atlas()


@pytest.fixture(scope="module")
def embedded(planted):
    atlas = planted[3]
    return atlas.attach(embed_neurons(atlas, snapshot_epochs=[1, 3, 5], progress=False))


def test_sgns_step_is_the_gradient_of_the_loss():
    torch.manual_seed(0)
    n, d, b, k = 40, 6, 5, 3
    vectors = torch.randn(n, d, dtype=torch.float64)
    idx = torch.randperm(n)[: b * (k + 2)]  # all distinct: updates do not overlap
    u, v, z = idx[:b], idx[b:2 * b], idx[2 * b:].reshape(b, k)
    leaf = vectors.clone().requires_grad_(True)
    eu, ev, ez = leaf[u], leaf[v], leaf[z]
    loss = -(torch.nn.functional.logsigmoid((eu * ev).sum(-1))
             + torch.nn.functional.logsigmoid(-(ez * eu[:, None]).sum(-1)).sum(-1)).sum()
    loss.backward()
    stepped = vectors.clone()
    mean = sgns_step(stepped, u, v, z, lr=0.1)
    assert torch.allclose(stepped, vectors - 0.1 * leaf.grad)
    assert float(mean) == pytest.approx(loss.item() / b)


def test_sentences_match_brute_force():
    sets = np.array([[0, 1, 2], [2, 3, -1], [1, 2, 5], [7, 8, 9]])
    members, lengths = sentences_from_sets(sets)
    got = [sorted(s.tolist()) for s in torch.split(members, lengths.tolist())]
    ref = []
    for image in sorted(set(sets[sets >= 0].tolist())):
        holders = [i for i, row in enumerate(sets) if image in row]
        if len(holders) >= 2:
            ref.append(holders)
    assert got == ref


def test_epoch_pairs_pair_neighbours_within_sentences():
    members = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8])
    lengths = torch.tensor([4, 2, 3])
    pairs = epoch_pairs(members, lengths, torch.Generator().manual_seed(0))
    assert pairs.shape == (3 + 1 + 2, 2)
    sentence = {int(m): s for s, part in enumerate(torch.split(members, lengths.tolist()))
                for m in part}
    assert all(sentence[int(a)] == sentence[int(b)] for a, b in pairs)
    for s, part in enumerate(torch.split(members, lengths.tolist())):  # a path through each
        inside = [tuple(p.tolist()) for p in pairs if sentence[int(p[0])] == s]
        assert set(itertools.chain(*inside)) == set(part.tolist())


def test_planted_always_together_pairs_rank_in_top_decile(planted, embedded):
    data, model, images, atlas = planted
    ids = atlas.neuron_ids
    cos = embedded.cosine()
    upper = cos[np.triu_indices(len(ids), 1)]
    for cls, (a, b) in model.pairs.items():
        c = cos[ids.index(a), ids.index(b)]
        assert (upper > c).mean() <= 0.10, (cls, (upper > c).mean())
    near = [n for n, _ in embedded.nearest(model.pairs["white circle + green triangle"][0], 3)]
    assert model.pairs["white circle + green triangle"][1] in near


def test_deterministic_by_seed(planted):
    atlas = planted[3]
    from notebookcarto.analyses.embedding import sentences

    members, lengths = sentences(atlas)
    n = len(atlas.neuron_ids)
    a = train_sgns(members, lengths, n, seed=3, progress=False)
    b = train_sgns(members, lengths, n, seed=3, progress=False)
    c = train_sgns(members, lengths, n, seed=4, progress=False)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert [h["loss"] for h in a[2]] == [h["loss"] for h in b[2]]
    assert a[2][-1]["loss"] < a[2][0]["loss"]  # training lowers the loss
    assert torch.equal(a[1][5], a[0])  # the last snapshot is the final embedding


def test_snapshots_and_atlas_round_trip(planted, embedded, tmp_path):
    atlas = planted[3]
    n = len(atlas.neuron_ids)
    assert embedded.epochs == [1, 3, 5]
    assert embedded.vectors.shape == (n, 30) and embedded.xy.shape == (n, 2)
    assert embedded.snapshot_vectors.shape == (3, n, 30)
    assert embedded.snapshot_xy.shape == (3, n, 2)
    assert np.array_equal(embedded.snapshot_vectors[-1], embedded.vectors)
    assert not np.array_equal(embedded.snapshot_vectors[0], embedded.vectors)
    assert np.isfinite(embedded.snapshot_xy).all()
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(Embedding)
    for key in ("vectors", "xy", "snapshot_vectors", "snapshot_xy"):
        assert np.array_equal(getattr(back, key), getattr(embedded, key)), key
        assert getattr(back, key).dtype == np.float32
    assert back.epochs == [1, 3, 5] and back.params == embedded.params


def test_bad_input(planted):
    atlas = planted[3]
    members, lengths = torch.tensor([0, 1]), torch.tensor([2])
    with pytest.raises(ValueError, match="snapshot_epochs"):
        train_sgns(members, lengths, 2, epochs=2, snapshot_epochs=[3], progress=False)
    with pytest.raises(ValueError, match="dim must be"):
        train_sgns(members, lengths, 2, dim=0, progress=False)
    with pytest.raises(ValueError, match="at least 2 neurons"):
        train_sgns(members, lengths, 1, progress=False)
    with pytest.raises(KeyError, match="embed_neurons"):
        Atlas(atlas.stats).get(Embedding)
    with pytest.raises(KeyError, match="unknown neuron 'nope:1'"):
        embed_neurons(atlas, epochs=1, progress=False).nearest("nope:1")
