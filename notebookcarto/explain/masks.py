"""Masks over images: upsampling, composition and the smoothness terms of I-GOS and iGOS++.

A mask M has values in [0, 1] on a grid of s x s cells; 1 keeps the image, 0 shows the baseline:
Phi(I, B, M) = I * up(M) + B * (1 - up(M)) (Qi, Khorram, Li, AAAI 2020, eq. 1). ``up`` is
bilinear with aligned corners, as ``torch.nn.UpsamplingBilinear2d`` in the released code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bilateral_tv", "compose", "tv_norm", "upsample"]


def upsample(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks (..., s, s) bilinearly to ``size`` (H, W), corners aligned (as released)."""
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:])
    up = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=True)
    return up.reshape(*lead, *size)


def compose(image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Phi(image, baseline, mask) = image * mask + baseline * (1 - mask), broadcasting."""
    return image * mask + baseline * (1 - mask)


def tv_norm(masks: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Total variation of masks (B, s, s): mean |vertical difference|^beta plus mean
    |horizontal difference|^beta, per mask (I-GOS's TV, beta = 2)."""
    a = (masks[:, 1:, :] - masks[:, :-1, :]).abs().pow(beta).flatten(1).mean(1)
    b = (masks[:, :, 1:] - masks[:, :, :-1]).abs().pow(beta).flatten(1).mean(1)
    return a + b


def bilateral_tv(images: torch.Tensor, masks: torch.Tensor, *, beta: float = 2.0,
                 sigma: float = 0.01) -> torch.Tensor:
    """iGOS++'s bilateral total variation of masks (B, s, s) over images (B, C, H, W).

    Half of: the mask's TV on its grid plus, on the upsampled mask, every neighbour difference
    |dM|^beta weighted by exp(-d^2 / sigma), d^2 the mean over channels of the image's squared
    difference between the two pixels, so the mask may change freely across the image's edges
    (Khorram, Lawson, Li, CHIL 2021, eq. 6; tv_beta = 2, sigma = 0.01 as released). The released
    ``bilateral_tv_norm`` weighs the two directions differently (vertically the channel mean is
    taken before squaring, horizontally after the exponential); here both use the same weight.
    """
    grid = tv_norm(masks, beta)
    up = upsample(masks, images.shape[-2:])
    dv = (images[:, :, 1:, :] - images[:, :, :-1, :]).pow(2).mean(1)
    dh = (images[:, :, :, 1:] - images[:, :, :, :-1]).pow(2).mean(1)
    wv = torch.exp(-dv / sigma)
    wh = torch.exp(-dh / sigma)
    bv = (wv * (up[:, 1:, :] - up[:, :-1, :]).abs().pow(beta)).flatten(1).mean(1)
    bh = (wh * (up[:, :, 1:] - up[:, :, :-1]).abs().pow(beta)).flatten(1).mean(1)
    return 0.5 * (grid + bv + bh)
