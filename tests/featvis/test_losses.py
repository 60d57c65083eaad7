"""Sort matching is the squared 1-D Wasserstein-2 distance to the references' barycentre; its
gradient; the priors."""

import itertools

import numpy as np
import pytest
import torch

from notebookcarto.featvis import reference_quantiles, sort_matching, total_variation
from notebookcarto.featvis.losses import pixel_norm


def w2_squared_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """Squared 1-D Wasserstein-2 between two empirical distributions of n atoms each: the best
    matching over all n! pairings."""
    return min(float(np.mean((a - b[list(p)]) ** 2))
               for p in itertools.permutations(range(len(b))))


def test_sort_matching_is_w2_to_the_barycentre_by_brute_force():
    rng = np.random.default_rng(0)
    synthetic = rng.normal(size=(2, 3, 5))
    real = rng.normal(size=(4, 3, 5)) * 2 + 1  # 4 reference images
    target = reference_quantiles(torch.from_numpy(real))
    loss = sort_matching(torch.from_numpy(synthetic), target.expand(2, -1, -1)).numpy()
    for b in range(2):
        expected = np.mean([w2_squared_brute_force(synthetic[b, c], target[c].numpy())
                            for c in range(3)])
        assert loss[b] == pytest.approx(expected, rel=1e-12)
    # the target is the W2 barycentre: no other atoms are closer to the references on average
    for c in range(3):
        best = np.mean([w2_squared_brute_force(target[c].numpy(), r[c]) for r in real])
        for _ in range(20):
            other = target[c].numpy() + rng.normal(scale=0.3, size=5)
            assert best <= np.mean([w2_squared_brute_force(other, r[c]) for r in real]) + 1e-12


def test_sort_matching_weights_channels():
    x = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    target = torch.zeros(1, 2, 2)
    assert sort_matching(x, target).item() == pytest.approx((0.5 + 2.0) / 2)
    weights = torch.tensor([[1.0, 0.0]])
    assert sort_matching(x, target, weights).item() == pytest.approx(0.5 / 2)


def test_sort_matching_gradient():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(2, 3, 7)), requires_grad=True)  # distinct values
    target = reference_quantiles(torch.tensor(rng.normal(size=(3, 3, 7))))
    weights = torch.tensor(rng.uniform(size=(2, 3)))
    assert torch.autograd.gradcheck(
        lambda v: sort_matching(v, target.expand(2, -1, -1), weights), (x,))


def test_sort_matching_checks_shapes():
    with pytest.raises(ValueError, match="must both be"):
        sort_matching(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="reference features"):
        reference_quantiles(torch.zeros(0, 2, 3))


def test_priors_per_image():
    x = torch.zeros(2, 1, 3, 3)
    x[1, 0, :, 1] = 1.0  # a vertical line in image 1
    l1, l2 = total_variation(x)
    assert l1[0] == 0 and l2[0] == 0
    # right differences: 6 of 6 are +-1; down: 0; both diagonals: 4 of 4 are +-1
    assert l1[1].item() == pytest.approx(1.0 + 0.0 + 1.0 + 1.0)
    assert l2[1].item() == pytest.approx(np.sqrt(6) + 0 + 2 + 2)
    assert pixel_norm(x).tolist() == pytest.approx([0.0, 3 ** 0.5])
