"""Layer-wise relevance propagation (LRP) from a target unit back to earlier layers, with zennit.

LRP (Bach et al., "On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation", PLoS ONE 2015; Montavon et al., "Explaining nonlinear classification
decisions with deep Taylor decomposition", Pattern Recognition 2017) redistributes a unit's value
layer by layer onto the units that contributed to it. As VITAL (Gorgun, Schiele, Fischer, 2025)
uses it for inner neurons:

- the initial relevance is the target channel's map (the cluster's members' maps weighted by
  their mean direction), all other channels zero;
- convolutions and linear layers use the z+ rule (zennit's ``ZPlus``: only positive
  contributions, stabiliser eps = 1e-5); batch norms and activations pass relevance unchanged;
  average pools use zennit's ``Norm``;
- at a residual sum the relevance is split by magnitude: the main branch gets
  ``|main| / (|main| + |shortcut|)`` of it, the shortcut the rest (``MagnitudeSplit``).

zennit attaches rules to modules; a residual sum written as ``out + shortcut(x)`` inside a
block's ``forward`` is no module, so autograd would hand the full relevance to both branches.
Canonizers (zennit's mechanism) re-route the sum through a ``zennit.layer.Sum`` module for the
blocks this module knows: notebookcarto's CIFAR ResNet ``BasicBlock`` and torchvision's
``BasicBlock`` / ``Bottleneck`` (zennit's own canonizers, without merging batch norms, which VITAL
passes through). Other models with residual sums need a zennit canonizer passed as
``canonizers=[...]``; every canonized model is checked to compute the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from zennit.canonizers import AttributeCanonizer
from zennit.core import BasicHook, Composite, Stabilizer
from zennit.layer import Sum
from zennit.rules import NoMod, Norm, Pass, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm, Linear

from ..capture import Capture, StopForward, as_channels, resolve_layers, split_call
from .tap import LayerTap, along_channels

__all__ = ["MagnitudeSplit", "RelevancePass", "lrp_composite", "lrp_relevance",
           "residual_canonizers"]


class MagnitudeSplit(BasicHook):
    """zennit rule for a ``Sum`` over stacked branches: branch i gets ``|x_i| / sum_j |x_j|`` of
    the sum's relevance (VITAL's split of residual flows by magnitude)."""

    def __init__(self, stabilizer=1e-5):
        stabilize = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[torch.abs],
            param_modifiers=[NoMod(param_keys=[])],
            output_modifiers=[lambda output: output],
            gradient_mapper=lambda out_grad, outputs: out_grad / stabilize(outputs[0]),
            reducer=lambda inputs, gradients: inputs[0] * gradients[0],
        )


def lrp_composite(eps: float = 1e-5, canonizers=()) -> Composite:
    """The zennit composite of VITAL's LRP: z+ for convolutions and linear layers, pass-through
    for batch norms and activations, ``Norm`` for average pools, ``MagnitudeSplit`` for sums."""
    def shift(z):  # z+ and magnitude denominators are >= 0: VITAL's z + eps (zennit's
        return z + eps  # sign-aware stabiliser gives the same there, at twice the cost)

    rules = ((Linear, ZPlus(stabilizer=shift)), (BatchNorm, Pass()), (Activation, Pass()),
             (Sum, MagnitudeSplit(shift)), (AvgPool, Norm(stabilizer=eps)))

    def module_map(ctx, name, module):
        for kinds, rule in rules:
            if isinstance(module, kinds):
                return rule
        return None

    return Composite(module_map=module_map, canonizers=list(canonizers))


# ----------------------------------------------------------------------- canonizers


def _is(module: nn.Module, module_path: str, name: str) -> bool:
    kind = type(module)
    return kind.__module__ == module_path and kind.__name__ == name


def _cifar_block_forward(self, x):
    """notebookcarto's CIFAR ``BasicBlock.forward`` with the residual sum as a ``Sum`` module."""
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return F.relu(self.featvis_sum(torch.stack([self.shortcut(x), out], dim=-1)))


def _cifar_blocks(name, module):
    if _is(module, "notebookcarto.models.resnet_cifar", "BasicBlock"):
        return {"forward": _cifar_block_forward.__get__(module), "featvis_sum": Sum()}
    return None


def residual_canonizers(model: nn.Module) -> list:
    """zennit canonizers for the residual blocks of ``model`` that this module knows."""
    out = []
    modules = list(model.modules())
    if any(_is(m, "notebookcarto.models.resnet_cifar", "BasicBlock") for m in modules):
        out.append(AttributeCanonizer(_cifar_blocks))
    if any(type(m).__module__ == "torchvision.models.resnet"
           and type(m).__name__ in ("BasicBlock", "Bottleneck") for m in modules):
        from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

        out += [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]
    return out


# ----------------------------------------------------------------------- the pass


