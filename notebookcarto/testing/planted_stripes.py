"""A hand-built network with oriented-stripes detectors: ground truth for feature visualisation.

``grey`` turns RGB into luminance (1x1 convolution); ``stripes`` correlates it with two
zero-mean gratings of the playground's stripe period (channel 0: horizontal stripes, whose
intensity varies down the image; channel 1: vertical stripes), then a ReLU. A flat image gives
exactly 0, and a horizontal grating gives exactly 0 on the vertical channel (and vice versa):
each kernel is constant along its stripes' direction and sums to zero across them. The logits
are the channels' spatial maxima, so class k is "stripes of orientation k". A visualisation of
channel 0 (or class 0) should hold horizontal stripes: its spectral energy lies on the vertical
frequency axis.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ORIENTATIONS", "PlantedStripesNet", "planted_stripes_model", "stripe_period"]

ORIENTATIONS = ("horizontal", "vertical")
LUMINANCE = (0.299, 0.587, 0.114)


def stripe_period(size: int) -> int:
    """The playground's stripe period in pixels at image side ``size`` (4 px at 32 px)."""
    return 2 * max(2, size // 16)


class PlantedStripesNet(nn.Module):
    """``grey`` (1x1 conv) -> ``stripes`` (k x k conv + ReLU, k = two periods) -> global max
    pool -> logits (identity: logit k is channel k's maximum).

    Attributes:
        planted: channel of ``stripes`` -> the orientation it detects.
        layer: the layer holding the detectors (``"stripes"``).
        period: the grating period in pixels.
    """

    layer = "stripes"

    def __init__(self, period: int = 4):
        super().__init__()
        if period < 2:
            raise ValueError(f"the stripe period must be at least 2 px, got {period}")
        self.period = int(period)
        self.planted = dict(enumerate(ORIENTATIONS))
        k = 2 * self.period
        self.grey = nn.Conv2d(3, 1, 1, bias=False)
        self.stripes = nn.Sequential(nn.Conv2d(1, 2, k, padding=k // 2, bias=False), nn.ReLU())
        self.pool = nn.AdaptiveMaxPool2d(1)
        with torch.no_grad():
            self.grey.weight.copy_(torch.tensor(LUMINANCE).view(1, 3, 1, 1))
            profile = torch.tensor([math.cos(2 * math.pi * (i + 0.5) / self.period)
                                    for i in range(k)])
            profile = profile - profile.mean()
            grating = profile[:, None].expand(k, k) / k  # varies down the rows
            self.stripes[0].weight[0, 0] = grating
            self.stripes[0].weight[1, 0] = grating.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stripes(self.grey(x))), 1)


def planted_stripes_model(size: int = 32) -> PlantedStripesNet:
    """The stripes net for playground images of side ``size`` (deterministic)."""
    return PlantedStripesNet(stripe_period(size)).eval()
