"""A hand-built network whose channels are exact detectors of playground colours.

Used as ground truth for tests: the planted channels of layer ``detect`` fire
exactly on the (3x3-dilated) pixels of one colour and are exactly zero on any
image without that colour.

How it is exact: every object pixel of the playground has one of 12 exact
values (a palette colour or its dark texture phase) and background pixels lie
in known bounded boxes (gradient + bounded noise). For each planted colour a
1x1 conv + ReLU (``pixels``) is positive on that colour's two values and
negative on all other object values and all background boxes (weights found by
a small linear program, margins checked by the tests). ``detect`` then sums
the indicator over a 3x3 window with positive weights, so its response is > 0
exactly where a pixel of the colour lies within one pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from ..datasets.playground import PALETTE, PALETTE_DARK, ConceptPlayground

__all__ = ["PlantedNet", "planted_model"]

# Colour indicator: relu(gain * (w . rgb + b)), rgb in [0, 1].
DETECTORS: dict[str, tuple[tuple[float, float, float], float]] = {
    "red": ((0.24, -1.0, -0.71), 0.089),
    "yellow": ((0.0, 0.07, -1.0), 0.008),
    "blue": ((-1.0, -0.25, 0.53), -0.012),
    "green": ((-1.0, 0.25, -0.22), 0.036),
}
FILLER_SCALE = 0.01  # std of filler weights: responses stay far below the detectors'


class PlantedNet(nn.Module):
    """``pixels`` (1x1 conv + ReLU) -> ``detect`` (3x3 conv + ReLU) -> global max pool -> ``fc``.

    Attributes:
        planted: channel of ``detect`` -> concept name it detects exactly.
        class_channel: class index -> the planted channel its logit reads.
        layer: name of the layer holding the planted channels (``"detect"``).
    """

    layer = "detect"

    def __init__(self, concepts: list[str], num_classes: int, class_channel: dict[int, int],
                 n_filler: int = 4, seed: int = 0):
        super().__init__()
        unknown = [c for c in concepts if c not in DETECTORS]
        if unknown:
            raise ValueError(f"no exact detector for {unknown}; choose from {sorted(DETECTORS)}")
        for k, ch in class_channel.items():
            if not (0 <= k < num_classes and 0 <= ch < len(concepts)):
                raise ValueError(f"class_channel entry {k} -> {ch} is out of range "
                                 f"({num_classes} classes, {len(concepts)} planted channels)")
        p, f = len(concepts), n_filler
        self.planted: dict[int, str] = dict(enumerate(concepts))
        self.class_channel: dict[int, int] = dict(class_channel)
        self.pixels = nn.Sequential(nn.Conv2d(3, p, 1), nn.ReLU())
        self.detect = nn.Sequential(nn.Conv2d(p + 3, p + f, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(p + f, num_classes)

        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for ch, name in self.planted.items():
                w, b = DETECTORS[name]
                w = torch.tensor(w, dtype=torch.float64)
                gain = 1.0 / _min_score(name, w, b)  # weakest colour phase gives exactly 1
                self.pixels[0].weight[ch, :, 0, 0] = (gain * w).float()
                self.pixels[0].bias[ch] = gain * b
            conv = self.detect[0]
            conv.weight.zero_()
            conv.bias.zero_()
            for ch in range(p):
                conv.weight[ch, ch] = 1.0  # sum of its own indicator over 3x3
            # fillers read the centred RGB input with small random weights
            conv.weight[p:, p:] = FILLER_SCALE * torch.randn(f, 3, 3, 3, generator=gen)
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            planted_classes = set(class_channel)
            for k in range(num_classes):
                if k in planted_classes:
                    self.fc.weight[k, class_channel[k]] = 1.0
                else:
                    self.fc.weight[k, p:] = torch.randn(f, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.pixels(x), x - 0.5], dim=1)
        return self.fc(torch.flatten(self.pool(self.detect(h)), 1))


def _min_score(name: str, w: torch.Tensor, b: float) -> float:
    rgb = torch.tensor([PALETTE[name], PALETTE_DARK[name]], dtype=torch.float64) / 255.0
    return float((rgb @ w + b).min())


def planted_model(dataset: ConceptPlayground, concepts=("red", "yellow", "blue", "green"),
                  n_filler: int = 4, seed: int = 0) -> PlantedNet:
    """Build the planted net for ``dataset`` (deterministic; any image size).

    Each planted colour is read by the first class (not already taken) whose
    template requires an object of exactly that colour.
    """
    if not isinstance(dataset, ConceptPlayground):
        raise TypeError(f"planted_model needs a ConceptPlayground, got {type(dataset).__name__}")
    concepts = list(concepts)
    class_channel: dict[int, int] = {}
    for ch, name in enumerate(concepts):
        for k, template in enumerate(dataset.templates):
            if k not in class_channel and any(s.colour == (name,) for s in template.objects):
                class_channel[k] = ch
                break
    return PlantedNet(concepts, len(dataset.classes), class_channel, n_filler=n_filler, seed=seed).eval()
