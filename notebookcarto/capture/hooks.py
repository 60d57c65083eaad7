"""Forward hooks on chosen layers, scoped by a context manager."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import nn

from .guard import ModelGuard
from .layers import resolve_layers, split_call


class LayerError(RuntimeError):
    """A chosen layer did not behave as a mappable layer should (never ran, ran twice, ...)."""


def as_channels(output: torch.Tensor, *, skip_tokens: int = 0) -> torch.Tensor:
    """View a layer output as (B, C, P): channels first, then positions.

    (B, C, H, W) maps flatten to P = H*W; token sequences (B, T, C) use the tokens as positions,
    dropping the first ``skip_tokens`` (e.g. 1 for a class token); vectors (B, C) have P = 1.
    """
    if output.ndim == 4:
        return output.flatten(2)
    if output.ndim == 3:
        return output[:, skip_tokens:, :].transpose(1, 2)
    if output.ndim == 2:
        return output.unsqueeze(2)
    raise ValueError(f"expected an output of shape (B, C, H, W), (B, T, C) or (B, C); "
                     f"got {tuple(output.shape)}")


def position_shape(output: torch.Tensor, *, skip_tokens: int = 0) -> tuple[int, ...]:
    """The shape of the positions of a layer output: (H, W), (T,) or () for vectors."""
    if output.ndim == 4:
        return tuple(output.shape[2:])
    if output.ndim == 3:
        return (output.shape[1] - skip_tokens,)
    return ()


def _first_tensor(name: str, output) -> torch.Tensor:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise LayerError(f"layer {name!r} returned {type(output).__name__}, not a tensor: "
                         "choose a module whose output is an activation tensor")
    return output


class Capture:
    """Hook the chosen layers of a model for the duration of a ``with`` block.

    Each forward pass of the model fills ``capture.outputs`` (layer name -> output tensor), or,
    if ``on_output`` is given, calls ``on_output(name, output)`` instead of storing anything.
    Outputs are detached unless ``detach=False``. Read after the forward pass, an output may
    have been changed in place by a later module (``ReLU(inplace=True)``, ``out += identity``):
    ``copy=True`` hands on a copy taken when the layer ran. Inside the block the model is in eval mode
    (unless ``eval_mode=False``); on exit the model is exactly as before (see ``ModelGuard``),
    also when the block raises.

    A module that runs more than once per forward pass raises ``LayerError``; address each call
    as ``"name#0"``, ``"name#1"``, ... instead. A chosen module may also be called directly
    (``model.block(x)``); each such call counts as a pass of its own. A chosen layer that does not run in a forward
    pass raises ``LayerError`` when the pass ends.
    """

    def __init__(self, model: nn.Module, layers, *, on_output: Callable | None = None,
                 detach: bool = True, eval_mode: bool = True, copy: bool = False):
        self.model = model
        self.modules = resolve_layers(model, layers)
        self.layers = list(self.modules)
        self.on_output = on_output
        self.detach, self.copy = detach, copy
        self.eval_mode = eval_mode
        self.outputs: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = defaultdict(int)
        self._seen: set[str] = set()
        self._in_pass = False
        self._guard = None

    def __enter__(self):
        self._guard = ModelGuard(self.model).__enter__()
        try:
            if self.eval_mode:
                self.model.eval()
            wanted = defaultdict(dict)  # module path -> {call index or None: layer name}
            for name in self.layers:
                base, call = split_call(name)
                wanted[base][call] = name
            modules = dict(self.model.named_modules())
            for base, calls in wanted.items():
                modules[base].register_forward_hook(self._hook(base, calls))
            self.model.register_forward_pre_hook(self._start_pass)
            self.model.register_forward_hook(self._end_pass)
        except BaseException:
            self._guard.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self.outputs = {}
        return self._guard.__exit__(*exc)

    def _start_pass(self, module, args):
        self.outputs = {}
        self._calls.clear()
        self._seen.clear()
        self._in_pass = True

    def _end_pass(self, module, args, output):
        self._in_pass = False
        missing = [n for n in self.layers if n not in self._seen]
        if missing:
            raise LayerError(f"layer(s) {missing} did not run during the forward pass: the model's "
                             "forward never calls them (or, for 'name#k', calls them fewer times)")

    def _hook(self, base: str, calls: dict):
        def hook(module, args, output):
            if not self._in_pass:  # a submodule called directly: each call is its own pass
                self._calls[base] = 0
            call = self._calls[base]
            self._calls[base] += 1
            if None in calls and call >= 1:
                raise LayerError(f"module {base!r} ran {call + 1} times in one forward pass, so its "
                                 f"outputs would overwrite each other: address each call as "
                                 f"'{base}#0', '{base}#1', ...")
            name = calls.get(None if None in calls else call)
            if name is None:
                return
            out = _first_tensor(name, output)
            if self.detach:
                out = out.detach()
            if self.copy:
                out = out.clone()
            self._seen.add(name)
            if self.on_output is not None:
                self.on_output(name, out)
            else:
                self.outputs[name] = out
        return hook
