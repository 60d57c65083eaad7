"""The convolutions that join each layer pair, for the conv estimator, found in the probe's
record (``probe.record``).

Three shapes of join, tried in this order:

1. One convolution reads the earlier layer's channels (channel for channel: pooling,
   BatchNorm and activations between are per channel) and writes as many channels as the later
   layer has, on the way to it: a plain conv stack, or the first conv of a residual block.
2. Branches, as in Summit's InceptionV1 blocks (torchvision's GoogLeNet): several
   convolutions read the earlier layer's channels and each writes a slice of the later
   layer's concatenated channels, directly (the 1x1 branch; the pool branch, whose conv reads
   the max-pooled input) or through a bottleneck: a first conv (the 3x3 and 5x5 branches' 1x1
   reductions) whose output a second conv reads channel for channel. Each bottleneck becomes
   two more pairs, (earlier, bottleneck) and (bottleneck, later), for the attribution graph's
   bottleneck edges (Summit's section 1.3: weight max over b of min(I[j][b], I[b][i])).
   The branches' slices must cover the later layer's channels exactly.
3. A conv named by the user (``convs={(earlier, later): "path"}``), as in 1.

Grouped and depthwise convolutions join as any other (``conv_influence`` keeps inputs outside
a group out of the counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...capture import split_call
from .probe import Call, Record

__all__ = ["Bottleneck", "Branch", "Join", "depends", "find_joins"]


@dataclass
class Branch:
    """One convolution of a join and the later layer's channels it writes."""

    conv: str  # module path
    call: int  # which call of that module in a forward pass
    scale: torch.Tensor | None  # folded BatchNorm scale (C_out,), or None
    bn: str | None
    rows: tuple[int, int]  # later channels start .. stop - 1

    @property
    def name(self) -> str:
        """The call as ``Capture`` addresses it: ``"path#call"``."""
        return f"{self.conv}#{self.call}"

    def describe(self, full: bool) -> dict:
        out = {"conv": self.conv, "call": self.call, "bn": self.bn}
        if not full:
            out["rows"] = list(self.rows)
        return out


@dataclass
class Join:
    """The convolutions that join an earlier layer to a later one (conv estimator)."""

    branches: list[Branch]

    def describe(self, later_channels: int):
        """JSON-ready: one dict for a single conv writing every later channel, else a list."""
        if len(self.branches) == 1 and self.branches[0].rows == (0, later_channels):
            return self.branches[0].describe(True)
        return [b.describe(False) for b in self.branches]


@dataclass
class Bottleneck:
    """A bottleneck of a branched join: the layer between the branch's two convs."""

    layer: str  # a module (path or "path#k") whose output the second conv reads
    channels: int
    first: Join  # (earlier, bottleneck)
    second: Join  # (bottleneck, later): the second conv(s), writing slices of the later layer


def find_joins(rec: Record, pairs, channels: dict[str, int], *, convs=None,
               fold_bn: bool = True) -> tuple[dict, dict]:
    """The join of each pair and the bottlenecks of branched joins (module docstring):
    ``({(earlier, later): Join}, {(earlier, later): [Bottleneck]})``."""
    joins, bottlenecks = {}, {}
    checks = _Checks()
    for e, l in pairs:
        joins[(e, l)], necks = _find_join(rec, e, l, channels, (convs or {}).get((e, l)),
                                          fold_bn, checks)
        if necks:
            bottlenecks[(e, l)] = necks
    return joins, bottlenecks


class _Checks:
    """The probe's checks (backward passes), each (check, y, x) answered once: several
    branches read the same tensor. Lives for one ``find_joins`` call, while the record keeps
    the tensors alive (so their ids stay theirs)."""

    def __init__(self):
        self.answers = {}

    def _ask(self, check, y, x):
        key = (check.__name__, id(y), id(x))
        if key not in self.answers:
            self.answers[key] = check(y, x)
        return self.answers[key]

    def depends(self, y, x) -> bool:
        return self._ask(depends, y, x)

    def channelwise(self, inp, source) -> bool:
        return self._ask(_channelwise, inp, source)

    def landing(self, conv_out, later) -> int | None:
        return self._ask(_landing, conv_out, later)


def _hint(e, l):
    return (f"Use estimator='gradient' for this pair, or name the conv with "
            f"convs={{({e!r}, {l!r}): 'module.path'}}.")


