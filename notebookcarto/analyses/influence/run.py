"""``collect_influence``: the streaming pass that fills Summit's influence counts I for layer
pairs, with one ``Capture`` block (one ``ModelGuard``) around the whole pass, within a memory
budget."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ...capture import Capture, LayerError, StopForward, as_channels, resolve_layers
from ...datasets.items import image_data
from ...datasets.shard import current_world
from ...stats.checkpoint import CHECKPOINT_EVERY, Checkpoint, Seen
from ...stats.collect import check_device, check_labels
from ...stats.collective import finish_pass, together
from ...stats.influence import InfluenceStats
from ..backend import choose_backend
from .budget import DEFAULT_BUDGET, parse_budget
from .estimators import _gradient_influences, conv_influence
from .local import local_influence
from .plan import PassPlan, plan_pass

__all__ = ["ESTIMATORS", "collect_influence"]

ESTIMATORS = ("conv", "gradient")


def collect_influence(model: nn.Module, data,
                      pairs: Sequence[tuple[str, str]] | tuple[str, str], *,
                      estimator: str | Sequence[str] = "conv", top_inputs: int = 5,
                      num_classes: int | None = None, stride: int = 1,
                      min_influence: float = 0.0, fold_bn: bool = True,
                      convs: dict[tuple[str, str], str] | None = None, skip_tokens: int = 0,
                      memory_budget: int | str = DEFAULT_BUDGET, crops: bool = True,
                      chunk_elements: int | None = None, backend: str = "auto",
                      index_offset: int = 0, device: torch.device | str | None = None,
                      batch_size: int = 64, image_key: str | None = None,
                      label_key: str | None = None, progress: bool = True,
                      distributed: str = "auto", checkpoint=None,
                      checkpoint_every: int = CHECKPOINT_EVERY) -> InfluenceStats | None:
    """One streaming pass over ``data`` that fills Summit's influence counts I for every
    (earlier, later) layer pair in ``pairs``.

    ``data`` yields images with labels: a DataLoader, a data set (read in order in batches of
    ``batch_size``), tensors ``(images, labels)``; see ``notebookcarto.datasets.items``.

    ``estimator``: ``"conv"`` (Summit's per-input-channel convolution; the pair must be joined
    by convolutions reading the earlier layer's channels: one conv, the branches of an
    inception block, or a conv named in ``convs`` {(earlier, later): "module.path"}; see
    ``joins``), ``"gradient"`` (activation x gradient, any pair with a path between them) or
    both, e.g. ``("conv", "gradient")``, computed in the same forward passes. See the package
    docstring for what each estimator means. Per image and later channel, the top
    ``top_inputs`` earlier channels (Summit's k = 5) with influence above ``min_influence`` add 1
    to I[label][j][i]. ``stride`` subsamples the conv's output positions (conv estimator);
    ``fold_bn`` folds a BatchNorm after the joining conv into its kernel. ``skip_tokens`` drops
    leading tokens of (B, T, C) maps (gradient estimator).

    Inception blocks (conv estimator): the pair's counts hold the rows of the 1x1 and pool
    branches; each 3x3 / 5x5 branch adds the pairs (earlier, bottleneck) and (bottleneck,
    later), the bottleneck being the branch's first ``BasicConv2d`` (e.g.
    ``"inception3b.branch2.0"``), which the attribution graph turns into Summit's bottleneck
    edges. ``config["bottlenecks"]`` lists them.

    ``memory_budget`` (bytes, or text such as ``"2GB"``, ``"512MB"``) bounds the pass's working
    memory on CPU and GPU alike: the user's batches are split into parts and each estimator's
    work into chunks to stay within it (see ``budget``); the plan chosen is in
    ``config["chunking"]``. ``crops``: run the gradient estimator on crops where the block's
    output depends on a small window of its input (checked against dense backward passes in the
    probe; see ``local``), else densely. ``chunk_elements`` caps the torch back end's
    grouped-conv chunks below what the budget allows. ``backend`` is ``conv_influence``'s:
    ``"torch"`` (the grouped conv), ``"numba"`` (a fused CPU kernel, same numbers) or
    ``"auto"`` (numba on CPU, torch elsewhere). Batches need integer labels; ``num_classes``
    defaults to the width of the model's logits. Images get ids from ``index_offset`` so
    passes over disjoint parts of a data set can be merged.

    The first batch's first images run once more in a probe pass that plans the work (see
    ``plan``); then one ``Capture`` block covers the whole pass, so the model is snapshot and
    put back once, not per batch, and is left exactly as it was.

    Under ``torch.distributed`` (``distributed="auto"``, see ``datasets.shard``) each process
    counts its shard and the counts are combined with collectives, so every rank gets those of
    one process over all the data (``"rank0"``: rank 0 only, the others get None).
    ``checkpoint`` names a folder where the pass saves its counts every ``checkpoint_every``
    batches; started again after a crash it resumes there (``stats.checkpoint``).
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
    budget = parse_budget(memory_budget)
    if not isinstance(crops, bool):
        raise TypeError(f"crops must be True or False, got {crops!r}")
    dev = check_device(model, device)
    backend = choose_backend(backend, dev)  # refuse a bad backend before the pass
    items = image_data(data, batch_size=batch_size, image_key=image_key, label_key=label_key,
                       model=model)
    config = dict(pairs=[list(p) for p in pairs], estimators=estimators,
                  top_inputs=int(top_inputs), min_influence=float(min_influence),
                  stride=int(stride), fold_bn=bool(fold_bn), skip_tokens=int(skip_tokens),
                  num_classes=num_classes, channels={}, joins={}, bottlenecks={}, gradient={},
                  chunking=None, n_images=0, image_ranges=[])
    world = current_world(distributed)
    with together("influence", world):
        run = Checkpoint.open(checkpoint, kind="influence", every=checkpoint_every, world=world,
                              model=model, fingerprint=dict(config, crops=crops, convs=None if convs is None
                                               else {"|".join(k): v for k, v in convs.items()},
                                               index_offset=index_offset, batch_size=batch_size,
                                               images=items.n_images))
        done, seen, stats = 0, Seen(), None
        if run is not None and run.restored is not None:
            done, state = run.restored
            seen = Seen(state)
            stats = InfluenceStats.from_state_dict(state, device=dev)
        batches = items.batches(index_offset=index_offset, device=dev, labels="required",
                                progress=progress and (world is None or world.rank == 0),
                                desc="influence", world=world, skip=done)
        first = next(batches, None)  # None: an empty shard, or a resumed pass with all done
        if first is not None:
            stats = _count(model, first, batches, pairs, config, stats, convs, budget, crops,
                           backend, chunk_elements, batch_size, progress, done, seen, run)
    return finish_pass("influence", stats, empty=lambda c: InfluenceStats.empty(c, device=dev),
                       reducers=lambda s: list(s.reducers.values()), ids=seen.ids,
                       offset=index_offset, world=world, run=run)


