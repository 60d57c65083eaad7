"""The probe: forward passes over the first images that record what planning an influence pass
needs (see ``joins``, ``local`` and ``budget``).

First one image without gradients: the most memory the live module outputs held at once (the
forward pass's own peak) and the logits. Then, with a zero requiring grad added to each earlier
layer's output, one or two images (two where the budget allows) up to the last chosen layer:
every module call (input, output, when it started and ended), every BatchNorm's input, each
chosen layer's output and the bytes autograd saves per image. Everything runs in one
``Capture`` block (one ``ModelGuard``).
"""

from __future__ import annotations

import itertools
import weakref
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ...capture import Capture, StopForward
from .budget import format_bytes

__all__ = ["Call", "Record", "record"]


@dataclass(eq=False)
class Call:
    """One call of a module in the probe's forward pass."""

    path: str
    index: int  # which call of this module in the pass
    module: nn.Module
    input: torch.Tensor | None  # the only positional argument, if it is a tensor
    start: int
    output: torch.Tensor | None = None
    end: int = -1


@dataclass
class Record:
    """What the probe saw (tensors of the probe's images, with their autograd graph)."""

    outputs: dict[str, torch.Tensor]  # chosen layer -> output (as it left the layer)
    flows: dict[str, torch.Tensor]  # earlier layer -> the tensor passed on (output + zero)
    deltas: dict[str, torch.Tensor]  # earlier layer -> the zero added (requires grad)
    ended: dict[str, int]  # chosen layer -> clock when its output was seen
    calls: list[Call]
    bn_inputs: list[tuple[str, nn.Module, torch.Tensor]]
    logits: object  # the model's output for one image
    n_images: int
    saved_per_image: int  # bytes autograd saved per image from the earlier layers on
    forward_peak: int  # bytes: the live module outputs at their most, one image, no grad
    calls_per_path: dict[str, int] = field(default_factory=dict)

    def convs(self) -> list[Call]:
        return [c for c in self.calls if isinstance(c.module, nn.Conv2d)]

    def call_name(self, call: Call) -> str:
        """``Capture``'s name of a call: ``"path#k"`` where the module runs several times."""
        return f"{call.path}#{call.index}" if self.calls_per_path[call.path] > 1 else call.path


def record(model: nn.Module, x: torch.Tensor, names: list[str], earlier: set[str], then, *,
           budget: int):
    """Run the probe's forward passes on the first images of ``x``, record them (module doc)
    and return ``then(record)``, called inside the same block: the model is in eval mode with
    its parameters frozen, so ``then`` may run parts of it (the crops' checks)."""
    outs, flows, deltas, ended = {}, {}, {}, {}
    remaining = [len(names)]
    calls, bn_inputs = [], []
    clock = itertools.count()
    counts = defaultdict(int)
    open_calls = defaultdict(list)
    measuring = [False]
    live = _LiveBytes()

    sizes = {}  # measuring: chosen layer -> bytes of its output, and the outputs so far

    def on_layer(name, out):
        if measuring[0]:
            sizes[name] = out.numel() * out.element_size()
            if len(sizes) == len(names):
                sizes[None] = live.total
            return None
        ended[name] = next(clock)
        outs[name] = out
        new = None
        if name in earlier:
            deltas[name] = torch.zeros_like(out, requires_grad=True)
            new = flows[name] = out + deltas[name]
        remaining[0] -= 1
        if remaining[0] == 0:
            raise StopForward  # the rest of the model is not needed
        return new

    def start(path):
        def hook(module, args):
            if measuring[0]:
                live.add(args)
                return
            arg = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
            call = Call(path, counts[path], module, arg, next(clock))
            counts[path] += 1
            calls.append(call)
            open_calls[path].append(call)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and args:
                bn_inputs.append((path, module, args[0]))
        return hook

    def end(path):  # runs before Capture's own hook, so it sees the module's real output
        def hook(module, args, output):
            if measuring[0]:
                live.add(output)
                return
            call = open_calls[path].pop()
            call.output = _first_tensor(output)
            call.end = next(clock)
        return hook

    saved = _SavedBytes(model)
    with Capture(model, names, on_output=on_layer, detach=False, freeze=True) as capture:
        for path, module in model.named_modules():
            if path:
                capture.register(path, pre=start(path), post=end(path))
        measuring[0] = True
        try:
            with torch.no_grad():
                live.add(x[:1])
                logits = capture.forward(x[:1])
        finally:
            measuring[0] = False
        # the recorded pass keeps every output up to the last chosen layer (and autograd about
        # as much again), each earlier map twice more (the zero and the sum), and the checks
        # up to eight copies of the widest earlier map (gradients; the crops' window: the map
        # and a noisy copy, run through the block with gradients; measured on VGG-11 at
        # 224 px): two images where that fits twice in the budget (a channel dead in one
        # image may live in the other)
        maps = [sizes[e] for e in earlier]
        need = 2 * sizes[None] + 2 * sum(maps) + 8 * max(maps)
        if need > budget:
            raise ValueError(f"memory_budget={format_bytes(budget)} is too small for this model "
                             f"at this input size: planning the pass (the probe over one image) "
                             f"needs about {format_bytes(need)}. Pass memory_budget="
                             f"'{format_bytes(2 * need).replace(' ', '')}' or more")
        n = 2 if x.shape[0] >= 2 and 2 * need <= budget else 1
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack,
                                                                           saved.unpack):
            capture.forward(x[:n])
        rec = Record(outs, flows, deltas, ended, calls, bn_inputs, logits, n,
                     saved.total // n, live.peak, dict(counts))
        return then(rec)


def _first_tensor(output):
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


class _SavedBytes:
    """Bytes of the distinct storages autograd saves for the backward pass (parameters
    excluded: they are not per image)."""

    def __init__(self, model: nn.Module):
        self.params = {p.data_ptr() for p in itertools.chain(model.parameters(), model.buffers())}
        self.seen: set[int] = set()
        self.total = 0

    def pack(self, tensor):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in self.params and ptr not in self.seen:
            self.seen.add(ptr)
            self.total += tensor.untyped_storage().nbytes()
        return tensor

    @staticmethod
    def unpack(tensor):
        return tensor


class _LiveBytes:
    """The most bytes that module inputs and outputs still alive held at one time (tensors
    tracked by weak reference, storages counted once)."""

    def __init__(self):
        self.tracked: dict[int, tuple[weakref.ref, int]] = {}
        self.peak = 0
        self.total = 0  # bytes of every distinct storage seen, alive or not

    def add(self, value):
        tensors = value if isinstance(value, (tuple, list)) else (value,)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                # the tensor's own bytes: a view of a larger batch holds only its part
                ptr, nbytes = t.untyped_storage().data_ptr(), t.numel() * t.element_size()
                before = self.tracked.get(ptr, (None, 0))[1]
                if nbytes >= before:
                    self.total += nbytes - before
                    self.tracked[ptr] = (weakref.ref(t), nbytes)
        alive = {ptr: v for ptr, v in self.tracked.items() if v[0]() is not None}
        self.tracked = alive
        self.peak = max(self.peak, sum(n for _, n in alive.values()))
