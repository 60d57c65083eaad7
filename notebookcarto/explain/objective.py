"""The integrated-gradient path objective of I-GOS and iGOS++, for many images at once.

For a mask u (upsampled to the image) the path score of a deletion is
S(I, B, u) = 1/N sum_{i=1..N} f_c(Phi(I, B, (i/N) u) + e_i), the target's softmax probability
averaged along the straight path from the baseline B to the masked image, with Gaussian noise e_i
at every point (N = 20 and sigma = 0.2 in the released code). An insertion swaps the roles,
S(B, I, u): the image appears where the mask is 0. The gradient of S with respect to the mask is
the integrated gradient that I-GOS descends instead of the plain gradient (Qi, Khorram, Li,
AAAI 2020, section 3.2).

``PathObjective`` evaluates sums of such scores (one ``Pass`` each: deletion or insertion,
through the product of some of the masks, with a sign) for many images and many candidate masks
per image in a few large forward passes: every (image, candidate, pass, path point) is one row,
and rows are run ``chunk`` at a time whatever image they belong to. The released code explains
one image at a time (``methods_helper.integrated_gradient`` loops over images).

Noise is drawn per image, from that image's own generator, one tensor (passes x N, C, H, W) per
candidate mask and per evaluation, so an image receives the same noise however the images are
batched or the rows chunked: the batched run equals a loop over single images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masks import upsample
from .model import Scorer, saved_bytes_per_input

__all__ = ["CPU_ROWS", "Pass", "PathObjective", "chunk_rows", "image_generators"]

# model inputs per pass on a CPU at most (see chunk_rows)
CPU_ROWS = 32


@dataclass(frozen=True)
class Pass:
    """One path: ``kind`` "deletion" (Phi(I, B, u)) or "insertion" (Phi(B, I, u)), u the
    product of the masks numbered in ``masks``, counted with ``sign`` in the objective."""

    kind: str
    masks: tuple[int, ...]
    sign: float


def image_generators(image_ids, seed: int, device) -> list[torch.Generator]:
    """One generator per image, seeded from (``seed``, image id): an image draws the same
    noise in any batch."""
    out = []
    for i in image_ids:
        g = torch.Generator(device=device)
        g.manual_seed((int(seed) * 1_000_003 + int(i)) % (2**63 - 1))
        out.append(g)
    return out


def chunk_rows(scorer: Scorer, images: torch.Tensor, *, memory: int | None = None,
               cap: int | None = None) -> int:
    """Rows (model inputs) per forward pass that fit in ``memory`` bytes: what autograd keeps per
    input (measured on one probe input) plus the composite, its noise and gradient. Defaults:
    512 MiB and at most ``CPU_ROWS`` (32) rows on a CPU, half the free memory and at most 2048
    rows on a GPU.

    On a CPU larger passes run slower once their maps outgrow the caches (channels-last, one
    thread, two cores): the playground CNN's forward and backward pass cost 0.27 ms an input
    at 32 rows and 0.41 ms at 128, the CIFAR ResNet-20's 1.84 and 2.09 ms; from 16 to 64 rows
    the cost is about flat."""
    device = images.device
    if memory is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            memory = free // 2
        else:
            memory = 512 << 20
    if cap is None:
        cap = 2048 if device.type == "cuda" else CPU_ROWS
    per_input = saved_bytes_per_input(scorer, images) + 4 * images[0].numel() * \
        images.element_size()
    return int(max(1, min(cap, memory // per_input)))


class PathObjective:
    """Sums of signed path scores for images (B, C, H, W), baselines and targets (B,).

    ``objective(masks, subset)``: masks (n, T, K, s, s) for the images ``subset`` (n indices
    into the batch), T candidate masks per image and K masks per candidate; returns (n, T):
    sum over ``passes`` of sign * S. With ``grad_scale``, masks must be a leaf that requires
    grad (T = 1), and ``grad_scale`` times the sum of the returned scores is back-propagated
    into ``masks.grad``, chunk by chunk.
    """

    def __init__(self, scorer: Scorer, images: torch.Tensor, baselines: torch.Tensor,
                 targets: torch.Tensor, passes, *, points: int, noise: float,
                 generators: list, chunk: int):
        self.scorer, self.images, self.baselines, self.targets = scorer, images, baselines, \
            targets
        self.diff = images - baselines
        self.passes = tuple(passes)
        self.points, self.noise, self.generators, self.chunk = points, noise, generators, chunk
        dev, dt = images.device, images.dtype
        self.deletion = torch.tensor([p.kind == "deletion" for p in self.passes], device=dev)
        self.direction = torch.where(self.deletion, 1.0, -1.0).to(dt)
        self.weight = torch.tensor([p.sign for p in self.passes], device=dev, dtype=dt) / points
        self.scale = torch.arange(1, points + 1, device=dev, dtype=dt) / points

    def __call__(self, masks: torch.Tensor, subset: torch.Tensor,
                 grad_scale: float | None = None) -> torch.Tensor:
        n, t, k = masks.shape[:3]
        p_count, points = len(self.passes), self.points
        per = p_count * points  # rows of one candidate
        total = n * t * per
        flat = masks.reshape(n * t, k, *masks.shape[-2:])
        size = self.images.shape[-2:]
        scores = torch.zeros(n * t, device=masks.device, dtype=masks.dtype)
        noise = {}
        for r0 in range(0, total, self.chunk):
            rows = torch.arange(r0, min(total, r0 + self.chunk), device=masks.device)
            cand, p, i = rows // per, (rows // points) % p_count, rows % points
            first, last = int(cand[0]), int(cand[-1])
            image = subset[cand // t]
            with torch.set_grad_enabled(grad_scale is not None):
                up = upsample(flat[first:last + 1], size)  # (G, K, H, W)
                through = torch.stack([up[:, list(ps.masks)].prod(1) for ps in self.passes], 1)
                u = through[cand - first, p] * self.scale[i].view(-1, 1, 1)
                start = torch.where(self.deletion[p].view(-1, 1, 1, 1), self.baselines[image],
                                    self.images[image])
                x = start + (self.direction[p].view(-1, 1, 1) * u).unsqueeze(1) * \
                    self.diff[image]
                if self.noise:
                    x = x + self._noise(noise, cand, rows, per, subset, t, first, last)
                prob = self.scorer.probabilities(x, self.targets[image])
                part = prob * self.weight[p]
                if grad_scale is not None:
                    (part.sum() * grad_scale).backward()
            scores.index_add_(0, cand, part.detach())
        return scores.view(n, t)

    def _noise(self, cache: dict, cand, rows, per, subset, t, first, last) -> torch.Tensor:
        """The noise of the chunk's rows; each candidate's (passes x N, C, H, W) tensor is drawn
        from its image's generator when first needed and dropped once its rows are done."""
        shape = (per, *self.images.shape[1:])
        parts = []
        for c in range(first, last + 1):
            if c not in cache:
                g = self.generators[int(subset[c // t])]
                cache[c] = torch.randn(shape, generator=g, device=self.images.device,
                                       dtype=self.images.dtype).mul_(self.noise)
            lo = max(int(rows[0]) - c * per, 0)
            hi = min(int(rows[-1]) + 1 - c * per, per)
            parts.append(cache[c][lo:hi])
        for c in [c for c in cache if c < last]:
            del cache[c]
        return torch.cat(parts) if len(parts) > 1 else parts[0]
