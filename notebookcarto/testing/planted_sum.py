"""A hand-built network whose class score is a sum of independent concepts: ground truth for XNN.

The images hold one input channel per concept; each concept appears (as a square of ones) or
not, independently of the others, over faint noise. Layer ``concepts`` (3x3 convolution + ReLU)
has one planted channel per concept, the local mean of its input channel less a threshold above
the noise: exactly zero where the concept is absent, positive on it. Filler channels read all
inputs with small random weights. After a global mean pool, the logit of class 0 is the sum of
the planted channels' means (each concept adds evidence on its own); class 1 reads the fillers.
An explanation of class 0 by a few x-features should find one x-feature per planted channel.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PlantedSumNet", "planted_sum_data"]

NOISE = 0.1  # the input's noise lies in [0, NOISE): the planted channels stay exactly zero on it
THRESHOLD = 0.2
FILLER_SCALE = 0.02


class PlantedSumNet(nn.Module):
    """``concepts`` (3x3 conv + ReLU) -> global mean pool -> ``fc`` (2 classes).

    Attributes:
        planted: the channels of ``concepts`` that detect concept 0, 1, ... (channel k: concept
            k, read from input channel k).
        layer: the layer holding them (``"concepts"``).
        target: the class whose logit is the sum of the planted channels' means (0).
    """

    layer = "concepts"
    target = 0

    def __init__(self, n_concepts: int = 3, n_filler: int = 5, seed: int = 0):
        super().__init__()
        p, f = n_concepts, n_filler
        self.planted = list(range(p))
        self.concepts = nn.Sequential(nn.Conv2d(p, p + f, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(p + f, 2)
        gen = torch.Generator().manual_seed(seed)
        conv = self.concepts[0]
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            for ch in range(p):
                conv.weight[ch, ch] = 1.0 / 9  # the local mean of its own input channel
                conv.bias[ch] = -THRESHOLD
            conv.weight[p:] = FILLER_SCALE * torch.randn(f, p, 3, 3, generator=gen)
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, :p] = 1.0
            self.fc.weight[1, p:] = torch.randn(f, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.concepts(x)), 1))


def planted_sum_data(n: int, *, n_concepts: int = 3, size: int = 16, seed: int = 0):
    """``(images, present)``: float32 (n, n_concepts, size, size) and bool (n, n_concepts), each
    concept present with probability 1/2 as a square of side 3..size/2 at a random place."""
    gen = torch.Generator().manual_seed(seed)
    images = NOISE * torch.rand(n, n_concepts, size, size, generator=gen)
    present = torch.rand(n, n_concepts, generator=gen) < 0.5
    for i, k in present.nonzero().tolist():
        side = int(torch.randint(3, size // 2 + 1, (1,), generator=gen))
        top, left = torch.randint(0, size - side + 1, (2,), generator=gen).tolist()
        images[i, k, top:top + side, left:left + side] = 1.0
    return images, present
