"""The model as the explanation passes see it: inside one ``Capture`` block, scored by the
softmax probability of a target class, with the inputs it ran on counted.

Every pass of ``notebookcarto.explain`` runs through ``Scorer``: the model is in eval mode with
frozen parameters inside the block (only the masks' gradients are wanted) and exactly as before
on exit (``notebookcarto.capture``); noise comes from the explainers' own generators, never from
the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..capture import Capture, LayerError, mappable_layers, model_device

__all__ = ["PassCounts", "Scorer", "check_logits", "check_targets", "hook_layer",
           "saved_bytes_per_input"]


@dataclass
class PassCounts:
    """Inputs the model ran on: ``forward`` without gradients, ``backward`` with a backward
    pass through them (each also ran forward once)."""

    forward: int = 0
    backward: int = 0

    def add(self, other: "PassCounts") -> None:
        self.forward += other.forward
        self.backward += other.backward

    def as_dict(self) -> dict:
        return {"forward": self.forward, "backward": self.backward}


def hook_layer(model: nn.Module) -> str:
    """A module that runs in every forward pass, for a ``Capture`` that only guards the model:
    the first mappable block or, failing that, the first child (its first call)."""
    layers = mappable_layers(model)
    if layers:
        return layers[0] + "#0"
    for name, _ in model.named_children():
        return name + "#0"
    raise TypeError(f"{type(model).__name__} has no submodules: the explanation passes run the "
                    "model inside notebookcarto.capture.Capture, which hooks a submodule; wrap "
                    "it, e.g. nn.Sequential(model)")


def _ignore(name, output):
    return None


class Scorer:
    """``with Scorer(model) as s:`` the model's logits and target probabilities, counted.

    ``logits(x)`` checks that the model returns a float tensor (B, classes) with at least two
    classes (what a softmax over classes needs). Images go to the model channels-last on a
    CPU (``Capture``'s ``channels_last``)."""

    def __init__(self, model: nn.Module, *, layer: str | None = None):
        self.model = model
        self.device = model_device(model)
        self.capture = Capture(model, [layer or hook_layer(model)], on_output=_ignore,
                               freeze=True, channels_last=True)
        self.counts = PassCounts()

    def __enter__(self) -> "Scorer":
        self.capture.__enter__()
        return self

    def __exit__(self, *exc):
        return self.capture.__exit__(*exc)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            self.counts.backward += x.shape[0]
        else:
            self.counts.forward += x.shape[0]
        try:
            out = self.capture.forward(x)
        except LayerError as err:
            raise LayerError(f"{err} (the explanation passes hook a module only to guard the "
                             "model; if it does not run, wrap the model in nn.Sequential)") \
                from None
        return check_logits(out, x.shape[0])

    def probabilities(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Softmax probability of ``targets`` (B,) for inputs ``x`` (B, C, H, W)."""
        logits = self.logits(x)
        if targets.numel() and int(targets.max()) >= logits.shape[1]:
            raise ValueError(f"target class {int(targets.max())} is out of range: the model "
                             f"has {logits.shape[1]} classes")
        return torch.softmax(logits, dim=1).gather(1, targets.view(-1, 1)).squeeze(1)


def check_logits(out, n: int) -> torch.Tensor:
    """``out`` if it is logits of ``n`` inputs (n, classes >= 2), else a ValueError."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    elif isinstance(out, dict) and "logits" in out:
        out = out["logits"]
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"{out.dtype} tensor"
        raise ValueError(f"the model returned a {got}: I-GOS and the deletion / insertion "
                         "metrics score the softmax probability of a class, so the model must "
                         "return float logits (batch, classes)")
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for {n} images: a "
                         "softmax over classes needs logits of shape (batch, classes) with at "
                         "least 2 classes (for a single-logit model, return torch.cat([-z, z], "
                         "1) / 2 so the softmax gives its sigmoid)")
    return out


def check_targets(targets, n: int, num_classes: int) -> torch.Tensor:
    """``targets`` as int64 (n,), each in 0..num_classes - 1."""
    t = torch.as_tensor(targets)
    if t.ndim == 0:
        t = t.expand(n)
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"targets must be integer class indices, got {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"expected one target per image ({n}), got shape {tuple(t.shape)}")
    t = t.long()
    bad = ((t < 0) | (t >= num_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"target {int(t[i])} of image {i} is out of range: the model has "
                         f"{num_classes} classes (0..{num_classes - 1})")
    return t


def saved_bytes_per_input(scorer: Scorer, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of one input like ``x[:1]`` (measured on a
    probe forward pass, with the input requiring grad as the masks' composites do)."""
    seen: dict[int, int] = {}
    shared = {t.untyped_storage().data_ptr()
              for t in [*scorer.model.parameters(), *scorer.model.buffers()]}

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in shared:  # weights are kept once, whatever the batch
                seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage
            pass
        return t

    probe = x[:1].detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scorer.logits(probe)
    scorer.counts.backward -= 1  # a probe, not part of the algorithm
    return max(sum(seen.values()), probe.numel() * probe.element_size())
