"""Deletion and insertion metrics of saliency maps, batched, for any heatmap.

Rank the cells (or pixels) of an image by a heatmap, most salient first; delete them (replace
them by a substrate) or insert them (into the substrate) a step at a time; record the target's
softmax probability after each step. The area under the deletion curve is low and the area
under the insertion curve high when the ranking puts what the model needs first (Petsiuk, Das,
Saenko: "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018).

Protocols differ between papers, so each is named:

- ``CellProtocol`` ("cells"), the I-GOS / iGOS++ code's (khorrams/IGOS_pp ``methods_helper.
  metric``): the heatmap is averaged to s x s cells (28 at 224 px, ``default_mask_size``), cells
  are removed ``step`` at a time (``cells // 50``: 15 at 28 x 28, 53 steps), the hard 0/1 cell
  mask is upsampled bilinearly (corners aligned) and composed with the blurred baseline of
  ``baseline.blur`` for both curves: deletion Phi(I, B, m), insertion Phi(B, I, m).
- ``PixelProtocol`` ("pixels"), RISE's (eclique/RISE ``evaluation.py``): the heatmap is
  upsampled to the image, pixels are replaced ``ceil(H W / steps)`` at a time (28 steps: 224 x 8
  pixels at 224 px), deletion into zeros of the model's input (RISE's ``torch.zeros_like``: the
  mean colour for normalised inputs), insertion into a Gaussian blur (kernel 11, sigma 5 at
  224 px, scaled with the image).

Both curves hold every step with both end points (t = 0: the image or the substrate; the last:
all removed or inserted) and the AUC is the trapezoid over the fractions actually removed
(the last step may remove fewer). The released I-GOS code drops the t = 0 point, sums right
Riemann rectangles, and in its last step adds the raw pixel count instead of the score (an
operator-precedence slip: a constant score of 0.2 gives an AUC of 0.2041 at 28 x 28); RISE
assumes equal steps. Ties in a heatmap are ranked in flat (row-major) order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .baseline import IGOS_BLUR, RISE_BLUR, blur, default_mask_size
from .masks import compose, upsample
from .model import PassCounts, Scorer, check_targets
from .objective import CPU_ROWS

__all__ = ["CellProtocol", "Curves", "PixelProtocol", "auc", "deletion_insertion", "protocol_of",
           "random_heatmaps", "to_heatmaps"]


@dataclass(frozen=True)
class CellProtocol:
    """The I-GOS code's protocol: ``size`` cells per side (default ``default_mask_size``),
    ``step`` cells a step (default ``max(1, cells // 50)``), the blurred baseline (``kernel``,
    ``sigma`` default to the I-GOS blur scaled with the image) for both curves."""

    size: int | None = None
    step: int | None = None
    kernel: int | None = None
    sigma: float | None = None
    name = "cells"

    def resolved(self, height: int, width: int) -> "CellProtocol":
        size = default_mask_size(height, width) if self.size is None else int(self.size)
        if size < 1 or size > min(height, width):
            raise ValueError(f"the cell protocol's grid of {size} x {size} cells does not fit "
                             f"images of {height} x {width} px")
        step = max(1, size * size // 50) if self.step is None else int(self.step)
        if step < 1:
            raise ValueError(f"step must be >= 1 cell, got {step}")
        return CellProtocol(size, step, self.kernel, self.sigma)

    def as_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "step": self.step, "kernel": self.kernel,
                "sigma": self.sigma}


@dataclass(frozen=True)
class PixelProtocol:
    """RISE's protocol: pixels, ``steps`` steps (28), deletion into zeros, insertion into a
    blur (``kernel``, ``sigma`` default to RISE's 11 / 5 at 224 px, scaled)."""

    steps: int = 28
    kernel: int | None = None
    sigma: float | None = None
    name = "pixels"

    def resolved(self, height: int, width: int) -> "PixelProtocol":
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        return self

    def as_dict(self) -> dict:
        return {"name": self.name, "steps": self.steps, "kernel": self.kernel,
                "sigma": self.sigma}


def protocol_of(protocol) -> CellProtocol | PixelProtocol:
    """A protocol from its name ("cells", "pixels") or itself."""
    if isinstance(protocol, (CellProtocol, PixelProtocol)):
        return protocol
    if protocol == "cells":
        return CellProtocol()
    if protocol == "pixels":
        return PixelProtocol()
    raise ValueError(f"protocol must be 'cells' (the I-GOS code's), 'pixels' (RISE's), a "
                     f"CellProtocol or a PixelProtocol, got {protocol!r}")


@dataclass
class Curves:
    """Deletion and insertion curves of n images: ``fractions`` (steps + 1,) removed or
    inserted, ``deletion`` and ``insertion`` (n, steps + 1) target probabilities, their
    trapezoid AUCs (n,), and the protocol (resolved, as a dict)."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    protocol: dict

    def __repr__(self) -> str:
        return (f"Curves({len(self.deletion)} images, {len(self.fractions)} points, "
                f"protocol {self.protocol['name']!r}, deletion AUC "
                f"{float(np.mean(self.deletion_auc)):.4f}, insertion AUC "
                f"{float(np.mean(self.insertion_auc)):.4f})")


def auc(fractions, scores) -> np.ndarray:
    """Trapezoid area under ``scores`` (..., k) over ``fractions`` (k,)."""
    f = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    return ((y[..., 1:] + y[..., :-1]) * 0.5 * np.diff(f)).sum(-1)


def to_heatmaps(heatmaps, n: int) -> torch.Tensor:
    """Heatmaps as a float tensor (n, h, w): a tensor or array (n, h, w), or (n, C, h, w)
    attributions (summed over channels, in absolute value, as Captum's ``visualization``
    does for "absolute_value")."""
    h = torch.as_tensor(np.asarray(heatmaps) if not isinstance(heatmaps, torch.Tensor)
                        else heatmaps)
    if h.ndim == 4:
        h = h.abs().sum(1)
    if h.ndim != 3 or h.shape[0] != n:
        raise ValueError(f"heatmaps must be (n, h, w) or (n, C, h, w) for {n} images, got "
                         f"shape {tuple(h.shape)}")
    if not torch.isfinite(h.float()).all():
        raise ValueError("heatmaps hold NaN or infinite values")
    return h.detach().float()


def random_heatmaps(n: int, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Uniform random heatmaps (n, h, w): the random ordering every method must beat."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def deletion_insertion(model: nn.Module, images: torch.Tensor, heatmaps, targets, *,
                       protocol="cells", baselines=None, chunk_size: int | None = None,
                       progress: bool = False) -> Curves:
    """Deletion and insertion curves of ``heatmaps`` for ``images`` (n, C, H, W) and class
    ``targets`` (int or (n,)), all images and steps in shared forward passes of ``chunk_size``
    inputs.

    ``heatmaps``: (n, h, w) (higher is more salient; any resolution) or (n, C, h, w) attributions
    (see ``to_heatmaps``); an I-GOS mask M ranks by 1 - M. ``protocol``: "cells", "pixels" or a
    ``CellProtocol`` / ``PixelProtocol``. ``baselines`` (n, C, H, W) overrides the protocol's
    substrates (both curves). ``chunk_size`` defaults to ``objective.CPU_ROWS`` (32) inputs on
    a CPU (larger passes run slower there, see ``objective.chunk_rows``), 1024 on a GPU. The
    model is left as it was (``Scorer``)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or \
            not images.is_floating_point():
        raise ValueError("images must be a float tensor (n, C, H, W)")
    n, _, height, width = images.shape
    heat = to_heatmaps(heatmaps, n)
    rule = protocol_of(protocol).resolved(height, width)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    with Scorer(model) as scorer, torch.no_grad():
        if chunk_size is None:
            chunk_size = 1024 if scorer.device.type == "cuda" else CPU_ROWS
        x = images.to(scorer.device)
        classes = scorer.logits(x[:1]).shape[1]
        scorer.counts = PassCounts()
        t = check_targets(targets, n, classes).to(scorer.device)
        if isinstance(rule, CellProtocol):
            fractions, insert_into, delete_into, keep_of = _cells(x, heat, rule, baselines)
        else:
            fractions, insert_into, delete_into, keep_of = _pixels(x, heat, rule, baselines)
        k = len(fractions)
        rows = [(curve, i, j) for curve in range(2) for i in range(n) for j in range(k)]
        scores = torch.zeros(2, n, k, dtype=torch.float64)
        bar = tqdm(total=len(rows), desc="deletion / insertion", disable=not progress,
                   leave=False)
        for r0 in range(0, len(rows), chunk_size):
            part = rows[r0:r0 + chunk_size]
            curve = torch.tensor([c for c, _, _ in part])
            image = torch.tensor([i for _, i, _ in part])
            step = torch.tensor([j for _, _, j in part])
            on = image.to(x.device)
            keep = keep_of(on, step).to(x.dtype)  # 1: not yet deleted / inserted
            deleting = _col(curve == 0, x)
            # deletion: Phi(I, D, keep); insertion: Phi(S, I, keep)
            composite = compose(torch.where(deleting, x[on], insert_into[on]),
                                torch.where(deleting, delete_into[on], x[on]), keep)
            probs = scorer.probabilities(composite, t[on])
            scores[curve, image, step] = probs.double().cpu()
            bar.update(len(part))
        bar.close()
    f = fractions.cpu().numpy()
    out = scores.numpy()
    return Curves(f.astype(np.float32), out[0].astype(np.float32), out[1].astype(np.float32),
                  auc(f, out[0]).astype(np.float32), auc(f, out[1]).astype(np.float32),
                  rule.as_dict())


def _col(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.to(like.device).view(-1, 1, 1, 1)


def _order(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every position (n, P) by descending score, ties in flat order: 0 = first."""
    order = torch.sort(-scores, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order).contiguous())
    return rank


def _cells(x, heat, rule: CellProtocol, baselines):
    n, _, height, width = x.shape
    s, step = rule.size, rule.step
    grid = _resample(heat, (s, s))
    rank = _order(grid.flatten(1)).to(x.device)  # (n, s*s)
    total = s * s
    counts = torch.tensor([min(j * step, total) for j in range(math.ceil(total / step) + 1)])
    substrate = (blur(x, rule.kernel, rule.sigma, reference=IGOS_BLUR) if baselines is None
                 else _baselines(baselines, x))

    def keep_of(image, j):
        removed = counts[j].to(x.device)
        hard = (rank[image] >= removed.view(-1, 1)).to(x.dtype).view(-1, 1, s, s)
        return upsample(hard, (height, width))

    return counts.double() / total, substrate, substrate, keep_of


def _pixels(x, heat, rule: PixelProtocol, baselines):
    n, _, height, width = x.shape
    total = height * width
    step = math.ceil(total / rule.steps)
    pixel_heat = _resample(heat, (height, width))
    rank = _order(pixel_heat.flatten(1)).to(x.device)
    counts = torch.tensor([min(j * step, total) for j in range(math.ceil(total / step) + 1)])
    if baselines is None:
        deleted = torch.zeros_like(x)
        inserted = blur(x, rule.kernel, rule.sigma, reference=RISE_BLUR)
    else:
        deleted = inserted = _baselines(baselines, x)

    def keep_of(image, j):
        removed = counts[j].to(x.device)
        return (rank[image] >= removed.view(-1, 1)).view(-1, 1, height, width)

    return counts.double() / total, inserted, deleted, keep_of


def _resample(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Heatmaps (n, h, w) to ``size``: area means when shrinking, bilinear when growing."""
    if tuple(heat.shape[-2:]) == tuple(size):
        return heat
    h = heat.unsqueeze(1).double()
    if heat.shape[-2] >= size[0] and heat.shape[-1] >= size[1]:
        out = F.adaptive_avg_pool2d(h, size)
    else:
        out = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
    return out.squeeze(1)


def _baselines(baselines, x):
    b = torch.as_tensor(baselines).to(device=x.device, dtype=x.dtype)
    if b.shape == x.shape[1:]:
        b = b.expand_as(x)
    if b.shape != x.shape:
        raise ValueError(f"baselines of shape {tuple(b.shape)} for images {tuple(x.shape)}")
    return b