def _find_join(rec: Record, e, l, channels, wanted, fold_bn, checks):
    c_e, c_l = channels[e], channels[l]
    delta, later = rec.deltas[e], rec.outputs[l]
    if wanted is not None:
        return _named_join(rec, e, l, c_e, c_l, wanted, fold_bn, checks), []
    between = [c for c in rec.convs() if rec.ended[e] < c.start < rec.ended[l]
               and c.input is not None and c.output is not None]
    for c in between:  # 1. one conv, as wide as the later layer
        conv = c.module
        if not (conv.in_channels == c_e and conv.out_channels == c_l
                and checks.depends(c.input, delta) and checks.depends(later, c.output)):
            continue
        if not checks.channelwise(c.input, delta):
            raise ValueError(f"between {e!r} and the conv {c.path!r} the channels mix, so the "
                             f"conv's input channels are not {e!r}'s channels. {_hint(e, l)}")
        return Join([_branch(rec, c, (0, c_l), fold_bn)]), []
    return _branched_join(rec, e, l, c_e, c_l, between, fold_bn, checks)


def _named_join(rec, e, l, c_e, c_l, wanted, fold_bn, checks) -> Join:
    base, call = split_call(wanted)
    calls = [c for c in rec.convs() if c.path == base and (call is None or c.index == call)]
    if not calls:
        raise ValueError(f"convs: {wanted!r} is not a Conv2d that ran in the forward pass")
    c = calls[0]
    if not checks.depends(c.input, rec.deltas[e]):
        raise ValueError(f"convs: the conv {wanted!r} does not read layer {e!r}")
    if c.module.in_channels != c_e or c.module.out_channels != c_l:
        raise ValueError(f"conv {wanted!r} maps {c.module.in_channels} to "
                         f"{c.module.out_channels} channels, but ({e!r}, {l!r}) have {c_e} and "
                         f"{c_l}")
    if not checks.channelwise(c.input, rec.deltas[e]):
        raise ValueError(f"between {e!r} and the conv {c.path!r} the channels mix, so the "
                         f"conv's input channels are not {e!r}'s channels. {_hint(e, l)}")
    return Join([_branch(rec, c, (0, c_l), fold_bn)])


def _branched_join(rec: Record, e, l, c_e, c_l, between, fold_bn, checks):
    """2. branches writing slices of the later layer, directly or through one bottleneck."""
    delta, later = rec.deltas[e], rec.outputs[l]
    direct, necks, unjoined = [], [], []
    readers = [c for c in between if c.module.in_channels == c_e
               and checks.depends(c.input, delta) and checks.depends(later, c.output)
               and checks.channelwise(c.input, delta)]
    for r in readers:
        offset = checks.landing(r.output, later)
        if offset is not None:
            direct.append(_branch(rec, r, (offset, offset + r.module.out_channels), fold_bn))
            continue
        seconds = []
        for s in between:
            if (s.start > r.end and s.module.in_channels == r.module.out_channels
                    and checks.depends(s.input, r.output)
                    and checks.channelwise(s.input, r.output)):
                offset = checks.landing(s.output, later)
                if offset is not None:
                    seconds.append(_branch(rec, s, (offset, offset + s.module.out_channels),
                                           fold_bn))
        if not seconds:
            unjoined.append(r.path)
            continue
        layer, width = _bottleneck_layer(rec, r, seconds, checks)
        first = Join([_branch(rec, r, (0, r.module.out_channels), fold_bn)])
        necks.append(Bottleneck(layer, width, first, Join(seconds)))
    slices = sorted([b.rows for b in direct] + [b.rows for n in necks for b in n.second.branches])
    covered = sum(b - a for a, b in slices)
    disjoint = all(a1 <= b0 for (_, a1), (b0, _) in zip(slices, slices[1:]))
    if len(slices) >= 2 and disjoint and covered == c_l:
        return Join(direct), necks
    detail = ""
    if len(slices) >= 2:
        gaps = _gaps(slices, c_l)
        detail = (f" Branches write channels {[list(s) for s in slices]} of {l!r}; channels "
                  f"{gaps} come through two or more convolutions in a row (the conv estimator "
                  "follows at most one bottleneck, as Summit's InceptionV1 blocks have).")
    elif unjoined or len(slices) == 1:
        detail = (" The convolutions in between run one after another (no branches): pass the "
                  "layers between as pairs of their own.")
    raise ValueError(f"layer pair ({e!r}, {l!r}): no convolution reads {e!r}'s {c_e} channels "
                     f"and writes {c_l} channels on the way to {l!r}.{detail} {_hint(e, l)}")


def _gaps(slices, width) -> list[list[int]]:
    gaps, at = [], 0
    for a, b in slices:
        if a > at:
            gaps.append([at, a])
        at = max(at, b)
    if at < width:
        gaps.append([at, width])
    return gaps


def _bottleneck_layer(rec: Record, first: Call, seconds: list[Branch],
                      checks) -> tuple[str, int]:
    """The outermost module call whose output the second conv(s) read channel for channel and
    that comes from the first conv (a branch's ``BasicConv2d``, its ReLU, or the conv itself)."""
    width = first.module.out_channels
    second_calls = [c for c in rec.convs() if any(b.conv == c.path and b.call == c.index
                                                  for b in seconds)]
    begin = min(c.start for c in second_calls)
    candidates = sorted((c for c in rec.calls if c.output is not None and c.output.ndim == 4
                         and c.output.shape[1] == width and first.end <= c.end < begin),
                        key=lambda c: (c.start, -c.end))
    for c in candidates:
        if c is first or (checks.depends(c.output, first.output)
                          and all(checks.channelwise(s.input, c.output) for s in second_calls)):
            return rec.call_name(c), width
    return rec.call_name(first), width


