"""VITAL: feature visualisation by aligning the distributions of real and synthetic features.

Gorgun, Schiele, Fischer, "VITAL: More Understandable Feature Visualization through Distribution
Alignment and Relevant Information Flow" (2025); released code adagorgun/VITAL. The image is
optimised in pixel space (from N(0, 1) noise in the model's input space) so that, at several
layers, each channel's distribution of values over positions matches that of real reference
images (``losses.sort_matching``), with TV and L2 priors, roll jitter, Adam with betas 0.5/0.9,
a cosine schedule with linear warm-up, and the pixels clamped to the valid range each step.

- Class neurons: the references are real images of the class, and the loss is only the sort
  matching at the matched layers. There is no logit term: the class enters through its images.
- Inner neurons (and clusters, by their mean direction): the references are the source images of
  the neuron's top exemplars. LRP relevance from the target back to each matched layer
  (``relevance``), min-max normalised per channel map, multiplies the features of real and
  synthetic images alike; each channel's term is weighted by its maximum relevance (min-max
  normalised over channels, averaged over the reference images). The synthetic image's relevance
  is recomputed every step and treated as a constant.

Unlike the released code, which runs one image per call, a batch holds one image per target and
its loss is the sum of the per-image losses, so each image follows exactly the path it would
follow alone (Adam is elementwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .jitter import draw_roll, roll
from .losses import pixel_norm, sort_matching, total_variation
from .options import VitalOptions
from .targets import Target

__all__ = ["VitalProblem", "VitalReference", "cosine_lr", "layer_weights", "references_for"]


def cosine_lr(base: float, warmup: int, steps: int, step: int) -> float:
    """VITAL's schedule: linear warm-up over ``warmup`` steps, then a cosine to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))) * base


def layer_weights(target: Target, layers: list, position, options: VitalOptions) -> list:
    """The weight of each matched layer for ``target``: ``options.layer_weights`` if given,
    else the released rule (classes: 1 everywhere; inner neurons: 0.1 for the first layer, 1
    for the others before the target's layer, 0 from the target's layer on)."""
    if options.layer_weights is not None:
        return [float(options.layer_weights[name]) for name in layers]
    if target.kind == "class":
        return [1.0] * len(layers)
    own = position(target.layer)
    return [0.0 if position(name) >= own else (0.1 if i == 0 else 1.0)
            for i, name in enumerate(layers)]


def _normalise(values: torch.Tensor, dim, eps: float) -> torch.Tensor:
    """Min-max normalisation along ``dim`` (VITAL's ``(v - min) / (max - min + eps)``)."""
    values = values - values.amin(dim, keepdim=True)
    return values / (values.amax(dim, keepdim=True) + eps)


def _attention(relevance: torch.Tensor, eps: float) -> torch.Tensor:
    """Relevance maps (B, C, P) min-max normalised over positions. A constant map (above all
    the zero map of a target that has fallen silent) gives uniform attention 1: the released
    code turns it into zeros, which zeroes the loss's gradient, so a synthetic image whose
    target stops firing stays dead (measured on the playground CNN: 3 of 6 block4 neurons went
    black). Uniform attention keeps matching the exemplars' features until the target fires."""
    span = relevance.amax(-1, keepdim=True) - relevance.amin(-1, keepdim=True)
    return torch.where(span > 0, _normalise(relevance, -1, eps), torch.ones_like(relevance))


@dataclass
class VitalReference:
    """What one target is matched to: per matched layer the sorted target (C, P) and the channel
    weights (C,), the layer weights, and the target's maximum activation over the references."""

    targets: dict
    channel_weights: dict
    weights: list
    max_activation: float


def references_for(session, targets: list[Target], images: list, layers: list, weights: list,
                   options: VitalOptions, chunk: int, progress: bool = False,
                   desc: str = "references") -> list[VitalReference]:
    """Real features of every target's reference images (``images[i]`` for ``targets[i]``),
    the images of all targets passed together in chunks of ``chunk``."""
    owner = torch.cat([torch.full((len(x),), i, dtype=torch.long) for i, x in enumerate(images)])
    everything = torch.cat(list(images))
    active = [[n for n, w in zip(layers, ws) if w != 0] for ws in weights]
    used = [n for n in layers if any(n in a for a in active)]
    inner = torch.tensor([t.kind != "class" for t in targets])
    sums = {n: None for n in used}
    importance = {n: None for n in used}
    best = torch.full((len(targets),), -math.inf, dtype=torch.float64)
    starts = range(0, len(everything), chunk)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        x = everything[start:start + chunk].to(session.device, session.dtype)
        who = owner[start:start + chunk]
        mine = [targets[i] for i in who.tolist()]
        with torch.no_grad():
            feats = session.features(x, used) if used else {}
            acts = session.activations(x, mine).double().cpu()
        best = best.scatter_reduce(0, who, acts, reduce="amax")
        rows = inner[who].to(session.device)
        inner_layers = [n for n in used if any(n in active[i] for i in who[inner[who]].tolist())]
        if inner_layers:
            relevance = _relevance(session, x, mine, inner_layers)
            for n in inner_layers:
                attention = _attention(relevance[n], options.norm_eps)
                feats[n] = torch.where(rows[:, None, None], attention * feats[n], feats[n])
                weight = _normalise(relevance[n].amax(-1), -1, options.norm_eps)
                importance[n] = _add_rows(importance[n], who, weight, len(targets))
        for n in used:
            sums[n] = _add_rows(sums[n], who, feats[n].sort(dim=-1).values, len(targets))
    count = torch.bincount(owner, minlength=len(targets))
    out = []
    for i, t in enumerate(targets):
        goal = {n: sums[n][i] / count[i] for n in active[i]}
        channel_weights = {n: (importance[n][i] / count[i] if bool(inner[i]) else
                               torch.ones_like(goal[n][:, 0])) for n in active[i]}
        out.append(VitalReference(goal, channel_weights, list(weights[i]), float(best[i])))
    return out


