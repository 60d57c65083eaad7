"""The ``Capture`` callback of an optimisation: keeps the wanted layers' outputs of the current
pass (with their graph) and ends the pass once all of them have run."""

from __future__ import annotations

import torch

from ..capture import StopForward

__all__ = ["LayerTap", "along_channels"]


class LayerTap:
    """``on_output`` of the one ``Capture`` of a run. ``want(layers)`` before each pass; after it
    ``outputs`` holds those layers' outputs (not detached). With ``stop=True`` the pass ends as
    soon as all of them ran (``Capture.forward`` then returns None)."""

    def __init__(self):
        self.wanted: set[str] = set()
        self.stop = True
        self.outputs: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}

    def want(self, layers, *, stop: bool = True) -> None:
        self.wanted, self.stop = set(layers), stop
        self.outputs, self._versions = {}, {}

    def __call__(self, name: str, output: torch.Tensor):
        if name in self.wanted:
            self.outputs[name] = output
            self._versions[name] = output._version
            if self.stop and len(self.outputs) == len(self.wanted):
                raise StopForward

    def check_unchanged(self) -> None:
        """Raise when a later module changed a kept output in place (its values would no longer
        be the layer's)."""
        changed = [n for n, t in self.outputs.items() if t._version != self._versions[n]]
        if changed:
            raise ValueError(f"the output of layer(s) {changed} is changed in place by a later "
                             "module (e.g. ReLU(inplace=True) or `out += x`): choose the module "
                             "after that change (e.g. the activation) as the layer")


def along_channels(weights: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """(B, C) weights shaped to broadcast over a layer output (B, C, H, W), (B, T, C) or (B, C)."""
    if output.ndim == 4:
        return weights[:, :, None, None]
    if output.ndim == 3:
        return weights[:, None, :]
    if output.ndim == 2:
        return weights
    raise ValueError(f"cannot weight the channels of an output of shape {tuple(output.shape)}")
