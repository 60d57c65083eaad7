"""A hand-built two-layer circuit on the concept playground: ground truth for influence and
attribution graphs.

``colour`` (earlier layer, full resolution) holds exact colour detectors: channel 0 fires (value
exactly 1) on red pixels, channel 1 on purple pixels, channel 2 on blue pixels (the distractor);
the other channels are weak fillers reading the centred RGB input. ``conjunction`` (later layer)
takes the global max of each ``colour`` channel and combines them with a 1x1 conv + ReLU: channel 0
is relu(red + purple - 1), i.e. exactly 1 on images holding a red AND a purple object, else 0;
channel 1 is relu(0.8 * blue), the distractor's own unit; the rest are weak fillers of the
fillers. The logit of the class "red circle + purple cross" reads only the AND channel, so the
blue distractor has no path to that class, although blue objects do appear in its images.

Red and blue use the exact detectors of ``notebookcarto.testing.planted``; the purple detector's
weights were found the same way (a small linear program over the playground's exact palette and
background colour boxes; the tests check its margins).
"""

from __future__ import annotations

import torch
from torch import nn

from ..datasets.playground import ConceptPlayground
from .planted import DETECTORS, FILLER_SCALE, _min_score

__all__ = ["CircuitNet", "circuit_model"]

PURPLE = ((0.09, -1.0, 0.32), -0.019)  # positive on both purple phases only
COLOURS = ("red", "purple", "blue")


def _detector(name: str):
    return PURPLE if name == "purple" else DETECTORS[name]


class CircuitNet(nn.Module):
    """``pixels`` (1x1 conv + ReLU: colour indicators) -> ``colour`` (1x1 conv + clamp to [0, 1])
    -> ``conjunction`` (global max pool, 1x1 conv, ReLU) -> ``fc``.

    Attributes: ``earlier`` / ``later`` (layer names), ``and_channel`` (0, in ``conjunction``),
    ``and_inputs`` ((0, 1): red and purple in ``colour``), ``distractor`` (2: blue in ``colour``),
    ``distractor_unit`` (1 in ``conjunction``), ``and_class`` and ``distractor_class`` (the
    classes whose logits read them), ``planted`` {colour channel: concept}.
    """

    earlier, later = "colour", "conjunction"
    and_channel, and_inputs, distractor, distractor_unit = 0, (0, 1), 2, 1

    def __init__(self, num_classes: int, and_class: int, distractor_class: int,
                 n_filler: int = 6, seed: int = 0):
        super().__init__()
        if not (0 <= and_class < num_classes and 0 <= distractor_class < num_classes) \
                or and_class == distractor_class:
            raise ValueError(f"and_class ({and_class}) and distractor_class ({distractor_class}) "
                             f"must be two different classes in 0..{num_classes - 1}")
        p = len(COLOURS)
        self.planted = dict(enumerate(COLOURS))
        self.and_class, self.distractor_class = and_class, distractor_class
        self.pixels = nn.Sequential(nn.Conv2d(3, p, 1), nn.ReLU())
        self.colour = nn.Sequential(nn.Conv2d(p + 3, p + n_filler, 1), nn.Hardtanh(0.0, 1.0))
        self.conjunction = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Conv2d(p + n_filler,
                                                                            2 + n_filler, 1),
                                         nn.ReLU())
        self.fc = nn.Linear(2 + n_filler, num_classes)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for ch, name in self.planted.items():
                w, b = _detector(name)
                w = torch.tensor(w, dtype=torch.float64)
                gain = 1.0 / _min_score(name, w, b)  # weakest phase of the colour gives 1
                self.pixels[0].weight[ch, :, 0, 0] = (gain * w).float()
                self.pixels[0].bias[ch] = gain * b
            conv = self.colour[0]
            conv.weight.zero_()
            conv.bias.zero_()
            for ch in range(p):
                conv.weight[ch, ch] = 1.0  # indicator >= 1 on the colour, clamped to exactly 1
            conv.weight[p:, p:, 0, 0] = FILLER_SCALE * torch.randn(n_filler, 3, generator=gen)
            conv = self.conjunction[1]
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, :2] = 1.0  # red AND purple
            conv.bias[0] = -1.0
            conv.weight[1, 2] = 0.8  # the distractor's unit
            conv.weight[2:, p:, 0, 0] = torch.randn(n_filler, n_filler, generator=gen)
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for k in range(num_classes):
                if k == and_class:
                    self.fc.weight[k, 0] = 10.0
                elif k == distractor_class:
                    self.fc.weight[k, 1] = 10.0
                else:
                    self.fc.weight[k, 2:] = torch.randn(n_filler, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.colour(torch.cat([self.pixels(x), x - 0.5], dim=1))
        return self.fc(torch.flatten(self.conjunction(h), 1))


def circuit_model(dataset: ConceptPlayground, n_filler: int = 6, seed: int = 0) -> CircuitNet:
    """The planted circuit for ``dataset`` (deterministic): the AND unit feeds the class whose
    template requires a red and a purple object, the blue distractor the first class whose
    template requires a blue object."""
    if not isinstance(dataset, ConceptPlayground):
        raise TypeError(f"circuit_model needs a ConceptPlayground, got {type(dataset).__name__}")

    def first(test):
        for k, template in enumerate(dataset.templates):
            colours = {s.colour for s in template.objects}
            if test(colours):
                return k
        raise ValueError("the playground has no class for the planted circuit")

    and_class = first(lambda c: ("red",) in c and ("purple",) in c)
    distractor_class = first(lambda c: ("blue",) in c)
    return CircuitNet(len(dataset.classes), and_class, distractor_class, n_filler=n_filler,
                      seed=seed).eval()
