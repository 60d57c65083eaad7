"""Random transforms drawn per image from each target's own generator, so a batch of targets
sees exactly the draws each target would see alone.

- VITAL: ``roll`` by up to ``jitter`` pixels in each direction (optionally a horizontal flip).
- Lucent (Olah et al., "Feature Visualization", Distill 2017; greentfrapp/lucent's
  ``standard_transforms``): constant padding, translation, scaling, rotation, translation. Lucent
  rescales the canvas and draws one transform per batch; here every image of the batch draws its
  own and the canvas keeps its (padded) size: scaling and rotation are about the centre, by one
  affine resampling (bilinear, zeros outside, as kornia's ``warp_affine``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["draw_lucent", "draw_roll", "lucent_transform", "roll"]


def draw_roll(generators, jitter: int, flip: bool) -> list[tuple[int, int, bool]]:
    """Per image: (shift down, shift right, flip), VITAL's jitter."""
    out = []
    for g in generators:
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist()
                  if jitter > 0 else (0, 0))
        flipped = bool(torch.rand((), generator=g) < 0.5) if flip else False
        out.append((dy, dx, flipped))
    return out


def roll(x: torch.Tensor, draws) -> torch.Tensor:
    """Each image rolled (and flipped) by its draw."""
    rows = []
    for image, (dy, dx, flipped) in zip(x, draws):
        image = torch.roll(image, shifts=(dy, dx), dims=(1, 2)) if dy or dx else image
        rows.append(image.flip(-1) if flipped else image)
    return torch.stack(rows)


def draw_lucent(generators, jitter: int, scales, angles, jitter2: int) -> list[tuple]:
    """Per image: (dx1, dy1, scale, angle in degrees, dx2, dy2), Lucent's draws (translations
    in 0..d-1 pixels as ``np.random.choice(d)``)."""
    out = []
    for g in generators:
        dx1, dy1 = _shift(g, jitter), _shift(g, jitter)
        scale, angle = _pick(g, scales), _pick(g, angles)
        dx2, dy2 = _shift(g, jitter2), _shift(g, jitter2)
        out.append((dx1, dy1, scale, angle, dx2, dy2))
    return out


def _pick(g: torch.Generator, values):
    return values[int(torch.randint(len(values), (), generator=g))]


def _shift(g: torch.Generator, d: int) -> int:
    return int(torch.randint(d, (), generator=g)) if d > 1 else 0


def lucent_transform(rgb: torch.Tensor, draws, pad: int, pad_value: float) -> torch.Tensor:
    """[0, 1] images (B, 3, H, W) -> padded, translated, scaled, rotated, translated
    (B, 3, H + 2 pad, W + 2 pad)."""
    if pad:
        rgb = F.pad(rgb, [pad] * 4, mode="constant", value=pad_value)
    b, _, h, w = rgb.shape
    theta = torch.stack([_inverse_affine(d, h, w) for d in draws]).to(rgb)
    grid = F.affine_grid(theta, (b, rgb.shape[1], h, w), align_corners=False)
    return F.grid_sample(rgb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _inverse_affine(draw, h: int, w: int) -> torch.Tensor:
    """affine_grid's theta (2, 3): output coordinates -> input coordinates, for the forward
    transform translate(dx1, dy1), scale, rotate, translate(dx2, dy2) about the centre."""
    dx1, dy1, scale, angle, dx2, dy2 = draw
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)

    def translate(dx, dy):
        return torch.tensor([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]], dtype=torch.float64)

    scale_rotate = torch.tensor([[scale * cos, -scale * sin, 0], [scale * sin, scale * cos, 0],
                                 [0, 0, 1.0]], dtype=torch.float64)
    forward = translate(dx2, dy2) @ scale_rotate @ translate(dx1, dy1)  # in pixels, centred
    to_normal = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))
    theta = to_normal @ torch.linalg.inv(forward) @ torch.linalg.inv(to_normal)
    return theta[:2].float()
