"""A planted net whose dissection result is known exactly: ground truth for Network Dissection.

``PlantedNet`` (planted.py) is exact per pixel, but its ``detect`` layer fires on the colour's
mask dilated by one pixel, and its ``pixels`` layer gives two values per colour (the bright and
the dark texture phase): a threshold between them, or a tie at the threshold under the strict
``>``, changes the IoU. ``PlantedDissectNet`` has one dissectable layer, ``concepts``, at the
input resolution (= the playground's mask resolution, so no resampling), made of:

- planted channels ``0..P-1``: ``min(pixels, 1) * grade``, where ``pixels`` is PlantedNet's
  exact colour indicator (>= 1 on both phases of the colour, exactly 0 elsewhere) and ``grade``
  a fixed position ramp in [1, 1.5). The response is exactly 0 off the concept and > 1 on every
  concept pixel.
- position channels ``P..P+F-1``: input independent, > 0 at one image corner only. Playground
  objects never reach a corner (their centres stay one radius from the border), so the corner
  is always background.
- one dead channel (always 0).

Why the IoU is provable. Let ``f`` be the share of all positions covered by a planted concept.
With a top quantile (share of positions above the threshold) ``t`` with ``t > f`` plus the
sketch's rank error, more than ``1 - t`` of the channel's values are exactly 0, so its threshold
is exactly 0 and ``M = act > 0`` is the concept's mask: IoU = 1. (No unit can reach IoU 0.9 for
a concept covering more than ``t / 0.9`` of the positions: ``|M|`` is at most ``t`` of them. The
playground's colours cover 2-5% of the pixels, so ``t = 0.1`` is used for this ground truth; at
the default ``t = 0.005`` the grade keeps ``M`` the top positions inside the concept instead of
collapsing to an empty set on a tie.) A position channel fires on one pixel per image, always
background, so its intersection with any concept is at most the number of images N: IoU <=
N / G_c, tiny for every concept (backgrounds cover > 100 pixels per image on average). The dead
channel has an empty ``M``: IoU = 0.
"""

from __future__ import annotations

import torch
from torch import nn

from ..datasets.playground import ConceptPlayground
from .planted import planted_model

__all__ = ["CORNERS", "PlantedDissectNet", "planted_dissect_model"]

CORNERS = ((0, 0), (0, -1), (-1, 0), (-1, -1))


class PositionUnits(nn.Module):
    """``n`` input-independent channels; channel j is 1 at one image corner, 0 elsewhere."""

    def __init__(self, n: int = 4):
        super().__init__()
        if not 0 <= n <= len(CORNERS):
            raise ValueError(f"n must be in 0..{len(CORNERS)}, got {n}")
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.n, *x.shape[2:])
        for j in range(self.n):
            out[:, j, CORNERS[j][0], CORNERS[j][1]] = 1.0
        return out


def grade(height: int, width: int, device=None) -> torch.Tensor:
    """The position ramp (H, W) in [1, 1.5): distinct values, increasing in row-major order."""
    ramp = torch.arange(height * width, dtype=torch.float32, device=device) / (height * width)
    return (1.0 + 0.5 * ramp).reshape(height, width)


class PlantedDissectNet(nn.Module):
    """``pixels`` (PlantedNet's exact colour indicators) -> ``concepts`` (planted, position and
    dead channels; see the module docstring) -> global max pool -> ``fc``.

    Attributes:
        planted: channel of ``concepts`` -> concept name it detects exactly.
        fillers: channels that detect nothing (position channels and the dead one).
        class_channel: class index -> the planted channel its logit reads.
        layer: ``"concepts"``.
    """

    layer = "concepts"

    def __init__(self, dataset: ConceptPlayground, concepts=("red", "yellow", "blue", "green"),
                 n_position: int = 4):
        super().__init__()
        base = planted_model(dataset, concepts)
        p = len(base.planted)
        self.planted: dict[int, str] = dict(base.planted)
        self.class_channel: dict[int, int] = dict(base.class_channel)
        self.fillers: list[int] = list(range(p, p + n_position + 1))
        self.pixels = base.pixels
        self.position = PositionUnits(n_position)
        self.concepts = nn.Identity()  # the dissected layer: a hookable module
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(p + n_position + 1, len(dataset.classes))
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for k, ch in self.class_channel.items():
                self.fc.weight[k, ch] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        planted = self.pixels(x).clamp(max=1.0) * grade(height, width, x.device)
        dead = x.new_zeros(x.shape[0], 1, height, width)
        z = self.concepts(torch.cat([planted, self.position(x), dead], 1))
        return self.fc(torch.flatten(self.pool(z), 1))


def planted_dissect_model(dataset: ConceptPlayground, concepts=("red", "yellow", "blue", "green"),
                          n_position: int = 4) -> PlantedDissectNet:
    """Build the planted dissection net for ``dataset`` (deterministic; any image size)."""
    if not isinstance(dataset, ConceptPlayground):
        raise TypeError(f"planted_dissect_model needs a ConceptPlayground, got "
                        f"{type(dataset).__name__}")
    return PlantedDissectNet(dataset, concepts, n_position).eval()