def _branch(rec: Record, c: Call, rows, fold_bn) -> Branch:
    scale, bn = None, None
    if fold_bn:
        for path, module, inp in rec.bn_inputs:
            if inp is c.output:
                scale, bn = _bn_scale(module), path
                break
    return Branch(c.path, c.index, scale, bn, (int(rows[0]), int(rows[1])))


def depends(y: torch.Tensor, x: torch.Tensor) -> bool:
    """True if ``y`` depends on ``x`` (one backward pass)."""
    if y is x:
        return True
    if not y.requires_grad:
        return False
    return torch.autograd.grad(y.sum(), x, retain_graph=True, allow_unused=True)[0] is not None


def _image(y: torch.Tensor, x: torch.Tensor):
    """Where each channel of ``x`` goes in ``y``, from two backward passes: ``(target,
    dead)``, channel p of ``x`` reaching channel ``target[p]`` of ``y`` only (``dead[p]``: it
    reaches none in the probe's images); None if some channel reaches two or more.

    The cotangents weight channel q of ``y`` by r_q, then by r_q (q + 1) (r random, positive).
    Where channel p reaches q alone, its gradient in the second pass is exactly q + 1 times the
    first at every position, whatever the per-channel operations between; where it reaches
    several channels, the two gradients are not proportional (their ratio is a weighted mean
    of the q + 1 that varies over positions). Per channel: the least-squares ratio t of the two
    and its relative residual, accumulated in float64 a few channels at a time."""
    c_y = y.shape[1]
    gen = torch.Generator(device=y.device).manual_seed(0)
    weights = torch.rand(c_y, generator=gen, device=y.device, dtype=torch.float64) + 0.5
    code = torch.arange(1, c_y + 1, device=y.device, dtype=torch.float64)
    shape = (1, c_y) + (1,) * (y.ndim - 2)
    grads = []
    for w in (weights, weights * code):
        g, = torch.autograd.grad(y, x, w.to(y.dtype).view(shape).expand_as(y),
                                 retain_graph=True, allow_unused=True)
        if g is None:
            return None
        grads.append(g)
    first, second = grads
    sums = []
    step = max(1, 2 ** 20 // max(1, first[:, :1].numel()))
    for c0 in range(0, x.shape[1], step):
        a = first[:, c0:c0 + step].transpose(0, 1).reshape(min(step, x.shape[1] - c0), -1)
        b = second[:, c0:c0 + step].transpose(0, 1).reshape(a.shape)
        a, b = a.double(), b.double()
        sums.append(torch.stack([(a * a).sum(1), (a * b).sum(1), (b * b).sum(1)], 1))
    s11, s12, s22 = torch.cat(sums).unbind(1)
    dead = s11 <= 0
    t = s12 / torch.where(dead, 1.0, s11)
    residual = (s22 - t * s12) / torch.where(dead, 1.0, s22)
    target = torch.round(t) - 1
    ok = dead | ((residual < 1e-6) & ((t - torch.round(t)).abs() < 1e-2) & (target >= 0)
                 & (target < c_y))
    if not bool(ok.all()):
        return None
    return torch.where(dead, 0, target).long(), dead


def _channelwise(inp: torch.Tensor, source: torch.Tensor) -> bool:
    """True if channel i of ``inp`` depends on channel i of ``source`` only."""
    if inp.shape[1] != source.shape[1] or inp.ndim != 4 or source.ndim != 4:
        return False
    if inp is source:
        return True
    image = _image(inp, source)
    if image is None:
        return False
    target, dead = image
    return bool((target[~dead] == torch.arange(len(target), device=target.device)[~dead]).all())


def _landing(conv_out: torch.Tensor, later: torch.Tensor) -> int | None:
    """The offset at which ``conv_out``'s channels land in ``later``'s channels, one for one
    through per-channel operations (BatchNorm, activation, concatenation): later channel
    offset + p depends on channel p alone. None if they do not."""
    if later.ndim != 4 or conv_out.ndim != 4 or conv_out.shape[1] > later.shape[1]:
        return None
    image = _image(later, conv_out)
    if image is None:
        return None
    target, dead = image
    if dead.all():
        return None
    offsets = (target - torch.arange(len(target), device=target.device))[~dead].unique()
    if len(offsets) != 1:
        return None
    offset = int(offsets[0])
    return offset if 0 <= offset <= later.shape[1] - conv_out.shape[1] else None


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

