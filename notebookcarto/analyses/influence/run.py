"""``collect_influence``: the streaming pass that fills Summit's influence counts I for layer
pairs, with one ``Capture`` block (one ``ModelGuard``) around the whole pass."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Sequence

import torch
from torch import nn

from ...capture import Capture, LayerError, StopForward, resolve_layers
from ...datasets.items import image_data
from ...stats.collect import check_device, check_labels
from ...stats.influence import InfluenceStats
from ..backend import choose_backend
from .estimators import _gradient_influences, conv_influence
from .joins import Join, probe

__all__ = ["ESTIMATORS", "collect_influence"]

ESTIMATORS = ("conv", "gradient")


def collect_influence(model: nn.Module, data,
                      pairs: Sequence[tuple[str, str]] | tuple[str, str], *,
                      estimator: str | Sequence[str] = "conv", top_inputs: int = 5,
                      num_classes: int | None = None, stride: int = 1,
                      min_influence: float = 0.0, fold_bn: bool = True,
                      convs: dict[tuple[str, str], str] | None = None, skip_tokens: int = 0,
                      chunk_elements: int | None = None, backend: str = "auto",
                      index_offset: int = 0, device: torch.device | str | None = None,
                      batch_size: int = 64, image_key: str | None = None,
                      label_key: str | None = None, progress: bool = True) -> InfluenceStats:
    """One streaming pass over ``data`` that fills Summit's influence counts I for every
    (earlier, later) layer pair in ``pairs``.

    ``data`` yields images with labels: a DataLoader, a data set (read in order in batches of
    ``batch_size``), tensors ``(images, labels)``; see ``notebookcarto.datasets.items``.

    ``estimator``: ``"conv"`` (Summit's grouped-convolution estimator; the pair must be joined by
    a Conv2d reading the earlier layer's channels, found automatically or named in ``convs``
    {(earlier, later): "module.path"}), ``"gradient"`` (activation x gradient, any pair with a
    path between them) or both, e.g. ``("conv", "gradient")``, computed in the same forward
    passes. See the package docstring for what each estimator means. Per image and later
    channel, the top ``top_inputs`` earlier channels (Summit's k = 5) with influence above
    ``min_influence`` add 1 to I[label][j][i]. ``stride`` subsamples the conv's output positions
    (conv estimator); ``fold_bn`` folds a BatchNorm after the joining conv into its kernel.
    ``skip_tokens`` drops leading tokens of (B, T, C) maps (gradient estimator). Intermediate
    tensors hold about ``chunk_elements`` values (default 2**20 on CPU, 2**26 on CUDA).
    ``backend`` is ``conv_influence``'s: ``"torch"`` (the grouped conv), ``"numba"`` (a fused CPU
    kernel, same numbers) or ``"auto"`` (numba on CPU, torch elsewhere). Batches need integer
    labels; ``num_classes`` defaults to the width of the model's logits. Images get ids from
    ``index_offset`` so passes over disjoint parts of a data set can be merged.

    The first batch's first images run once more in a probe pass that plans the work (see
    ``joins.probe``); then one ``Capture`` block covers the whole pass, so the model is
    snapshot and put back once, not per batch, and is left exactly as it was. Cost: the conv
    estimator about one extra grouped conv per pair (goal: at most 3 forward passes in all); the
    gradient estimator one batched backward pass through the block per later channel, so far
    more (use it on a GPU for large data).
    """
    estimators = [estimator] if isinstance(estimator, str) else list(dict.fromkeys(estimator))
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad or not estimators:
        raise ValueError(f"unknown estimator {bad or estimator!r}: choose from {ESTIMATORS}")
    pairs = _check_pairs(model, pairs)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if top_inputs < 1:
        raise ValueError(f"top_inputs must be at least 1, got {top_inputs}")
    dev = check_device(model, device)
    choose_backend(backend, dev)  # refuse a bad backend before the pass; each conv input decides
    items = image_data(data, batch_size=batch_size, image_key=image_key, label_key=label_key,
                       model=model)
    config = dict(pairs=[list(p) for p in pairs], estimators=estimators,
                  top_inputs=int(top_inputs), min_influence=float(min_influence),
                  stride=int(stride), fold_bn=bool(fold_bn), skip_tokens=int(skip_tokens),
                  num_classes=num_classes, channels={}, joins={}, n_images=0, image_ranges=[])
    batches = items.batches(index_offset=index_offset, device=dev, labels="required",
                            progress=progress, desc="influence")
    first = next(batches)
    channels, joins, width = probe(model, first.images[:2], pairs, estimators=estimators,
                                   convs=convs, skip_tokens=skip_tokens, fold_bn=fold_bn)
    if config["num_classes"] is None:
        if width is None:
            raise ValueError("the model's output is not (B, num_classes) logits: pass "
                             "num_classes=...")
        config["num_classes"] = width
    config["channels"] = channels
    config["joins"] = {f"{l}|{e}": {"conv": j.conv, "call": j.call, "bn": j.bn}
                       for (e, l), j in joins.items()}
    stats = InfluenceStats.empty(config, device=dev)
    runner = _Runner(model, pairs, estimators, joins, stats, chunk_elements, backend)
    n = 0
    with runner.capture() as capture:
        for i, batch in enumerate(itertools.chain([first], batches)):
            check_labels(batch.labels, config["num_classes"], i)
            runner.run(capture, batch.images, batch.labels)
            n += batch.images.shape[0]
    config["n_images"] = n
    config["image_ranges"] = [[index_offset, index_offset + n]]
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
    """The callbacks of one ``Capture`` block that runs every batch: conv-estimator influence
    computed from the input of each joining conv (``on_input``); for the gradient estimator, a
    zero requiring grad added to each earlier layer's output and each later layer's output kept
    (``on_output``); the forward pass stops (``StopForward``) once all is collected."""

    def __init__(self, model: nn.Module, pairs, estimators, joins: dict[tuple, Join],
                 stats: InfluenceStats, chunk_elements, backend):
        self.model, self.stats, self.config = model, stats, stats.config
        self.chunk, self.backend = chunk_elements, backend
        self.grad_pairs = pairs if "gradient" in estimators else []
        self.grad_earlier = {e for e, _ in self.grad_pairs}
        self.grad_later = {l for _, l in self.grad_pairs}
        self.by_conv = defaultdict(list)  # "conv path#call" -> [(join, reducer)]
        if "conv" in estimators:
            for (e, l), join in joins.items():
                self.by_conv[join.name].append((join, stats.reducer(e, l, "conv")))
        named = dict(model.named_modules())
        self.convs = {name: named[entries[0][0].conv] for name, entries in self.by_conv.items()}
        self.events = len(self.grad_earlier | self.grad_later) + len(self.by_conv)

    def capture(self) -> Capture:
        """The block for the whole pass: eval mode, parameters frozen, put back on exit."""
        return Capture(self.model, sorted(self.grad_earlier | self.grad_later),
                       on_output=self._on_layer, inputs=sorted(self.by_conv),
                       on_input=self._on_conv_input, detach=False, freeze=True)

    def run(self, capture: Capture, x: torch.Tensor, y: torch.Tensor) -> None:
        """One forward pass over a batch (stopped once all is collected), then the gradient
        estimator's backward passes."""
        self.labels, self.values, self.deltas, self.later = y, {}, {}, {}
        self.remaining = self.events
        grad = torch.enable_grad() if self.grad_pairs else torch.no_grad()
        try:
            with grad:
                capture.forward(x)
            if self.remaining:
                raise LayerError("a joining convolution did not run during the forward pass")
            if self.grad_pairs:
                self._gradient()
        finally:
            self.values = self.deltas = self.later = None

    def _done(self):
        self.remaining -= 1
        if self.remaining == 0:
            raise StopForward

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

    def _on_conv_input(self, name, args):
        module = self.convs[name]
        with torch.no_grad():
            inp = args[0].detach()
            infl = None
            for join, reducer in self.by_conv[name]:
                if infl is None:
                    infl = conv_influence(
                        inp, module.weight.detach(),
                        stride=(module.stride[0] * self.config["stride"],
                                module.stride[1] * self.config["stride"]),
                        padding=module.padding, dilation=module.dilation, scale=join.scale,
                        padding_mode=module.padding_mode, chunk_elements=self.chunk,
                        backend=self.backend)
                reducer.update(infl, self.labels)
        self._done()

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
                self.stats.reducer(e, l, "gradient").update(inf, self.labels)
