"""Neuron-influence aggregation (Summit, REFERENCE section 1.2): class-wise counts I[y][j][i] of
how often channel i of an earlier layer is among the top-k inputs of channel j of a later layer.

Two estimators of the per-image influence inf_{i->j}(x), both streamed in one pass over a loader
(``collect_influence``) into ``InfluenceCounts`` reducers (mergeable, serialisable):

``"conv"`` (Summit's): for layers joined by a convolution with kernel K, inf_{i->j} is the maximum
    over positions of the conv's input map i convolved with the kernel slice K[j, i] alone: no sum
    over inputs, no bias, no activation. It measures how strongly input i alone can drive output j
    somewhere in the image. One grouped convolution (groups = input channels) on the model's
    device, chunked over input channels (and images) so memory stays below ``chunk_elements``;
    on CPU, by default, a fused compiled loop (numba) computes the same maxima without the
    C_in x C_out intermediate maps, several times faster there.
    The input is what the conv really reads: per-channel operations between the earlier layer
    and the conv (max-pooling, BatchNorm, activations) are included, which the original skipped
    for the max-pools before mixed4a / mixed5a. A BatchNorm right after the conv has its
    per-output-channel scale folded into the kernel (``fold_bn``): a positive scale does not
    change the ranking of inputs, but a negative one turns the maximum into a minimum, which the
    original ignored. ``stride`` subsamples the conv's output positions (the original used 3 to
    save work; default 1 = every position). When the later layer is a residual block, the joining
    conv is the block's first conv: the estimate then ranks inputs of that conv's output channel
    j (a hidden channel of the block with the same index), ignoring the shortcut and the second
    conv; prefer ``"gradient"`` there.

``"gradient"`` (for any pair of layers joined by anything: residual blocks, inception modules,
    transformer blocks): inf_{i->j} is the first-order contribution of earlier channel i to
    a_j, the spatial maximum of later channel j: sum over positions q of X_i(q) * d a_j / d X_i(q)
    (activation times gradient, at the argmax of channel j). For a piecewise-linear network this
    splits a_j exactly into its inputs' contributions plus the biases' share. Computed with
    batched vector-Jacobian products (``torch.autograd.grad(is_grads_batched=True)``, i.e. vmap
    over output channels), chunked over output channels. It costs about one backward pass
    through the block per later channel.

Both count, per image and later channel j, the top k earlier channels, but only those with a
positive influence: Summit's top-k also counted ties at zero (dead maps, dead output channels).
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..capture import LayerError, ModelGuard, as_channels, model_device, resolve_layers, split_call
from ..stats.collect import _check_labels, _split_batch
from ..stats.influence import InfluenceCounts
from ..stats.merging import check_disjoint, check_same, union

ESTIMATORS = ("conv", "gradient")
# Values per intermediate tensor: small on CPU (the grouped conv's output stays in cache and
# batched backward passes stay cheap), large on GPUs (fewer, fuller kernel launches).
CHUNK_ELEMENTS = {"cpu": 2 ** 20, "cuda": 2 ** 26}


def default_chunk(device) -> int:
    """The default ``chunk_elements`` for a device."""
    return CHUNK_ELEMENTS.get(torch.device(device).type, CHUNK_ELEMENTS["cpu"])


SECTION = "influence"


# -- the two estimators ------------------------------------------------------------------------

def conv_influence(x: torch.Tensor, weight: torch.Tensor, *, stride=1, padding=0, dilation=1,
                   scale: torch.Tensor | None = None, padding_mode: str = "zeros",
                   chunk_elements: int | None = None, method: str = "auto") -> torch.Tensor:
    """Summit's per-image influence through one convolution: (B, C_out, C_in).

    ``x`` (B, C_in, H, W) is the conv's input, ``weight`` (C_out, C_in, kh, kw) its kernel;
    ``stride``, ``padding`` (int, pair or "same" / "valid"), ``dilation`` and ``padding_mode`` as
    in ``nn.Conv2d`` (``stride`` is the total stride at which output positions are evaluated).
    ``scale`` (C_out,), if given, multiplies each output channel's kernel (a folded BatchNorm).
    Entry [b, j, i] is the max over positions of x[b, i] convolved with weight[j, i] alone.

    ``method``: ``"grouped"`` runs one grouped convolution (groups = C_in) per chunk of input
    channels and images, holding about ``chunk_elements`` values (default: ``default_chunk``)
    before the max; ``"fused"`` (CPU, needs numba) computes the same numbers in one compiled loop
    that keeps only running maxima: on CPU the grouped conv is bound by memory (it writes C_in x
    C_out maps per image) and runs several times slower. ``"auto"``: fused on CPU when numba is
    available, else grouped.
    """
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"need x (B, C_in, H, W) and weight (C_out, C_in, kh, kw) with the same "
                         f"C_in, got {tuple(x.shape)} and {tuple(weight.shape)}")
    if method not in ("auto", "grouped", "fused"):
        raise ValueError(f"method must be 'auto', 'grouped' or 'fused', got {method!r}")
    b, c_in, _, _ = x.shape
    c_out, _, kh, kw = weight.shape
    chunk_elements = chunk_elements or default_chunk(x.device)
    stride, dilation = _pair(stride), _pair(dilation)
    x, padding = _pad_input(x, padding, padding_mode, (kh, kw), dilation)
    if scale is not None:
        weight = weight * scale.to(weight.dtype).view(-1, 1, 1, 1)
    h_out = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"the kernel ({kh}x{kw}) does not fit the input {tuple(x.shape[2:])}")
    if method == "fused" or (method == "auto" and x.device.type == "cpu" and _numba_kernel()):
        if x.device.type != "cpu":
            raise ValueError("method='fused' runs on CPU only: use 'grouped' on other devices")
        return _fused_conv_max(x, weight, stride, padding, dilation, (h_out, w_out))
    # group i holds the C_out kernel slices weight[:, i]
    grouped = weight.transpose(0, 1).reshape(c_in * c_out, 1, kh, kw).to(x.dtype)
    per_map = c_out * h_out * w_out  # elements per image and input channel
    n_in = int(min(c_in, max(1, chunk_elements // max(1, b * per_map))))
    n_img = b if n_in > 1 else int(min(b, max(1, chunk_elements // per_map)))
    out = torch.empty(b, c_in, c_out, dtype=torch.float32, device=x.device)
    for i0 in range(0, c_in, n_in):
        i1 = min(i0 + n_in, c_in)
        w = grouped[i0 * c_out:i1 * c_out]
        for b0 in range(0, b, n_img):
            b1 = min(b0 + n_img, b)
            y = F.conv2d(x[b0:b1, i0:i1], w, stride=stride, padding=padding, dilation=dilation,
                         groups=i1 - i0)
            out[b0:b1, i0:i1] = y.view(b1 - b0, i1 - i0, c_out, -1).amax(3)
    return out.transpose(1, 2).contiguous()


@functools.lru_cache(maxsize=1)
def _numba_kernel():
    """The compiled fused kernel, or None without numba (compiled once, cached on disk)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, cache=True)
    def kernel(xp, wt, sy, sx, dy, dx, h_out, w_out, out):
        # xp (B, C_in, Hp, Wp) padded input, wt (C_in, kh, kw, C_out), out (B, C_in, C_out)
        n_img, c_in = xp.shape[0], xp.shape[1]
        kh, kw, c_out = wt.shape[1], wt.shape[2], wt.shape[3]
        for t in numba.prange(n_img * c_in):
            b, i = t // c_in, t % c_in
            row = np.empty((w_out, c_out), dtype=np.float32)  # one output row, all j
            best = np.full(c_out, -np.inf, dtype=np.float32)
            for y in range(h_out):
                row[:] = 0.0
                for a in range(kh):
                    yy = y * sy + a * dy
                    for c in range(kw):
                        taps = wt[i, a, c]
                        for x in range(w_out):
                            v = xp[b, i, yy, x * sx + c * dx]
                            for j in range(c_out):
                                row[x, j] += v * taps[j]
                for x in range(w_out):
                    for j in range(c_out):
                        best[j] = max(best[j], row[x, j])
            out[b, i, :] = best

    return kernel


