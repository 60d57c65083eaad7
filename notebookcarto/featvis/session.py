"""One hooked model for a whole run: the forward passes every method needs.

A ``Session`` holds the single ``Capture`` of a run (the model in eval mode, parameters frozen,
everything restored when the run ends), its ``LayerTap``, the forward order and width of the
hooked layers, and the input space. Methods ask it for features, target activations and
relevance maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..capture import Capture, as_channels
from .relevance import RelevancePass
from .space import InputSpace
from .tap import LayerTap
from .targets import Target

__all__ = ["Session", "probe"]


@dataclass
class Session:
    """The model hooked at ``layers`` (forward order), their channel counts ``widths`` and,
    per layer, the layer whose output tensor it shares (``same_as``: a block and its last
    activation), for images of ``size`` in ``space``."""

    model: nn.Module
    capture: Capture
    tap: LayerTap
    layers: list
    widths: dict
    same_as: dict
    space: InputSpace
    size: tuple
    device: torch.device
    dtype: torch.dtype = torch.float32
    lrp_eps: float = 1e-5
    canonizers: list | None = None
    _relevance: RelevancePass | None = field(default=None, repr=False)

    def forward(self, x):
        return self.capture.forward(x)

    def position(self, layer: str) -> int:
        """Forward position of a layer (layers sharing an output share a position)."""
        return self.layers.index(self.same_as.get(layer, layer))

    def features(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        """{layer: (B, C, P)} outputs (with their graph when grad is enabled)."""
        layers = list(layers)
        self.tap.want(layers)
        self.forward(x)
        self.tap.check_unchanged()
        out = {n: as_channels(self.tap.outputs[n]) for n in layers}
        self.tap.want(())
        return out

    def activations(self, x: torch.Tensor, targets: list[Target]) -> torch.Tensor:
        """(B,) image b's activation of ``targets[b]``: the spatial max of the direction's map
        for neurons and clusters, the logit for classes."""
        return self._unit_values(x, targets, lambda values: values.max())

    def objective(self, x: torch.Tensor, targets: list[Target]) -> torch.Tensor:
        """(B,) Lucent's objective: the mean over positions of the direction's map (neurons,
        clusters) or the logit (classes), with its graph."""
        return self._unit_values(x, targets, lambda values: values.mean())

    def _unit_values(self, x, targets: list[Target], reduce) -> torch.Tensor:
        layers = sorted({t.layer for t in targets if t.kind != "class"})
        need_logits = any(t.kind == "class" for t in targets)
        self.tap.want(layers, stop=not need_logits)
        out = self.forward(x)
        self.tap.check_unchanged()
        values = []
        for b, t in enumerate(targets):
            if t.kind == "class":
                values.append(out[b, t.channels[0]])
            else:
                maps = as_channels(self.tap.outputs[t.layer][b:b + 1])[0]  # (C, P)
                v = t.direction(maps.shape[0], maps.device, maps.dtype)
                values.append(reduce(v @ maps))
        self.tap.want(())
        return torch.stack(values)

    @property
    def relevance(self) -> RelevancePass:
        if self._relevance is None:
            self._relevance = RelevancePass(self.model, self.tap, eps=self.lrp_eps,
                                            canonizers=self.canonizers)
        return self._relevance


def probe(capture: Capture, tap: LayerTap, layers, x: torch.Tensor):
    """One forward pass of one image: (the layers in the order they finish, {layer: width},
    {layer: the earlier-listed layer with the same output tensor})."""
    tap.want(layers, stop=False)
    with torch.no_grad():
        capture.forward(x)
    outputs = tap.outputs
    # order of completion = order of insertion into the tap's dict
    order = list(outputs)
    widths = {n: (t.shape[2] if t.ndim == 3 else t.shape[1]) for n, t in outputs.items()}
    same_as = {}
    for i, name in enumerate(order):
        for earlier in order[:i]:
            if outputs[name] is outputs[earlier] or (
                    outputs[name].data_ptr() == outputs[earlier].data_ptr()
                    and outputs[name].shape == outputs[earlier].shape):
                same_as[earlier] = name  # a block's last module: the block's own output
    tap.want(())
    return order, widths, same_as
