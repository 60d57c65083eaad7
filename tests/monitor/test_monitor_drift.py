"""The measures of change between snapshots, on hand-made cases."""

import math

import numpy as np
import pytest

from notebookcarto.monitor import cluster_continuity, set_jaccard, settled_steps, turnover


def test_set_jaccard_counts_shared_images_and_ignores_padding():
    before = np.array([[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1], [6, -1, -1, -1],
                       [7, 8, -1, -1]])
    after = np.array([[3, 2, 1, 0], [5, 6, 7, -1], [-1, -1, -1, -1], [-1, -1, -1, -1],
                      [9, 7, 8, -1]])
    jac = set_jaccard(before, after, n_images=10)
    assert jac[0] == 1.0  # order does not matter
    assert jac[1] == pytest.approx(1 / 4)  # {4,5} vs {5,6,7}
    assert math.isnan(jac[2])  # dead both times
    assert jac[3] == 0.0  # stopped firing: everything changed
    assert jac[4] == pytest.approx(2 / 3)


def test_set_jaccard_refuses_ids_outside_the_probe():
    with pytest.raises(ValueError, match="image ids"):
        set_jaccard(np.array([[0, 12]]), np.array([[0, 1]]), n_images=10)
    with pytest.raises(ValueError, match="neurons"):
        set_jaccard(np.zeros((2, 3), int), np.zeros((3, 3), int), n_images=10)


def test_settled_steps():
    steps = np.array([0, 10, 20, 30, 40])
    nan = np.nan
    jaccard = np.array([[nan, nan, nan, nan, nan],
                        [0.1, 0.9, 0.2, nan, 0.9],
                        [0.2, 0.9, 0.9, nan, 0.9],
                        [0.95, 0.9, 0.9, nan, 0.9],
                        [0.9, 0.9, 0.3, nan, 0.9]])
    alive = np.ones((5, 5), bool)
    alive[:, 3] = False  # never fires
    alive[4, 4] = False  # stopped firing at the end
    settled = settled_steps(steps, jaccard, alive, threshold=0.8)
    assert settled[0] == 20  # snapshots 20, 30, 40 agree
    assert settled[1] == 0  # never moved
    assert math.isnan(settled[2])  # the last change fails the threshold
    assert math.isnan(settled[3]) and math.isnan(settled[4])
    with pytest.raises(ValueError, match="threshold"):
        settled_steps(steps, jaccard, alive, threshold=1.5)


def test_cluster_continuity_and_turnover():
    before = np.array([0, 0, 0, 1, 1, -1, -1])
    same = np.array([1, 1, 1, 0, 0, -1, -1])  # relabelled only
    assert cluster_continuity(before, same).tolist() == [1.0, 1.0]
    assert turnover(before, same, [0, 3]) == 0.0
    split = np.array([0, 0, 1, 2, 2, -1, -1])  # cluster 0 split in two
    continuity = cluster_continuity(before, split)
    assert continuity == pytest.approx([2 / 3, 1 / 3, 1.0])
    # the class's neurons 0 and 2 sit in clusters 0 (2 members) and 1 (1 member)
    assert turnover(before, split, [0, 2]) == pytest.approx(1 - (2 * 2 / 3 + 1 / 3) / 3)
    new = np.array([-1, -1, -1, -1, -1, 0, 0])  # a cluster of formerly unclustered neurons
    assert turnover(before, new, [5]) == 1.0
    assert math.isnan(turnover(before, new, [0]))  # the class's neuron is in no cluster
    assert cluster_continuity(np.full(7, -1), split).tolist() == [0.0, 0.0, 0.0]
