"""VITAL's sort-matching loss and the image priors, per image (so a batch of targets is the sum
of independent problems).

Sort matching (Gorgun, Schiele, Fischer: VITAL, 2025): for each channel, sort the synthetic
image's values over positions and compare them with the reference images' sorted values averaged
over the images. The mean of sorted samples is the 1-D Wasserstein-2 barycentre of the reference
distributions, and the mean squared difference of two sorted samples of equal size is their
squared 1-D Wasserstein-2 distance (the optimal coupling in 1-D is monotone), so the loss is
W2^2(synthetic, barycentre) per channel.
"""

from __future__ import annotations

import torch

__all__ = ["pixel_norm", "reference_quantiles", "sort_matching", "total_variation"]


def reference_quantiles(features: torch.Tensor) -> torch.Tensor:
    """The target of sort matching: real features (N, C, P) sorted over positions and averaged
    over the N images -> (C, P)."""
    if features.ndim != 3 or features.shape[0] == 0:
        raise ValueError(f"expected reference features (N >= 1, C, P), got "
                         f"{tuple(features.shape)}")
    return features.sort(dim=-1).values.mean(0)


def sort_matching(synthetic: torch.Tensor, target: torch.Tensor,
                  channel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image sort-matching loss.

    Args:
        synthetic: (B, C, P) features of the synthetic images.
        target: (B, C, P) sorted targets (``reference_quantiles`` of each image's references).
        channel_weights: (B, C) weight of each channel's term, or None (all 1).

    Returns:
        (B,): mean over channels and positions of ``w_c * (sort(x)_p - t_p)^2``.
    """
    if synthetic.shape != target.shape or synthetic.ndim != 3:
        raise ValueError(f"synthetic {tuple(synthetic.shape)} and target "
                         f"{tuple(target.shape)} must both be (B, C, P)")
    squared = (synthetic.sort(dim=-1).values - target).pow(2).mean(-1)  # (B, C)
    if channel_weights is not None:
        squared = squared * channel_weights
    return squared.mean(-1)


def total_variation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, L2) total variation per image (B,), as VITAL's prior: differences to the right,
    down and along both diagonals; L1 is the sum of their mean absolute values, L2 the sum of
    their Euclidean norms."""
    diffs = (x[:, :, :, :-1] - x[:, :, :, 1:], x[:, :, :-1, :] - x[:, :, 1:, :],
             x[:, :, 1:, :-1] - x[:, :, :-1, 1:], x[:, :, :-1, :-1] - x[:, :, 1:, 1:])
    l1 = sum(d.abs().flatten(1).mean(1) for d in diffs)
    l2 = sum(d.flatten(1).norm(dim=1) for d in diffs)
    return l1, l2


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each image (B,), VITAL's L2 prior."""
    return x.flatten(1).norm(dim=1)