class RelevancePass:
    """LRP passes through a model hooked by a ``Capture`` whose ``on_output`` is ``tap``.

    ``maps(forward, x, inject, layers)`` returns, per layer, the relevance (B, C, P) of that
    layer's output when the relevance ``inject[L]`` (B, C) direction x the layer-L map is
    started at each layer L (rows of zeros: no target there). The relevance is detached: VITAL
    treats it as a constant of each step.
    """

    def __init__(self, model: nn.Module, tap: LayerTap, *, eps: float = 1e-5, canonizers=None):
        self.model, self.tap = model, tap
        canonizers = residual_canonizers(model) if canonizers is None else list(canonizers)
        self.composite = lrp_composite(eps, canonizers)
        self._checked = False

    def maps(self, forward, x: torch.Tensor, inject: dict, layers) -> dict[str, torch.Tensor]:
        layers = list(layers)
        x = x.detach().requires_grad_(True)
        if not self._checked:
            self._check_canonizers(forward, x, set(layers) | set(inject))
        self.tap.want(set(layers) | set(inject), stop=False)
        with torch.enable_grad(), self.composite.context(self.model):
            handles = self._stop_after(self.tap.wanted)
            try:
                forward(x)
            finally:
                for handle in handles:
                    handle.remove()
            missing = [n for n in self.tap.wanted if n not in self.tap.outputs]
            if missing:
                raise RuntimeError(f"layer(s) {missing} did not run in the relevance pass")
            starts = [self.tap.outputs[n] for n in inject]
            seeds = [out.detach() * along_channels(inject[n].to(out.dtype), out)
                     for n, out in zip(inject, starts)]
            grads = torch.autograd.grad(starts, [self.tap.outputs[n] for n in layers],
                                        grad_outputs=seeds, allow_unused=True)
        out = {}
        for name, grad in zip(layers, grads):
            ref = self.tap.outputs[name]
            grad = torch.zeros_like(ref) if grad is None else grad
            out[name] = as_channels(grad.detach())
        self.tap.want(())
        return out

    def _stop_after(self, layers) -> list:
        """Forward hooks that end the pass once all ``layers`` ran. Registered after zennit's
        own hooks, so a layer that is itself a hooked module (a convolution) gets its output
        hook first (its rule needs it)."""
        def stop(module, args, output):
            if len(self.tap.outputs) == len(self.tap.wanted):
                raise StopForward

        modules = resolve_layers(self.model, sorted({split_call(n)[0] for n in layers}))
        return [m.register_forward_hook(stop) for m in modules.values()]

    def _check_canonizers(self, forward, x, layers) -> None:
        """The canonizers must not change what the model computes at the wanted layers."""
        self.tap.want(layers)
        with torch.enable_grad():  # zennit's hooks need a graph
            forward(x)
            plain = {n: t.detach().clone() for n, t in self.tap.outputs.items()}
            self.tap.want(layers)
            with self.composite.context(self.model):
                forward(x)
            changed = [n for n, t in self.tap.outputs.items()
                       if not torch.allclose(t.detach(), plain[n], rtol=1e-4, atol=1e-5)]
        if changed:
            raise ValueError(f"the LRP canonizers change the outputs of {changed}: a residual "
                             "block's forward differs from the one the canonizer assumes; pass "
                             "canonizers=[...] (zennit canonizers) that fit this model")
        self._checked = True


def lrp_relevance(model: nn.Module, x: torch.Tensor, layer: str, direction, layers, *,
                  eps: float = 1e-5, canonizers=None) -> dict[str, torch.Tensor]:
    """LRP relevance of a unit of ``layer`` at ``layers`` for images ``x``.

    Args:
        layer: the target's layer; ``direction`` its (C,) channel weights (one-hot for a neuron)
            or a channel index.
        layers: where to read the relevance (earlier layers; ``layer`` itself gives the start).
        canonizers: zennit canonizers, or None for the residual blocks this module knows.

    Returns:
        {layer: relevance shaped like that layer's output}; the model is left unchanged.
    """
    layers = list(layers)
    tap = LayerTap()
    with Capture(model, list(dict.fromkeys([layer, *layers])), on_output=tap, detach=False,
                 freeze=True) as capture:
        with torch.no_grad():
            tap.want([layer])
            capture.forward(x)
            width = tap.outputs[layer].shape[1 if tap.outputs[layer].ndim != 3 else 2]
        if isinstance(direction, int):
            v = torch.zeros(width, device=x.device)
            v[direction] = 1.0
        else:
            v = torch.as_tensor(direction, dtype=x.dtype, device=x.device)
        inject = {layer: v.expand(x.shape[0], -1)}
        maps = RelevancePass(model, tap, eps=eps, canonizers=canonizers).maps(
            capture.forward, x, inject, layers)
        shapes = {}
        tap.want(layers)
        with torch.no_grad():
            capture.forward(x)
            shapes = {n: tap.outputs[n].shape for n in layers}
    return {n: _unflatten(maps[n], shapes[n]) for n in layers}


def _unflatten(channels: torch.Tensor, shape) -> torch.Tensor:
    """(B, C, P) back to a layer output's shape."""
    if len(shape) == 3:
        return channels.transpose(1, 2).reshape(shape)
    return channels.reshape(shape)
