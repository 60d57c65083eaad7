"""The model's input space: what a pixel of [0, 1] RGB becomes after the data's normalisation.

Visualisations are optimised where the model reads them (normalised, if the data is) and shown
de-normalised. ``InputSpace(mean, std)`` converts both ways and gives the valid range that VITAL
clamps to: ``[(0 - mean) / std, (1 - mean) / std]`` per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.folder import IMAGENET_STD

__all__ = ["InputSpace"]


@dataclass(frozen=True)
class InputSpace:
    """``mean`` and ``std`` per channel (None: the model reads [0, 1] pixels as they are)."""

    mean: tuple | None = None
    std: tuple | None = None

    def __post_init__(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std (the data's Normalize), or neither")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def of(cls, normalization) -> "InputSpace":
        """From ``(mean, std)`` (as ``datasets.find_normalization`` returns) or None."""
        if normalization is None:
            return cls()
        mean, std = normalization
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def _stats(self, like: torch.Tensor):
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def from_unit(self, rgb: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels (B, C, H, W) -> the model's input."""
        if self.mean is None:
            return rgb
        mean, std = self._stats(rgb)
        return (rgb - mean) / std

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input -> [0, 1] pixels (not clipped)."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (1, C, 1, 1): the input range of [0, 1] pixels."""
        zeros = torch.zeros(1, like.shape[1], 1, 1, dtype=like.dtype, device=like.device)
        return self.from_unit(zeros), self.from_unit(zeros + 1)

    def display(self, x: torch.Tensor) -> np.ndarray:
        """The model's input (B, C, H, W) -> uint8 (B, H, W, C) for display."""
        rgb = self.to_unit(x.detach().float()).clamp(0, 1)
        return (rgb * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def imagenet_unit(self) -> float:
        """Model input units per ImageNet-normalised unit (the units VITAL's lr is given
        in): 1 for ImageNet-normalised data, about 0.226 for [0, 1] pixels."""
        ours = np.mean(1 / np.asarray(self.std)) if self.std is not None else 1.0
        return float(ours / np.mean(1 / np.asarray(IMAGENET_STD)))

    def to_json(self):
        return None if self.mean is None else {"mean": list(self.mean), "std": list(self.std)}
