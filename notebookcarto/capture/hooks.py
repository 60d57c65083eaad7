"""Forward hooks on chosen layers, scoped by a context manager."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import nn

from .guard import ModelGuard, rng_state, set_rng_state
from .layers import layer_list, resolve_layers, split_call

__all__ = ["Capture", "LayerError", "StopForward", "as_channels", "position_shape"]


class LayerError(RuntimeError):
    """A chosen layer did not behave as a mappable layer should (never ran, ran twice, ...)."""


def as_channels(output: torch.Tensor, *, skip_tokens: int = 0, layer: str = "") -> torch.Tensor:
    """View a layer output as (B, C, P): channels first, then positions.

    (B, C, H, W) maps flatten to P = H*W; token sequences (B, T, C) use the tokens as positions,
    dropping the first ``skip_tokens`` (e.g. 1 for a class token); vectors (B, C) have P = 1.
    ``layer`` names the layer in the error for any other shape.
    """
    if output.ndim == 4:
        return output.flatten(2)
    if output.ndim == 3:
        return output[:, skip_tokens:, :].transpose(1, 2)
    if output.ndim == 2:
        return output.unsqueeze(2)
    where = f"layer {layer!r} gives" if layer else "expected"
    raise ValueError(f"{where} an output of shape {tuple(output.shape)}; mappable outputs are "
                     "(B, C, H, W) maps, (B, T, C) tokens or (B, C) vectors: choose another layer "
                     "(see notebookcarto.mappable_layers(model))")


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


class StopForward(Exception):
    """Raise inside a ``Capture`` callback to end the forward pass early (``Capture.forward``
    then returns None): once a pass has all it needs, the rest of the model need not run."""


class Capture:
    """Hook the chosen layers of a model for the duration of a ``with`` block.

    Each forward pass of the model fills ``capture.outputs`` (layer name -> output tensor), or,
    if ``on_output`` is given, calls ``on_output(name, output)`` instead of storing anything; a
    tensor it returns replaces the layer's output in the rest of the forward pass (e.g. to add a
    zero that requires grad). Outputs are detached unless ``detach=False``. Read after the forward
    pass, an output may have been changed in place by a later module (``ReLU(inplace=True)``,
    ``out += identity``): ``copy=True`` hands on a copy taken when the layer ran.

    ``inputs`` names modules (paths, ``"name#k"`` for the k-th call) whose inputs are wanted:
    ``on_input(name, args)`` gets their positional arguments before they run. ``register(path,
    pre=..., post=...)`` adds any other forward hooks for the duration of the block. A callback
    may raise ``StopForward`` to end the pass; ``capture.forward(x)`` runs the model and returns
    its output, or None when a callback stopped it.

    Inside the block the model is in eval mode (unless ``eval_mode=False``) and, with
    ``freeze=True``, its parameters do not require grad (only the inputs' gradients are wanted);
    on exit the model is exactly as before (see ``ModelGuard``), also when the block raises.
    The global RNG follows one rule: whatever a forward pass of the model draws from it (dropout
    in train mode, a sampling layer) is undone when the pass ends, and nothing else is touched,
    so a shuffled loader iterated inside the block advances the RNG exactly as the user's own
    loop would (the loader's draws are the user's; the library's passes leave no trace). A
    module that runs more than once per forward pass raises ``LayerError``; address each call as
    ``"name#0"``, ``"name#1"``, ... instead. A chosen module may also be called directly
    (``model.block(x)``); each such call counts as a pass of its own. A chosen layer that does not
    run in a forward pass raises ``LayerError`` when the pass ends.

    ``channels_last=True``: on a CPU, ``forward`` gives a model with 2-d convolutions its 4-d
    input channels-last, the layout oneDNN computes in (the same values up to rounding). With
    one thread on two cores, a forward pass of 32 inputs then ran 2.6x faster for the
    playground CNN and 7% faster for the CIFAR ResNet-20 (15% at 4 inputs; at one input 9% and
    0%). A model that fails on such an input (a ``view`` of a map) is run on the input as
    given, from then on.
    """

    def __init__(self, model: nn.Module, layers, *, on_output: Callable | None = None,
                 inputs=(), on_input: Callable | None = None, detach: bool = True,
                 eval_mode: bool = True, copy: bool = False, freeze: bool = False,
                 channels_last: bool = False):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        layers = layer_list(layers)
        # only inputs may be wanted; otherwise resolve_layers refuses an empty list
        self.modules = resolve_layers(model, layers) if layers or not inputs else {}
        self.layers = list(self.modules)
        self.inputs = list(resolve_layers(model, inputs)) if inputs else []
        if self.inputs and on_input is None:
            raise ValueError("inputs=... names modules whose inputs are wanted: pass "
                             "on_input=callback(name, args) too")
        self.on_output, self.on_input = on_output, on_input
        self.detach, self.copy = detach, copy
        self.eval_mode, self.freeze = eval_mode, freeze
        self.channels_last = channels_last and any(isinstance(m, nn.Conv2d)
                                                   for m in model.modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self._calls: dict[tuple, int] = defaultdict(int)
        self._seen: set[str] = set()
        self._in_pass = False
        self._rng = None  # the RNG state when the current forward pass began
        self._input_shape, self._input_checks = None, []
        self._guard = None

    def __enter__(self):
        if self._guard is not None:
            raise RuntimeError("this Capture is already active: make a new one for a nested block")
        self._guard = ModelGuard(self.model).__enter__()
        try:
            if self.eval_mode:
                self.model.eval()
            if self.freeze:
                for p in self.model.parameters():
                    p.requires_grad_(False)
            modules = dict(self.model.named_modules())
            for base, calls in _by_module(self.layers).items():
                modules[base].register_forward_hook(self._output_hook(base, calls))
            for base, calls in _by_module(self.inputs).items():
                modules[base].register_forward_pre_hook(self._input_hook(base, calls))
            self.model.register_forward_pre_hook(self._start_pass)
            self.model.register_forward_hook(self._end_pass)
            self._input_checks = [m.register_forward_pre_hook(self._check_input)
                                  for m in self.model.modules()
                                  if isinstance(m, nn.modules.conv._ConvNd)]
        except BaseException:
            self._guard.__exit__(None, None, None)
            self._guard = None
            raise
        return self

    def __exit__(self, *exc):
        self.outputs = {}
        self._restore_rng()  # a pass that raised out of the block
        guard, self._guard = self._guard, None
        return guard.__exit__(*exc)

    def register(self, path: str, *, pre: Callable | None = None, post: Callable | None = None):
        """Add a forward pre-hook and/or forward hook (``nn.Module`` signatures) to the module at
        ``path`` until the block ends."""
        if self._guard is None:
            raise RuntimeError("Capture.register works only inside the `with Capture(...)` block")
        module = resolve_layers(self.model, [path])[path]
        if pre is not None:
            module.register_forward_pre_hook(pre)
        if post is not None:
            module.register_forward_hook(post, prepend=True)

    def forward(self, *args, **kwargs):
        """Run the model; its output, or None when a callback raised ``StopForward``."""
        x = args[0] if args else None
        if (self.channels_last and isinstance(x, torch.Tensor) and x.ndim == 4
                and x.device.type == "cpu"):
            try:
                return self._run(x.contiguous(memory_format=torch.channels_last), *args[1:],
                                 **kwargs)
            except LayerError:
                raise
            except RuntimeError:
                self._restore_rng()  # the failed pass's draws
                self.channels_last = False
        return self._run(*args, **kwargs)

    def _run(self, *args, **kwargs):
        try:
            return self.model(*args, **kwargs)
        except StopForward:
            self._in_pass = False
            self._restore_rng()
            return None

    def _start_pass(self, module, args):
        self.outputs = {}
        self._calls.clear()
        self._seen.clear()
        self._in_pass = True
        self._rng = rng_state()
        first = args[0] if args else None
        self._input_shape = tuple(first.shape) if isinstance(first, torch.Tensor) else None

    def _check_input(self, conv, args):
        """Before the first convolution of the first pass runs: images whose channels do not
        fit it get an error that says why, rather than torch's shape error."""
        for handle in self._input_checks:
            handle.remove()
        self._input_checks = []
        x, shape = args[0], self._input_shape
        if (not self._in_pass or shape is None or not isinstance(x, torch.Tensor)
                or tuple(x.shape) != shape or x.ndim < 3 or x.shape[1] == conv.in_channels):
            return
        if x.shape[-1] == conv.in_channels:
            order = (0, x.ndim - 1, *range(1, x.ndim - 1))
            raise ValueError(f"images of shape {shape} look channels-last; the model's first "
                             f"convolution reads {conv.in_channels} channels in dim 1: use "
                             f"x.permute{order} (or ToTensor() in the data set's transform)")
        raise ValueError(f"images have {x.shape[1]} channel(s) but the model's first "
                         f"convolution reads {conv.in_channels}: convert the images (e.g. grey "
                         "to RGB with x.expand(-1, 3, -1, -1))")

    def _restore_rng(self):
        if self._rng is not None:
            set_rng_state(self._rng)
            self._rng = None

    def _end_pass(self, module, args, output):
        self._in_pass = False
        self._restore_rng()
        missing = [n for n in self.layers + self.inputs if n not in self._seen]
        if missing:
            raise LayerError(f"layer(s) {missing} did not run during the forward pass: the model's "
                             "forward never calls them (or, for 'name#k', calls them fewer times)")

    def _call_name(self, kind: str, base: str, calls: dict) -> str | None:
        """The name addressed by this call of module ``base``, counting calls per pass."""
        key = (kind, base)
        if not self._in_pass:  # a submodule called directly: each call is its own pass
            self._calls[key] = 0
        call = self._calls[key]
        self._calls[key] += 1
        if None in calls and call >= 1:
            raise LayerError(f"module {base!r} ran {call + 1} times in one forward pass, so its "
                             f"outputs would overwrite each other: address each call as "
                             f"'{base}#0', '{base}#1', ...")
        return calls.get(None if None in calls else call)

    def _output_hook(self, base: str, calls: dict):
        def hook(module, args, output):
            name = self._call_name("output", base, calls)
            if name is None:
                return None
            out = _first_tensor(name, output)
            if self.detach:
                out = out.detach()
            if self.copy:
                out = out.clone()
            self._seen.add(name)
            if self.on_output is None:
                self.outputs[name] = out
                return None
            return _replace_first(output, self.on_output(name, out))
        return hook

    def _input_hook(self, base: str, calls: dict):
        def hook(module, args):
            name = self._call_name("input", base, calls)
            if name is not None:
                self._seen.add(name)
                self.on_input(name, args)
        return hook


def _by_module(names) -> dict:
    """Module path -> {call index or None: layer name}."""
    wanted = defaultdict(dict)
    for name in names:
        base, call = split_call(name)
        wanted[base][call] = name
    return wanted


def _replace_first(output, new):
    """``output`` with its (first) tensor replaced by ``new``; None keeps it."""
    if new is None:
        return None
    if isinstance(output, tuple):
        return (new,) + tuple(output[1:])
    if isinstance(output, list):
        return [new] + list(output[1:])
    return new
