"""The sparse bottleneck step of the attribution graphs (max-min composition and top-E per
channel) against brute force: random sparse counts with many ties, in one piece and in small
chunks, and whole inception-like graphs against graphs built with the dense composition."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest

from notebookcarto import Atlas
from notebookcarto.analyses import Influence
from notebookcarto.analyses.attribution_graph import attribution_graphs

from helpers import atlas_from_aggregation

graph_module = sys.modules["notebookcarto.analyses.attribution_graph"]


def dense_max_min(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """max over b of min(second[j, b], first[b, i]), every (j, b, i) at once."""
    return np.minimum(second[:, :, None], first[None, :, :]).max(1)


def full_sort_top(w: np.ndarray, limit: int) -> np.ndarray:
    """``w`` with the entries below each row's ``limit``-th largest (by a full sort) set to 0."""
    cut = -np.sort(-w, axis=1)[:, limit - 1:limit] if limit > 0 else np.inf
    return np.where(w >= cut, w, 0)


def sparse_counts(rng, shape, density, top=4) -> np.ndarray:
    """Non-negative counts in 0..top (many ties), non-zero with probability ``density``."""
    return rng.integers(1, top + 1, shape) * (rng.random(shape) < density)


@pytest.mark.parametrize("budget", [1, 5, 1 << 20])
def test_max_min_equals_dense_brute_force(budget):
    rng = np.random.default_rng(0)
    for trial in range(150):
        later, bottleneck, earlier = rng.integers(1, 25, 3)
        density = rng.choice([0.0, 0.05, 0.3, 1.0])
        second = sparse_counts(rng, (later, bottleneck), density)
        first = sparse_counts(rng, (bottleneck, earlier), density)
        if trial % 3 == 0:  # float weights, as a hop chain's later hops may be
            second = second * 0.5
        got = graph_module._max_min(second, first, budget)
        want = dense_max_min(second, first)
        assert got.dtype == want.dtype and np.array_equal(got, want), trial


def test_top_per_row_keeps_ties_like_a_full_sort():
    rng = np.random.default_rng(1)
    for _ in range(100):
        w = sparse_counts(rng, tuple(rng.integers(1, 20, 2)), rng.random())
        for limit in range(w.shape[1] + 1):
            assert np.array_equal(graph_module._top_per_row(w, limit), full_sort_top(w, limit))


def inception_atlas(rng, blocks=3, width=40, reduce=(12, 4), classes=3) -> Atlas:
    """Blocks joined directly and through 3x3 / 5x5 bottlenecks left out of the atlas."""
    names = [f"block{n}" for n in range(blocks)]
    atlas = atlas_from_aggregation({n: rng.integers(0, 9, (classes, width)) for n in names})
    counts = {}
    for e, l in itertools.pairwise(names):
        counts[(e, l)] = sparse_counts(rng, (classes, width, width), 0.05)
        for branch, c in enumerate(reduce):
            b = f"{l}.branch{branch}"
            counts[(e, b)] = sparse_counts(rng, (classes, c, width), 0.1)
            counts[(b, l)] = sparse_counts(rng, (classes, width, c), 0.1)
    atlas.attach(Influence({p: v.astype(np.int64) for p, v in counts.items()}, "conv", 5))
    return atlas


@pytest.mark.parametrize("two_hop_edges", [None, 1, 3])
def test_graphs_equal_those_of_the_dense_composition(monkeypatch, two_hop_edges):
    atlas = inception_atlas(np.random.default_rng(2))
    fast = attribution_graphs(atlas, progress=False, two_hop_edges=two_hop_edges, mass=0.5)
    monkeypatch.setattr(graph_module, "_max_min", dense_max_min)
    monkeypatch.setattr(graph_module, "_top_per_row", full_sort_top)
    slow = attribution_graphs(atlas, progress=False, two_hop_edges=two_hop_edges, mass=0.5)
    assert any(g["edges"] for g in fast.graphs.values())
    assert json.dumps(fast.graphs, sort_keys=True) == json.dumps(slow.graphs, sort_keys=True)