def _fused_conv_max(x, weight, stride, padding, dilation, out_size) -> torch.Tensor:
    import numba

    kernel = _numba_kernel()
    if kernel is None:
        raise ImportError("method='fused' needs numba: pip install numba, or use 'grouped'")
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    xp = x.detach().to(torch.float32).contiguous().numpy()
    wt = weight.detach().to(torch.float32).permute(1, 2, 3, 0).contiguous().numpy()
    out = np.empty((x.shape[0], x.shape[1], weight.shape[0]), np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        kernel(xp, wt, stride[0], stride[1], dilation[0], dilation[1], *out_size, out)
    finally:
        numba.set_num_threads(threads)
    return torch.from_numpy(out).transpose(1, 2).contiguous()


def gradient_influence(z: torch.Tensor, x: torch.Tensor, *, wrt: torch.Tensor | None = None,
                       skip_tokens: int = 0, chunk_elements: int | None = None,
                       retain_graph: bool = False) -> torch.Tensor:
    """First-order influence of each channel of ``x`` on the spatial maximum of each channel of
    ``z``: (B, C_z, C_x), entry [b, j, i] = sum over positions of x[b, i] * d max(z[b, j]) / d x.

    ``z`` must be computed from ``x`` (or from ``wrt``, a tensor whose gradient equals the
    gradient with respect to ``x``, e.g. a zero added to it). Maps may be (B, C, H, W), token
    sequences (B, T, C) (the first ``skip_tokens`` tokens are not positions of a channel) or
    vectors (B, C). Images must not interact (a model in eval mode). Each batched backward pass
    covers as many output channels as fit in ``chunk_elements`` (default: ``default_chunk``).
    """
    return _gradient_influences(z, [x], [x if wrt is None else wrt], skip_tokens=skip_tokens,
                                chunk_elements=chunk_elements, retain_graph=retain_graph)[0]


def _gradient_influences(z, xs, wrts, *, skip_tokens, chunk_elements, retain_graph=False):
    """``gradient_influence`` of one later map on several earlier maps in one backward pass."""
    if not z.requires_grad:
        raise ValueError("the later map does not depend on the earlier one (it needs no gradient)")
    zc = as_channels(z, skip_tokens=skip_tokens)
    b, c_out, p_out = zc.shape
    positions = zc.argmax(2)  # (B, C_out): where each channel's spatial maximum lies
    xcs = [as_channels(x.detach(), skip_tokens=skip_tokens) for x in xs]
    chunk_elements = chunk_elements or default_chunk(z.device)
    widest = max([c_out * p_out] + [xc.shape[1] * xc.shape[2] for xc in xcs])
    n = int(min(c_out, max(1, chunk_elements // max(1, b * widest))))
    outs = [torch.empty(b, c_out, xc.shape[1], dtype=torch.float32, device=z.device) for xc in xcs]
    images = torch.arange(b, device=z.device)
    for j0 in range(0, c_out, n):
        j1 = min(j0 + n, c_out)
        rows = torch.arange(j1 - j0, device=z.device)
        cot = torch.zeros(j1 - j0, b, c_out, p_out, dtype=z.dtype, device=z.device)
        cot[rows[:, None], images[None], (j0 + rows)[:, None], positions[:, j0:j1].T] = 1
        last = j1 == c_out and not retain_graph
        cot = _from_channels(cot, z, skip_tokens)
        if j1 - j0 == 1:  # a plain backward pass: vmap over one cotangent only adds overhead
            grads = torch.autograd.grad(z, wrts, cot[0], retain_graph=not last, allow_unused=True)
            grads = [None if g is None else g.unsqueeze(0) for g in grads]
        else:
            grads = torch.autograd.grad(z, wrts, cot, is_grads_batched=True,
                                        retain_graph=not last, allow_unused=True)
        for out, xc, g in zip(outs, xcs, grads):
            if g is None:
                raise ValueError("the later map does not depend on one of the earlier maps")
            gc = _grad_channels(g, skip_tokens)
            out[:, j0:j1] = torch.einsum("nbip,bip->bni", gc, xc).float()
    return outs


def _from_channels(cot: torch.Tensor, z: torch.Tensor, skip_tokens: int) -> torch.Tensor:
    """(N, B, C, P) cotangents in channel layout -> (N, *z.shape)."""
    if z.ndim == 4:
        return cot.reshape(cot.shape[0], *z.shape)
    if z.ndim == 3:
        return F.pad(cot.transpose(2, 3), (0, 0, skip_tokens, 0))
    return cot.squeeze(3)


def _grad_channels(g: torch.Tensor, skip_tokens: int) -> torch.Tensor:
    """(N, *x.shape) batched gradients -> (N, B, C, P)."""
    if g.ndim == 5:
        return g.flatten(3)
    if g.ndim == 4:
        return g[:, :, skip_tokens:].transpose(2, 3)
    return g.unsqueeze(3)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad_input(x, padding, padding_mode, kernel, dilation):
    """Apply string padding and non-zero padding modes explicitly: (x, numeric padding)."""
    if padding == "valid":
        return x, (0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(reversed(kernel), reversed(dilation)):  # F.pad wants the last dim first
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        mode = "constant" if padding_mode == "zeros" else padding_mode
        return F.pad(x, pads, mode=mode), (0, 0)
    padding = _pair(padding)
    if padding_mode != "zeros" and any(padding):
        pads = [padding[1], padding[1], padding[0], padding[0]]
        return F.pad(x, pads, mode=padding_mode), (0, 0)
    return x, padding


# -- results -----------------------------------------------------------------------------------

def _key(estimator: str, earlier: str, later: str) -> str:
    return f"{estimator}/{later}|{earlier}"


class InfluenceStats:
    """Influence counts of several layer pairs, for one or more estimators, over one data set.

    ``counts(earlier, later)`` -> (classes, C_later, C_earlier) int64 tensor, Summit's I.
    ``reducers`` maps ``"estimator/later|earlier"`` to an ``InfluenceCounts``. ``config`` holds
    the pairs, estimators, parameters, channel counts, the joining conv (and folded BatchNorm) of
    each pair for the conv estimator, and the number of images. Mergeable (``merge``) and
    serialisable (``state_dict`` / ``from_state_dict``).
    """

    def __init__(self, config: dict, reducers: dict[str, InfluenceCounts]):
        self.config = config
        self.reducers = reducers

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [tuple(p) for p in self.config["pairs"]]

    @property
    def estimators(self) -> list[str]:
        return list(self.config["estimators"])

    @property
    def n_images(self) -> int:
        return self.config["n_images"]

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def counts(self, earlier: str, later: str, estimator: str | None = None) -> torch.Tensor:
        """Summit's I for one pair: (classes, C_later, C_earlier) int64 counts."""
        estimator = estimator or self.estimators[0]
        key = _key(estimator, earlier, later)
        if key not in self.reducers:
            raise KeyError(f"no influence counts for ({earlier!r}, {later!r}) with estimator "
                           f"{estimator!r}: have pairs {self.pairs} and estimators "
                           f"{self.estimators}")
        return self.reducers[key].counts

    def merge(self, other: "InfluenceStats") -> "InfluenceStats":
        """Add another pass's counts (over different images) into these."""
        check_same(self.config, other.config,
                   ("pairs", "estimators", "k", "min_influence", "stride", "fold_bn",
                    "num_classes", "channels", "joins", "skip_tokens"), "influence counts")
        check_disjoint(self.config["image_ranges"], other.config["image_ranges"],
                       "influence counts")
        for key, reducer in self.reducers.items():
            reducer.merge(other.reducers[key])
        self.config["n_images"] += other.n_images
        self.config["image_ranges"] = union(self.config["image_ranges"]
                                            + other.config["image_ranges"])
        return self

    def state_dict(self) -> dict:
        """``{"config": json-ready dict, "tensors": {"estimator/later|earlier/key": tensor}}``."""
        tensors = {f"{key}/{name}": value for key, reducer in self.reducers.items()
                   for name, value in reducer.state_dict().items()}
        return {"config": _jsonable(self.config), "tensors": tensors}

    @classmethod
    def from_state_dict(cls, state: dict, device=None) -> "InfluenceStats":
        config = _jsonable(state["config"])
        stats = cls(config, _make_reducers(config, device))
        for key, reducer in stats.reducers.items():
            reducer.load_state_dict({name: state["tensors"][f"{key}/{name}"]
                                     for name in reducer._state})
        return stats

    def __repr__(self) -> str:
        return (f"InfluenceStats({len(self.pairs)} pairs, estimators {self.estimators}, "
                f"{self.n_images} images, {self.num_classes} classes)")


def _jsonable(config: dict) -> dict:
    import json
    return json.loads(json.dumps(config))


def _make_reducers(config: dict, device=None) -> dict[str, InfluenceCounts]:
    channels = config["channels"]
    return {_key(est, e, l): InfluenceCounts(channels[l], channels[e], config["num_classes"],
                                             config["k"], config["min_influence"], device=device)
            for est in config["estimators"] for e, l in config["pairs"]}


# -- planning: shapes, paths and joining convolutions, from a probe forward pass ----------------

class _Stop(Exception):
    """Raised by a hook once the pass has all it needs from a forward pass."""


@dataclass
class _Join:
    """The convolution that joins an earlier layer to a later one (conv estimator)."""

    conv: str  # module path
    call: int  # which call of that module in a forward pass
    scale: torch.Tensor | None  # folded BatchNorm scale (C_out,), or None
    bn: str | None


class _LayerHooks:
    """Forward hooks on chosen layers (with ``"name#k"`` call addressing) whose callback may
    replace the output; made anew for each forward pass (inside a ``ModelGuard``)."""

    def __init__(self, model: nn.Module, layers, callback):
        self.modules = resolve_layers(model, layers)
        self.callback = callback
        self.calls = defaultdict(int)
        self.seen: set[str] = set()
        wanted = defaultdict(dict)
        for name in self.modules:
            base, call = split_call(name)
            wanted[base][call] = name
        named = dict(model.named_modules())
        for base, calls in wanted.items():
            named[base].register_forward_hook(self._hook(base, calls))

    def _hook(self, base, calls):
        def hook(module, args, output):
            call = self.calls[base]
            self.calls[base] += 1
            if None in calls and call >= 1:
                raise LayerError(f"module {base!r} ran {call + 1} times in one forward pass: "
                                 f"address each call as '{base}#0', '{base}#1', ...")
            name = calls.get(None if None in calls else call)
            if name is None:
                return None
            first = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(first, torch.Tensor):
                raise LayerError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
            self.seen.add(name)
            new = self.callback(name, first)
            if new is None:
                return None
            if isinstance(output, tuple):
                return (new,) + tuple(output[1:])
            if isinstance(output, list):
                return [new] + list(output[1:])
            return new
        return hook

    def check_all_ran(self):
        missing = [n for n in self.modules if n not in self.seen]
        if missing:
            raise LayerError(f"layer(s) {missing} did not run during the forward pass")


def _probe(model, x, pairs, estimators, convs, skip_tokens, fold_bn):
    """Run a few images once, with gradients from every earlier layer, and work out: channel
    counts, that each later layer depends on its earlier layer, the class count from the logits,
    and, for the conv estimator, the joining convolution of each pair and the BatchNorm after it.
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

    def conv_end(path):
        def hook(module, args, output):
            [c for c in conv_calls if c["path"] == path][-1]["output"] = output
        return hook

    def bn_hook(path):
        def hook(module, args, output):
            bn_inputs.append((path, module, args[0]))
        return hook

    with ModelGuard(model):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        hooks = _LayerHooks(model, names, on_layer)
        for path, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_pre_hook(conv_start(path))
                module.register_forward_hook(conv_end(path), prepend=True)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.register_forward_hook(bn_hook(path))
        with torch.enable_grad():
            logits = model(x)
        hooks.check_all_ran()

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
        return _Join(c["path"], c["call"], scale, bn)
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


def _bn_scale(bn) -> torch.Tensor:
    """Per-channel multiplier a BatchNorm applies in eval mode (its sign when it has no running
    statistics: only the sign changes which inputs rank first)."""
    if not bn.affine and bn.running_var is None:
        return None
    weight = (bn.weight.detach() if bn.affine
              else torch.ones_like(bn.running_var, dtype=torch.float32))
    if bn.running_var is None:
        return torch.sign(weight).float()
    return (weight / torch.sqrt(bn.running_var.detach() + bn.eps)).float()


# -- the streaming pass ------------------------------------------------------------------------

def collect_influence(model: nn.Module, loader, pairs, *, estimator="conv", k: int = 5,
                      num_classes: int | None = None, stride: int = 1, min_influence: float = 0.0,
                      fold_bn: bool = True, convs: dict | None = None, skip_tokens: int = 0,
                      chunk_elements: int | None = None, conv_method: str = "auto",
                      index_offset: int = 0, device=None,
                      progress: bool = True) -> InfluenceStats:
    """One streaming pass over ``loader`` that fills Summit's influence counts I for every
    (earlier, later) layer pair in ``pairs``.

    ``estimator``: ``"conv"`` (Summit's grouped-convolution estimator; the pair must be joined by
    a Conv2d reading the earlier layer's channels, found automatically or named in ``convs``
    {(earlier, later): "module.path"}), ``"gradient"`` (activation x gradient, any pair with a
    path between them) or both, e.g. ``("conv", "gradient")``, computed in the same forward
    passes. See the module docstring for what each estimator means. Per image and later channel,
    the top ``k`` earlier channels with influence above ``min_influence`` add 1 to
    I[label][j][i]. ``stride`` subsamples the conv's output positions (conv estimator);
    ``fold_bn`` folds a BatchNorm after the joining conv into its kernel. ``skip_tokens`` drops
    leading tokens of (B, T, C) maps (gradient estimator). Intermediate tensors hold about
    ``chunk_elements`` values (default 2**20 on CPU, 2**26 on CUDA). ``conv_method`` is
    ``conv_influence``'s ``method`` (the grouped conv, or on CPU a fused kernel: same numbers). Batches need integer
    labels; ``num_classes`` defaults to the width of the model's logits. Images get ids from
    ``index_offset`` so passes over disjoint parts of a data set can be merged. The model is left
    exactly as it was. Cost: the conv estimator about one extra grouped conv per pair (goal: at
    most 3 forward passes in all); the gradient estimator one batched backward pass through the
    block per later channel, so far more (use it on a GPU for large data).
    """
    estimators = [estimator] if isinstance(estimator, str) else list(dict.fromkeys(estimator))
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad or not estimators:
        raise ValueError(f"unknown estimator {bad or estimator!r}: choose from {ESTIMATORS}")
    pairs = _check_pairs(model, pairs)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if conv_method not in ("auto", "grouped", "fused"):
        raise ValueError(f"conv_method must be 'auto', 'grouped' or 'fused', got {conv_method!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    dev = model_device(model)
    if device is not None and torch.device(device).type != dev.type:
        raise ValueError(f"the model is on {dev} but device={device!r} was requested: move the "
                         f"model first with model.to({str(device)!r})")
    config = dict(pairs=[list(p) for p in pairs], estimators=estimators, k=int(k),
                  min_influence=float(min_influence), stride=int(stride), fold_bn=bool(fold_bn),
                  skip_tokens=int(skip_tokens), num_classes=num_classes, channels={}, joins={},
                  n_images=0, image_ranges=[])
    stats, runner, start = None, None, index_offset
    total = len(loader) if hasattr(loader, "__len__") else None
    for i, batch in enumerate(tqdm(loader, total=total, desc="influence", disable=not progress)):
        x, y = _split_batch(batch, i)
        if y is None:
            raise ValueError(f"batch {i} has no labels: influence counts are per class, so the "
                             "loader must yield (images, labels)")
        x = x.to(dev, non_blocking=True)
        if stats is None:
            channels, joins, width = _probe(model, x[:2], pairs, estimators, convs, skip_tokens,
                                            fold_bn)
            if config["num_classes"] is None:
                if width is None:
                    raise ValueError("the model's output is not (B, num_classes) logits: pass "
                                     "num_classes=...")
                config["num_classes"] = width
            config["channels"] = channels
            config["joins"] = {f"{l}|{e}": {"conv": j.conv, "call": j.call, "bn": j.bn}
                               for (e, l), j in joins.items()}
            stats = InfluenceStats(config, _make_reducers(config, dev))
            runner = _Runner(model, pairs, estimators, joins, stats, config, chunk_elements,
                             conv_method)
        _check_labels(y, config["num_classes"], i)
        runner.run(x, y.to(dev, non_blocking=True))
        start += x.shape[0]
    if stats is None:
        raise ValueError("the loader yielded no batches: give it at least one image")
    config["n_images"] = start - index_offset
    config["image_ranges"] = [[index_offset, start]]
    return stats


def _check_pairs(model, pairs) -> list[tuple[str, str]]:
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = [pairs]
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"each pair must be (earlier, later) layer names, got {pair!r}")
        e, l = str(pair[0]), str(pair[1])
        if e == l:
            raise ValueError(f"pair ({e!r}, {l!r}) joins a layer to itself")
        out.append((e, l))
    if not out:
        raise ValueError("no layer pairs given: pass pairs=[(earlier, later), ...]")
    if len(set(out)) != len(out):
        raise ValueError(f"layer pairs repeat in {out}: give each pair once")
    resolve_layers(model, list(dict.fromkeys(n for p in out for n in p)))  # unknown names
    return out


class _Runner:
    """Hooks for one forward pass per batch: conv-estimator influence computed in a pre-hook on
    each joining conv; for the gradient estimator, a zero requiring grad added to each earlier
    layer's output and each later layer's output kept; the pass stops once all is collected."""

    def __init__(self, model, pairs, estimators, joins, stats, config, chunk_elements,
                 conv_method):
        self.model, self.stats, self.config = model, stats, config
        self.chunk, self.conv_method = chunk_elements, conv_method
        self.grad_pairs = pairs if "gradient" in estimators else []
        self.grad_earlier = {e for e, _ in self.grad_pairs}
        self.grad_later = {l for _, l in self.grad_pairs}
        self.by_conv = defaultdict(list)  # (conv path, call) -> [(join, reducer)]
        if "conv" in estimators:
            for (e, l), join in joins.items():
                self.by_conv[(join.conv, join.call)].append(
                    (join, stats.reducers[_key("conv", e, l)]))
        self.events = len(self.grad_earlier | self.grad_later) + len(self.by_conv)

    def run(self, x, y):
        self.labels, self.values, self.deltas, self.later = y, {}, {}, {}
        self.remaining = self.events
        named = dict(self.model.named_modules())
        conv_calls = defaultdict(int)
        with ModelGuard(self.model):
            self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            hooks = None
            if self.grad_pairs:
                hooks = _LayerHooks(self.model, sorted(self.grad_earlier | self.grad_later),
                                    self._on_layer)
            for path in {p for p, _ in self.by_conv}:
                named[path].register_forward_pre_hook(self._conv_hook(path, conv_calls))
            grad = torch.enable_grad() if self.grad_pairs else torch.no_grad()
            try:
                with grad:
                    self.model(x)
            except _Stop:
                pass
            if hooks is not None:
                hooks.check_all_ran()
            if self.remaining:
                raise LayerError("a joining convolution did not run during the forward pass")
            if self.grad_pairs:
                self._gradient()
        self.values = self.deltas = self.later = None

    def _done(self):
        self.remaining -= 1
        if self.remaining == 0:
            raise _Stop

    def _on_layer(self, name, out):
        new = None
        if name in self.grad_later:
            self.later[name] = out
        if name in self.grad_earlier:
            self.values[name] = out.detach()
            self.deltas[name] = torch.zeros_like(out, requires_grad=True)
            new = out + self.deltas[name]
        elif name in self.grad_later and self.remaining > 1:
            new = out.clone()  # later in-place ops must not change the kept output
        self._done()
        return new

    def _conv_hook(self, path, calls):
        def hook(module, args):
            call = calls[path]
            calls[path] += 1
            entries = self.by_conv.get((path, call))
            if not entries:
                return
            with torch.no_grad():
                inp = args[0].detach()
                infl = None
                for join, reducer in entries:
                    if infl is None:
                        infl = conv_influence(
                            inp, module.weight.detach(),
                            stride=(module.stride[0] * self.config["stride"],
                                    module.stride[1] * self.config["stride"]),
                            padding=module.padding, dilation=module.dilation, scale=join.scale,
                            padding_mode=module.padding_mode, chunk_elements=self.chunk,
                            method=self.conv_method)
                    reducer.update(infl, self.labels)
            self._done()
        return hook

    def _gradient(self):
        by_later = defaultdict(list)
        for e, l in self.grad_pairs:
            by_later[l].append(e)
        for l, earlier in by_later.items():
            infl = _gradient_influences(self.later[l], [self.values[e] for e in earlier],
                                        [self.deltas[e] for e in earlier],
                                        skip_tokens=self.config["skip_tokens"],
                                        chunk_elements=self.chunk, retain_graph=True)
            for e, inf in zip(earlier, infl):
                self.stats.reducers[_key("gradient", e, l)].update(inf, self.labels)


# -- the Atlas section --------------------------------------------------------------------------

def add_influence(atlas, model: nn.Module, loader, pairs=None, *, estimator: str = "conv",
                  k: int = 5, progress: bool = True, **options) -> InfluenceStats:
    """Run ``collect_influence`` and store the counts in ``atlas.sections["influence"]``.

    ``pairs`` defaults to consecutive atlas layers. ``estimator`` is one of "conv" and
    "gradient" (the graphs read one set of counts); ``options`` go to ``collect_influence``
    (``stride``, ``min_influence``, ``fold_bn``, ``convs``, ``chunk_elements``, ...). The class
    count is the atlas's. Section meta: ``pairs``, ``estimator``, ``k``, ``params``; arrays
    ``counts/<later>|<earlier>`` (classes, C_later, C_earlier) int64. Returns the statistics.
    """
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"add_influence takes one estimator from {ESTIMATORS}, got {estimator!r}")
    if atlas.stats.num_classes is None:
        raise ValueError("this atlas has no class-wise statistics: build it from a loader that "
                         "yields (images, labels)")
    if pairs is None:
        if len(atlas.layers) < 2:
            raise ValueError(f"the atlas has one layer ({atlas.layers}): influence needs pairs "
                             "of layers; pass pairs=[(earlier, later), ...]")
        pairs = list(zip(atlas.layers[:-1], atlas.layers[1:]))
    options.setdefault("num_classes", atlas.stats.num_classes)
    if options["num_classes"] != atlas.stats.num_classes:
        raise ValueError(f"num_classes={options['num_classes']} but the atlas has "
                         f"{atlas.stats.num_classes} classes")
    stats = collect_influence(model, loader, pairs, estimator=estimator, k=k, progress=progress,
                              **options)
    c = stats.config
    atlas.sections[SECTION] = {
        "meta": {"pairs": c["pairs"], "estimator": estimator, "k": c["k"],
                 "params": {key: c[key] for key in ("stride", "min_influence", "fold_bn",
                                                    "skip_tokens", "joins", "n_images",
                                                    "channels")}},
        "arrays": {f"counts/{l}|{e}": stats.counts(e, l).cpu().numpy()
                   for e, l in stats.pairs},
    }
    return stats


def influence_counts(atlas) -> dict[tuple[str, str], np.ndarray]:
    """The counts stored by ``add_influence``: {(earlier, later): (classes, C_later, C_earlier)}."""
    section = atlas.sections.get(SECTION)
    if section is None:
        raise ValueError("this atlas has no 'influence' section yet: run "
                         "notebookcarto.analyses.add_influence(atlas, model, loader) first")
    out = {}
    for e, l in section["meta"]["pairs"]:
        key = f"counts/{l}|{e}"
        if key not in section["arrays"]:
            raise ValueError(f"the 'influence' section lacks {key!r}: run add_influence again")
        out[(e, l)] = np.asarray(section["arrays"][key])
    return out