def _count(model, first, batches, pairs, config, stats, convs, budget, crops, backend,
           chunk_elements, batch_size, progress, done, seen, run) -> InfluenceStats:
    """Plan the pass on its first batch, then count every batch into ``stats`` (new ones, or
    those of a resumed pass)."""
    plan = plan_pass(model, first.images, pairs, estimators=config["estimators"], convs=convs,
                     skip_tokens=config["skip_tokens"], fold_bn=config["fold_bn"],
                     budget=budget, batch=max(first.images.shape[0], batch_size), crops=crops,
                     backend=backend)
    if config["num_classes"] is None:
        if plan.num_classes is None:
            raise ValueError("the model's output is not (B, num_classes) logits: pass "
                             "num_classes=...")
        config["num_classes"] = plan.num_classes
    config.update(plan.config())
    config["requested"] = [list(p) for p in plan.requested]
    config["pairs"] = [list(p) for p in plan.pairs]
    if progress:
        tqdm.write(f"influence: {plan.chunking.describe()}")
    if stats is None:
        stats = InfluenceStats.empty(config, device=first.images.device)
    runner = _Runner(model, plan, stats, chunk_elements, backend, progress)
    with runner.capture() as capture:
        for i, batch in enumerate(itertools.chain([first], batches), start=done):
            check_labels(batch.labels, config["num_classes"], i)
            runner.run(capture, batch.images, batch.labels)
            stats.config["n_images"] += batch.images.shape[0]
            seen.add(batch.index)
            if run is not None:
                run.step(i + 1, lambda: seen.into(stats.state_dict()))
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
    """The callbacks of one ``Capture`` block that runs every part of every batch:
    conv-estimator influence computed from the input of each joining conv (``on_input``); for
    the gradient estimator, each earlier layer's output kept (with a zero requiring grad added
    for the dense estimator) and each later layer's output (dense) or its channels' argmax
    positions (on crops) (``on_output``); the forward pass stops (``StopForward``) once all is
    collected, then the gradient estimators run."""

    def __init__(self, model: nn.Module, plan: PassPlan, stats: InfluenceStats,
                 chunk_elements, backend, progress):
        self.model, self.plan, self.stats, self.config = model, plan, stats, stats.config
        self.chunking, self.backend, self.progress = plan.chunking, backend, progress
        self.chunk = min(chunk_elements or plan.chunking.conv_elements,
                         plan.chunking.conv_elements)
        self.dense, self.local = list(plan.dense), dict(plan.local)
        self.dense_earlier = {e for e, _ in self.dense}
        self.dense_later = {l for _, l in self.dense}
        self.local_earlier = {e for e, _ in self.local}
        self.local_later = {l for _, l in self.local}
        self.by_conv = defaultdict(list)  # "conv path#call" -> [(branch, reducer)]
        if "conv" in stats.estimators:
            for (e, l), join in plan.joins.items():
                for branch in join.branches:
                    self.by_conv[branch.name].append((branch, stats.reducer(e, l, "conv")))
        named = dict(model.named_modules())
        self.convs = {name: named[entries[0][0].conv] for name, entries in self.by_conv.items()}
        self.layers = sorted(self.dense_earlier | self.dense_later | self.local_earlier
                             | self.local_later)
        self.events = len(self.layers) + len(self.by_conv)

    def capture(self) -> Capture:
        """The block for the whole pass: eval mode, parameters frozen, put back on exit."""
        return Capture(self.model, self.layers, on_output=self._on_layer,
                       inputs=sorted(self.by_conv), on_input=self._on_conv_input, detach=False,
                       freeze=True)

    def run(self, capture: Capture, x: torch.Tensor, y: torch.Tensor) -> None:
        """A batch in parts of ``chunking.images`` images: for each, one forward pass (stopped
        once all is collected), then the gradient estimators."""
        step = self.chunking.images
        parts = range(0, x.shape[0], step)
        bar = tqdm(parts, desc="influence (parts of a batch)", leave=False,
                   disable=not self.progress or len(parts) < 2)
        for b0 in bar:
            self._run_part(capture, x[b0:b0 + step], y[b0:b0 + step])

    def _run_part(self, capture, x, y):
        self.labels, self.values, self.deltas, self.later, self.positions = y, {}, {}, {}, {}
        self.remaining = self.events
        grad = torch.enable_grad() if self.dense else torch.no_grad()
        try:
            with grad:
                capture.forward(x)
            if self.remaining:
                raise LayerError("a joining convolution did not run during the forward pass")
            for reducer in self.stats.reducers.values():
                reducer.count_images(y)
            if self.dense:
                self._dense()
            if self.local:
                self._local()
        finally:
            self.values = self.deltas = self.later = self.positions = None

    def _done(self):
        self.remaining -= 1
        if self.remaining == 0:
            raise StopForward

    def _on_layer(self, name, out):
        new = None
        if name in self.local_later:
            self.positions[name] = _argmax_positions(out)
        if name in self.dense_later:
            self.later[name] = out
        if name in self.dense_earlier:
            self.values[name] = out.detach()
            self.deltas[name] = torch.zeros_like(out, requires_grad=True)
            new = out + self.deltas[name]
        elif name in self.local_earlier:
            self.values[name] = out.detach().clone()  # later in-place ops must not change it
        elif name in self.dense_later and self.remaining > 1:
            new = out.clone()  # later in-place ops must not change the kept output
        self._done()
        return new

    def _on_conv_input(self, name, args):
        module = self.convs[name]
        stride = self.config["stride"]
        with torch.no_grad():
            inp = args[0].detach()
            step = self.chunking.conv_images.get(name, inp.shape[0])
            for b0 in range(0, inp.shape[0], step):
                infl = None
                for branch, reducer in self.by_conv[name]:
                    if infl is None:
                        infl = conv_influence(
                            inp[b0:b0 + step], module.weight.detach(),
                            stride=(module.stride[0] * stride, module.stride[1] * stride),
                            padding=module.padding, dilation=module.dilation,
                            groups=module.groups, scale=branch.scale,
                            padding_mode=module.padding_mode, chunk_elements=self.chunk,
                            backend=self.backend)
                    reducer.add_rows(infl, self.labels[b0:b0 + step], branch.rows[0])
        self._done()

    def _dense(self):
        by_later = defaultdict(list)
        for e, l in self.dense:
            by_later[l].append(e)
        for l, earlier in by_later.items():
            infl = _gradient_influences(self.later[l], [self.values[e] for e in earlier],
                                        [self.deltas[e] for e in earlier],
                                        skip_tokens=self.config["skip_tokens"],
                                        rows=self.chunking.dense_rows[l], retain_graph=True)
            for e, inf in zip(earlier, infl):
                self.stats.reducer(e, l, "gradient").add_rows(inf, self.labels)

    def _local(self):
        for (e, l), (segment, window) in self.local.items():
            x, pos = self.values[e], self.positions[l]  # (B, C_l, 2) rows and columns
            b, c_later = pos.shape[:2]
            image = torch.arange(b, device=x.device).repeat_interleave(c_later)
            channel = torch.arange(c_later, device=x.device).repeat(b)
            infl = local_influence(segment, x, window, image, channel, pos.reshape(-1, 2),
                                   rows=self.chunking.local_rows[f"{l}|{e}"])
            self.stats.reducer(e, l, "gradient").add_rows(infl.view(b, c_later, -1),
                                                          self.labels)


def _argmax_positions(out: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2): the row and column of each channel's spatial maximum."""
    width = out.shape[3]
    flat = as_channels(out.detach()).argmax(2)
    return torch.stack([flat // width, flat % width], 2)
