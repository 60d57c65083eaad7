"""Blurred baselines and the default mask size, scaled with the input.

I-GOS (Qi, Khorram, Li, AAAI 2020) and iGOS++ (Khorram, Lawson, Li, CHIL 2021) perturb an image
towards a strongly blurred copy of itself. The released code (khorrams/IGOS_pp, ``utils.py``)
blurs with OpenCV's ``GaussianBlur``: kernel 51 and sigma 50 for inputs under 500 px (224 px in
every experiment), 151 / 150 from 500 px and 201 / 200 from 800 px, with OpenCV's default border
(reflect-101). RISE (Petsiuk, Das, Saenko, BMVC 2018) inserts pixels into a milder blur, kernel 11
and sigma 5 at 224 px. Here both scale with the image side (``scaled_blur``) so a 32 px image is
blurred as much, relative to its size, as a 224 px one.

The blur runs on the images as the model sees them (normalised or not): a Gaussian kernel sums
to one and normalisation is affine per channel, so this equals the released blur-then-normalise
(less its rounding to uint8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGOS_BLUR", "RISE_BLUR", "blur", "default_mask_size", "gaussian_kernel",
           "scaled_blur"]

IGOS_BLUR = (51, 50.0)  # (kernel, sigma) of the released I-GOS / iGOS++ code at 224 px
RISE_BLUR = (11, 5.0)  # RISE's insertion substrate at 224 px
REFERENCE_SIZE = 224


def default_mask_size(height: int, width: int) -> int:
    """Cells per side of the I-GOS mask: 28 at 224 px as released, at most a quarter of the
    shorter side below that (8 at 32 px), so small images keep cells of 4 pixels."""
    return max(2, min(28, min(height, width) // 4))


def scaled_blur(side: int, reference: tuple[int, float] = IGOS_BLUR) -> tuple[int, float]:
    """``(kernel, sigma)`` for images whose shorter side is ``side`` pixels.

    With the I-GOS reference (51, 50): the released values from 500 px (151, 150) and 800 px
    (201, 200); below 500 px the 224 px values scaled linearly with the side (an odd kernel of
    at least 3). Any other reference is scaled linearly from 224 px."""
    if reference == IGOS_BLUR and side >= 800:
        return 201, 200.0
    if reference == IGOS_BLUR and side >= 500:
        return 151, 150.0
    kernel, sigma = reference
    scale = side / REFERENCE_SIZE
    k = max(3, int(round(kernel * scale)))
    k += 1 - k % 2  # odd
    return k, float(sigma * scale)


def gaussian_kernel(kernel: int, sigma: float, *, dtype=torch.float32, device=None):
    """The 1-D Gaussian of ``kernel`` taps (odd) and standard deviation ``sigma``, summing to
    one (as OpenCV's ``getGaussianKernel``)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"the blur kernel must be a positive odd number of pixels, got {kernel}")
    if not sigma > 0:
        raise ValueError(f"the blur sigma must be > 0, got {sigma}")
    x = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    w = torch.exp(-x * x / (2 * sigma * sigma))
    return (w / w.sum()).to(device=device, dtype=dtype)


def blur(images: torch.Tensor, kernel: int | None = None, sigma: float | None = None, *,
         reference: tuple[int, float] = IGOS_BLUR) -> torch.Tensor:
    """Gaussian blur of ``images`` (B, C, H, W), separable, reflect-101 border (OpenCV's).

    ``kernel`` and ``sigma`` default to ``scaled_blur(min(H, W), reference)``. A kernel wider
    than the image allows for the reflected border is narrowed to ``2 * side - 1``."""
    if images.ndim != 4:
        raise ValueError(f"blur expects images (B, C, H, W), got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    k0, s0 = scaled_blur(min(h, w), reference)
    kernel = k0 if kernel is None else int(kernel)
    sigma = s0 if sigma is None else float(sigma)
    kernel = min(kernel, 2 * min(h, w) - 1)
    if kernel < 3:
        return images.clone()
    taps = gaussian_kernel(kernel, sigma, dtype=images.dtype, device=images.device)
    c = images.shape[1]
    pad = kernel // 2
    x = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)
