"""A hand-built "two routes" network: one class fires when either of two separate concepts is
present, ground truth for structured attention graphs (``notebookcarto.explain.sag``).

``redness`` maps RGB to max(0, R - max(G, B)); ``stripiness`` marks horizontal stripes of a
4 px period (2 px bands): the smaller of two neighbouring |L(y) - L(y + 2)| on the luminance L,
less 0.3, so grey noise of contrast below 0.3 and the edge of a patch against a black
baseline give (almost) nothing. Each map is averaged over a window of the concept's size and
its spatial maximum divided by the value of a whole concept (``reference``), so a concept
scores 1 and a part of it its share. The route logit is ``gain`` x (max(red, stripes) - ``bias``)
and the other logit 0: the class needs 90 % of either concept, and the max routes the gradient
to the stronger one only.

``routes_images`` draws 32 px images on grey noise: a red square centred on the corner of the
four top-left cells of a 4 x 4 grid, a striped disc centred on the corner of the four
bottom-right cells, either or both (each concept covers its four cells in about equal parts,
so the only set of cells that holds 90 % of it is all four).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PlantedRoutesNet", "concept_cells", "routes_images"]

SIZE = 32
SQUARE = 12  # side of the red square, px
RADIUS = 6  # radius of the striped disc, px
LUMINANCE = (0.299, 0.587, 0.114)
RED = (0.9, 0.1, 0.1)


class Redness(nn.Module):
    def forward(self, x):
        return (x[:, 0:1] - x[:, 1:3].amax(1, keepdim=True)).clamp(min=0)


class Stripiness(nn.Module):
    def __init__(self, floor: float = 0.3):
        super().__init__()
        self.floor = floor
        self.register_buffer("luminance", torch.tensor(LUMINANCE).view(1, 3, 1, 1))

    def forward(self, x):
        lum = (x * self.luminance).sum(1, keepdim=True)
        d = (lum[:, :, 2:] - lum[:, :, :-2]).abs()
        both = torch.minimum(d[:, :, :-1], d[:, :, 1:])
        return F.pad((both - self.floor).clamp(min=0), (0, 0, 1, 2))


class PlantedRoutesNet(nn.Module):
    """Logits (B, 2): class 1 ("route") = ``gain`` x (max(red, stripes) - ``bias``), class 0 = 0.

    Attributes:
        routes: the concepts, ("red square", "striped disc").
        reference: the detectors' raw values on a whole concept (set at construction).
    """

    routes = ("red square", "striped disc")

    def __init__(self, gain: float = 20.0, bias: float = 0.8):
        super().__init__()
        self.gain, self.bias = float(gain), float(bias)
        self.redness = Redness()
        self.stripiness = Stripiness()
        self.register_buffer("reference", torch.ones(2))
        with torch.no_grad():
            self.reference.copy_(self.scores(routes_images([3], seed=0)[0])[0])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2): the two concepts' scores, 1 for a whole concept."""
        red = F.avg_pool2d(self.redness(x), SQUARE, 1).amax((1, 2, 3))
        stripes = F.avg_pool2d(self.stripiness(x), 2 * RADIUS, 1).amax((1, 2, 3))
        return torch.stack([red, stripes], 1) / self.reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gain * (self.scores(x).amax(1) - self.bias)
        return torch.stack([torch.zeros_like(z), z], 1)


def concept_cells(concept: int, grid: int = 4) -> list[int]:
    """The cells (row-major on a ``grid`` x ``grid`` grid of a 32 px image) that concept 0 (red
    square) or 1 (striped disc) covers."""
    half = grid // 2
    rows = range(half) if concept == 0 else range(half, grid)
    return [r * grid + c for r in rows for c in rows]


def routes_images(kinds, *, seed: int = 0) -> tuple[torch.Tensor, list]:
    """Images (n, 3, 32, 32) in [0, 1] and their concepts: ``kinds`` per image 1 (red square),
    2 (striped disc) or 3 (both); the grey noise comes from an own generator (``seed``)."""
    g = torch.Generator().manual_seed(seed)
    n = len(kinds)
    grey = 0.2 + 0.1 * torch.rand(n, 1, SIZE, SIZE, generator=g)
    x = grey.expand(n, 3, SIZE, SIZE).clone()
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    for i, kind in enumerate(kinds):
        if kind not in (1, 2, 3):
            raise ValueError(f"kinds are 1 (red square), 2 (striped disc) or 3 (both), got "
                             f"{kind!r}")
        if kind & 1:
            lo = SIZE // 4 - SQUARE // 2
            x[i, :, lo:lo + SQUARE, lo:lo + SQUARE] = torch.tensor(RED).view(3, 1, 1)
        if kind & 2:
            c = 3 * SIZE // 4 - 0.5
            disc = (yy - c) ** 2 + (xx - c) ** 2 <= RADIUS ** 2
            bands = ((yy // 2) % 2).float()
            x[i, :, disc] = bands[disc]
    return x, [[c for c in (0, 1) if kind & (c + 1)] for kind in kinds]
