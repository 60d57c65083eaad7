"""The Lucent-style baseline: maximise the unit over a Fourier-parameterised, colour-decorrelated
image seen through random transforms.

Olah, Mordvintsev, Schubert, "Feature Visualization" (Distill 2017), as Lucid and its PyTorch
port Lucent (greentfrapp/lucent) run it: ``render_vis`` with ``fft=True, decorrelate=True``,
the ``standard_transforms`` (pad, jitter, scale, rotate, jitter) and Adam; the objective is the
mean of the channel's map (``objectives.channel``), the mean of the direction's map for a
cluster, and the logit for a class. Lucent upsamples its 128 px parameterisation to 224 px for
ImageNet models; here the image has the size of the model's data and the transforms' pixel
constants are scaled to it (``options``).
"""

from __future__ import annotations

import math

import torch

from .fourier import FourierImage
from .jitter import draw_lucent, lucent_transform
from .options import LucentOptions
from .targets import Target

__all__ = ["LucentProblem"]


class LucentProblem:
    """One batch of targets (one image each), optimised by ``step``."""

    def __init__(self, session, targets: list[Target], generators, options: LucentOptions):
        self.session, self.targets, self.options = session, targets, options
        self.generators = generators
        self.image = FourierImage(generators, session.size, sd=options.sd,
                                  decay_power=options.decay_power, magic=options.magic,
                                  decorrelate=options.decorrelate,
                                  color_correlation=options.color_correlation,
                                  device=session.device, dtype=session.dtype)
        self.optimizer = torch.optim.Adam(self.image.parameters, lr=options.lr)
        self.last_loss = torch.full((len(targets),), math.nan)

    def step(self, i: int) -> None:
        o = self.options
        draws = draw_lucent(self.generators, o.jitter, o.scales, o.angles, o.jitter2)
        self.optimizer.zero_grad(set_to_none=True)
        seen = lucent_transform(self.image.rgb(), draws, o.pad, o.pad_value)
        loss = -self.session.objective(self.session.space.from_unit(seen), self.targets)
        loss.sum().backward()
        self.optimizer.step()
        self.last_loss = loss.detach()

    def inputs(self) -> torch.Tensor:
        """The images (untransformed) in the model's input space (B, 3, H, W)."""
        with torch.no_grad():
            return self.session.space.from_unit(self.image.rgb())
