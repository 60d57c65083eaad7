"""The paper's control: a random rotation of a layer's channel basis."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...capture import model_device

__all__ = ["ChannelMix", "ChannelRotation", "random_rotation", "rotate_channels"]


class ChannelMix(nn.Module):
    """Multiply the channel axis (dim 1) by a fixed matrix: out[:, i] = sum_j m[i, j] x[:, j]."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", self.matrix.to(x.dtype), x)


class ChannelRotation(nn.Module):
    """Wraps a layer: ``rotated`` outputs Q z (a random orthogonal mix of its channels), and
    the wrapper returns Q^T (Q z) = z, so the model computes the same function. Dissect
    ``"<layer>.rotated"`` to see the rotated basis."""

    def __init__(self, inner: nn.Module, q: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.rotated = ChannelMix(q)
        self.restored = ChannelMix(q.T)

    def forward(self, *args, **kwargs):
        return self.restored(self.rotated(self.inner(*args, **kwargs)))


def random_rotation(n: int, seed: int = 0) -> torch.Tensor:
    """A random orthogonal (n, n) matrix, uniform (Haar) over rotations and reflections."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).float()


def _out_channels(module: nn.Module) -> int | None:
    for sub in reversed(list(module.modules())):
        for attr in ("num_features", "out_channels"):
            if isinstance(getattr(sub, attr, None), int):
                return getattr(sub, attr)
    return None


def rotate_channels(model: nn.Module, layer: str, seed: int = 0,
                    channels: int | None = None) -> tuple[nn.Module, str]:
    """A copy of ``model`` whose ``layer`` is wrapped in a ``ChannelRotation`` (random,
    by ``seed``); returns (copy, name of the rotated layer to dissect). The copy computes the
    same function up to float rounding. ``channels`` defaults to the layer's last
    ``num_features`` / ``out_channels``."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise KeyError(f"unknown layer {layer!r}: use a module path from model.named_modules()")
    n = channels or _out_channels(modules[layer])
    if not n:
        raise ValueError(f"cannot tell how many channels {layer!r} outputs: pass channels=...")
    clone = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = clone.get_submodule(parent_name) if parent_name else clone
    inner = getattr(parent, child)
    q = random_rotation(n, seed).to(model_device(model))
    setattr(parent, child, ChannelRotation(inner, q))
    return clone, f"{layer}.rotated"
