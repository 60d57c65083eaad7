"""Models with known answers for the explanation tests.

``MeanPlanted``: the planted colour detectors of ``notebookcarto.testing.PlantedNet`` with a mean
pool, so a planted class's logit is ``gain`` x the mean of its colour detector and every other
logit is 0: the target's softmax depends on the pixels of its colour (within the detector's one
pixel of reach) and on nothing else, so the class evidence lies in known pixels.
``Tempered``: a model's logits times a factor (the planted circuit's AND class reads 10 x AND,
a softmax saturated beyond the reach of any gradient). ``PixelLinear``: logits that are
per-image sums of products, which give the same values for an image whatever batch it is in
(convolutions do not, on a CPU): brute-force loops must then agree exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from notebookcarto.datasets import ConceptPlayground


class MeanPlanted(nn.Module):
    def __init__(self, planted, gain: float = 3.0):
        super().__init__()
        self.planted = planted
        self.gain = gain
        k = planted.fc.out_features
        head = torch.zeros(k, planted.fc.in_features)
        for cls, channel in planted.class_channel.items():
            head[cls, channel] = gain
        self.register_buffer("head", head)

    def forward(self, x):
        p = self.planted
        h = p.detect(torch.cat([p.pixels(x), x - 0.5], 1))
        return h.mean((2, 3)) @ self.head.T

    def evidence(self, data: ConceptPlayground, image: int, cls: int) -> torch.Tensor:
        """Bool (H, W): the pixels the class's logit reads on ``image``."""
        colour = self.planted.planted[self.planted.class_channel[cls]]
        mask = torch.from_numpy(data.masks(image)[data.concept_names.index(colour)]).float()
        return F.max_pool2d(mask[None, None], 3, 1, 1)[0, 0] > 0


class Tempered(nn.Module):
    def __init__(self, model, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


class PixelLinear(nn.Module):
    def __init__(self, classes: int = 5, shape=(3, 16, 16), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(classes, *shape, generator=g) * 0.05)
        self.inner = nn.Identity()

    def forward(self, x):
        x = self.inner(x)
        return torch.stack([(x * w).flatten(1).sum(1) for w in self.weight], 1)


def cell_energy(saliency: torch.Tensor, evidence: torch.Tensor) -> float:
    """The energy pointing game at the mask's resolution: the share of the saliency (s, s) in
    the cells that hold evidence pixels (a mask cannot point finer than its cells)."""
    s = saliency.shape[-1]
    cells = F.adaptive_max_pool2d(evidence.float()[None, None], s)[0, 0] > 0
    return float((saliency * cells).sum() / saliency.sum())