def _add_rows(total, rows: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """``total`` (n, ...) plus ``values`` summed into the rows ``rows`` (created as zeros)."""
    if total is None:
        total = torch.zeros((n, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return total.index_add(0, rows.to(values.device), values)


def _relevance(session, x, targets: list[Target], layers) -> dict[str, torch.Tensor]:
    """Relevance (B, C, P) at ``layers`` from each image's target (class rows stay zero)."""
    inject = {}
    for b, t in enumerate(targets):
        if t.kind == "class":
            continue
        if t.layer not in inject:
            inject[t.layer] = torch.zeros(x.shape[0], session.widths[t.layer],
                                          device=x.device, dtype=x.dtype)
        inject[t.layer][b] = t.direction(session.widths[t.layer], x.device, x.dtype)
    return session.relevance.maps(session.forward, x, inject, layers)


class VitalProblem:
    """One batch of targets (one image each) and their references, optimised by ``step``."""

    def __init__(self, session, targets: list[Target], references: list[VitalReference],
                 layers: list, generators, options: VitalOptions):
        self.session, self.targets, self.options = session, targets, options
        self.generators = generators
        b = len(targets)
        h, w = session.size
        start = torch.stack([torch.randn(3, h, w, generator=g) * options.init_std
                             for g in generators])
        self.x = start.to(session.device, session.dtype).requires_grad_(True)
        self.layers = [n for n in layers
                       if any(r.weights[layers.index(n)] != 0 for r in references)]
        device, dtype = session.device, session.dtype
        self.weights = torch.tensor([[r.weights[layers.index(n)] for n in self.layers]
                                     for r in references], device=device,
                                    dtype=dtype).reshape(b, -1)
        self.inner = torch.tensor([t.kind != "class" for t in targets], device=device)
        self.goal, self.channel_weights = {}, {}
        for n in self.layers:
            width = session.widths[n]
            ref = next(r.targets[n] for r in references if n in r.targets)
            zeros = torch.zeros_like(ref)
            self.goal[n] = torch.stack([r.targets.get(n, zeros) for r in references])
            self.channel_weights[n] = torch.stack(
                [r.channel_weights.get(n, torch.zeros(width, device=device, dtype=dtype))
                 for r in references])
        priors = [options.priors(t.kind) for t in targets]
        self.tv_l1, self.tv_l2, self.l2 = (torch.tensor(p, device=device, dtype=dtype)
                                          for p in zip(*priors))
        self.low, self.high = session.space.bounds(self.x)
        self.optimizer = torch.optim.Adam([self.x], lr=options.lr,
                                          betas=tuple(options.betas), eps=options.eps)
        self.last_loss = torch.full((b,), math.nan)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) the per-image VITAL loss of images ``x`` (already jittered)."""
        o = self.options
        inner_layers = [n for i, n in enumerate(self.layers)
                        if bool((self.weights[:, i] != 0)[self.inner].any())]
        attention = {}
        if inner_layers and bool(self.inner.any()):
            relevance = _relevance(self.session, x, self.targets, inner_layers)
            for n in inner_layers:
                a = _attention(relevance[n], o.norm_eps)
                attention[n] = torch.where(self.inner[:, None, None], a, torch.ones_like(a))
        feats = self.session.features(x, self.layers)
        match = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for i, n in enumerate(self.layers):
            f = feats[n] * attention[n] if n in attention else feats[n]
            match = match + self.weights[:, i] * sort_matching(f, self.goal[n],
                                                               self.channel_weights[n])
        tv1, tv2 = total_variation(x)
        return o.feat_dist * match + self.tv_l1 * tv1 + self.tv_l2 * tv2 + self.l2 * pixel_norm(x)

    def step(self, i: int) -> None:
        o = self.options
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(o.lr, o.warmup, o.steps, i)
        draws = draw_roll(self.generators, o.jitter, o.flip)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(roll(self.x, draws))
        loss.sum().backward()
        self.optimizer.step()
        if o.clamp:
            with torch.no_grad():
                self.x.copy_(torch.maximum(torch.minimum(self.x, self.high), self.low))
        self.last_loss = loss.detach()

    def inputs(self) -> torch.Tensor:
        """The images in the model's input space (B, 3, H, W)."""
        return self.x.detach()
