"""Planning a pass from one probe forward pass: channel counts, that each later layer depends on
its earlier layer, the class count from the logits, and, for the conv estimator, the convolution
that joins each pair (with the BatchNorm after it, whose scale is folded into the kernel)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

from ...capture import Capture, as_channels, split_call

__all__ = ["Join", "probe"]


@dataclass
class Join:
    """The convolution that joins an earlier layer to a later one (conv estimator)."""

    conv: str  # module path
    call: int  # which call of that module in a forward pass
    scale: torch.Tensor | None  # folded BatchNorm scale (C_out,), or None
    bn: str | None

    @property
    def name(self) -> str:
        """The call as ``Capture`` addresses it: ``"path#call"``."""
        return f"{self.conv}#{self.call}"


def probe(model: nn.Module, x: torch.Tensor, pairs: list[tuple[str, str]], *,
          estimators: list[str], convs: dict[tuple[str, str], str] | None = None,
          skip_tokens: int = 0, fold_bn: bool = True,
          ) -> tuple[dict[str, int], dict[tuple[str, str], Join], int | None]:
    """Run a few images once, with gradients from every earlier layer, and work out: channel
    counts, that each later layer depends on its earlier layer, the class count from the logits,
    and, for the conv estimator, the joining convolution of each pair and the BatchNorm after it.

    Returns ``(channels, joins, num_classes)``: {layer: channel count}, {(earlier, later):
    Join} (empty without the conv estimator) and the logits' width (None if the output is not
    (B, K)). One ``Capture`` block: the chosen layers' outputs (a zero requiring grad added to
    each earlier layer's), every Conv2d's input and output and every BatchNorm's input.
    """
    earlier = {e for e, _ in pairs}
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    outs, deltas, when = {}, {}, {}
    conv_calls, bn_inputs = [], []
    clock = itertools.count()

    def on_layer(name, out):
        when[name] = next(clock)
        outs[name] = out
        if name in earlier:
            deltas[name] = torch.zeros_like(out, requires_grad=True)
            return out + deltas[name]
        return None

    conv_count = defaultdict(int)

    def conv_start(path):  # stamped when the call starts, so a conv that is itself the later
        def hook(module, args):  # layer still lies before that layer's output
            conv_calls.append(dict(path=path, call=conv_count[path], module=module,
                                   input=args[0], output=None, time=next(clock)))
            conv_count[path] += 1
        return hook

    def conv_end(path):  # runs before the Capture's own hook, so it sees the conv's real output
        def hook(module, args, output):
            [c for c in conv_calls if c["path"] == path][-1]["output"] = output
        return hook

    def bn_start(path):
        def hook(module, args):
            bn_inputs.append((path, module, args[0]))
        return hook

    with Capture(model, names, on_output=on_layer, detach=False, freeze=True) as capture:
        for path, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                capture.register(path, pre=conv_start(path), post=conv_end(path))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                capture.register(path, pre=bn_start(path))
        with torch.enable_grad():
            logits = capture.forward(x)

    channels = {n: as_channels(outs[n], skip_tokens=skip_tokens).shape[1] for n in names}
    for e, l in pairs:
        z = outs[l]
        if not (z.requires_grad and _depends(z, deltas[e])):
            raise ValueError(f"layer pair ({e!r}, {l!r}): no path from {e!r} to {l!r}, so {l!r} "
                             f"does not depend on {e!r}. Give pairs as (earlier, later) with the "
                             "later layer computed from the earlier one.")
    joins = {}
    if "conv" in estimators:
        for e, l in pairs:
            joins[(e, l)] = _find_join(e, l, outs, deltas, when, conv_calls, bn_inputs, channels,
                                       (convs or {}).get((e, l)), fold_bn)
    num_classes = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.ndim == 2 else None
    return channels, joins, num_classes


def _depends(y: torch.Tensor, x: torch.Tensor) -> bool:
    if not y.requires_grad:
        return False
    return torch.autograd.grad(y.sum(), x, retain_graph=True, allow_unused=True)[0] is not None


def _find_join(e, l, outs, deltas, when, conv_calls, bn_inputs, channels, wanted, fold_bn):
    """The first Conv2d call between e and l that reads e's channels (channel for channel) and
    feeds l, with C_in = channels of e and C_out = channels of l."""
    c_e, c_l = channels[e], channels[l]
    hint = (f"Use estimator='gradient' for this pair, or name the conv with "
            f"convs={{({e!r}, {l!r}): 'module.path'}}.")
    if wanted is not None:
        base, call = split_call(wanted)
        calls = [c for c in conv_calls if c["path"] == base and (call is None or c["call"] == call)]
        if not calls:
            raise ValueError(f"convs: {wanted!r} is not a Conv2d that ran in the forward pass")
        candidates = calls[:1]
    else:
        candidates = [c for c in conv_calls if when[e] < c["time"] < when[l]]
    for c in candidates:
        conv = c["module"]
        fits = conv.in_channels == c_e and conv.out_channels == c_l
        if wanted is None and not (fits and _depends(c["input"], deltas[e])
                                   and _depends(outs[l], c["output"])):
            continue
        if wanted is not None and not _depends(c["input"], deltas[e]):
            raise ValueError(f"convs: the conv {wanted!r} does not read layer {e!r}")
        if not fits:
            raise ValueError(f"conv {wanted!r} maps {conv.in_channels} to {conv.out_channels} "
                             f"channels, but ({e!r}, {l!r}) have {c_e} and {c_l}")
        if conv.groups != 1:
            raise ValueError(f"the conv {c['path']!r} joining ({e!r}, {l!r}) is grouped "
                             f"(groups={conv.groups}); the conv estimator needs a full conv. "
                             f"{hint}")
        if not _channelwise(c["input"], deltas[e]):
            raise ValueError(f"between {e!r} and the conv {c['path']!r} the channels mix, so the "
                             f"conv's input channels are not {e!r}'s channels. {hint}")
        scale, bn = None, None
        if fold_bn:
            for path, module, inp in bn_inputs:
                if inp is c["output"]:
                    scale, bn = _bn_scale(module), path
                    break
        return Join(c["path"], c["call"], scale, bn)
    raise ValueError(f"layer pair ({e!r}, {l!r}): no convolution reads {e!r}'s {c_e} channels "
                     f"and writes {c_l} channels on the way to {l!r}. {hint}")


def _channelwise(inp: torch.Tensor, delta: torch.Tensor, budget: int = 2 ** 24) -> bool:
    """True if channel i of ``inp`` depends on channel i of ``delta`` only."""
    c = inp.shape[1]
    if c != delta.shape[1] or inp.ndim != 4 or delta.ndim != 4:
        return False
    step = max(1, budget // max(1, delta.numel()))
    for i0 in range(0, c, step):
        i1 = min(i0 + step, c)
        cot = torch.zeros(i1 - i0, *inp.shape, dtype=inp.dtype, device=inp.device)
        cot[torch.arange(i1 - i0), :, torch.arange(i0, i1)] = 1
        g, = torch.autograd.grad(inp, delta, cot, is_grads_batched=True, retain_graph=True)
        reach = g.abs().sum((1, 3, 4)) > 0  # (channels of inp in chunk, channels of delta)
        reach[torch.arange(i1 - i0), torch.arange(i0, i1)] = False
        if reach.any():
            return False
    return True


def _bn_scale(bn) -> torch.Tensor | None:
    """Per-channel multiplier a BatchNorm applies in eval mode (its sign when it has no running
    statistics: only the sign changes which inputs rank first)."""
    if not bn.affine and bn.running_var is None:
        return None
    weight = (bn.weight.detach() if bn.affine
              else torch.ones_like(bn.running_var, dtype=torch.float32))
    if bn.running_var is None:
        return torch.sign(weight).float()
    return (weight / torch.sqrt(bn.running_var.detach() + bn.eps)).float()
