"""Planning a pass from the probe (``probe.record``): channel counts, that each later layer
depends on its earlier layer, the class count from the logits, the conv estimator's joins
(with the bottleneck pairs of branched blocks), for each gradient pair whether it runs on
crops or densely, and the chunking that keeps the pass within its memory budget."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...capture import as_channels
from .budget import Chunking
from .joins import Bottleneck, Join, depends, find_joins
from .local import Segment, Window, check_window, find_segment, find_window
from .probe import Record, record

__all__ = ["PassPlan", "plan_pass"]

# images of the first batch that the probe runs
PROBE_IMAGES = 2


@dataclass
class PassPlan:
    """What one influence pass does (``plan_pass``)."""

    pairs: list[tuple[str, str]]  # the requested pairs, then the bottleneck pairs added
    requested: list[tuple[str, str]]
    channels: dict[str, int]
    num_classes: int | None
    joins: dict[tuple[str, str], Join] = field(default_factory=dict)
    bottlenecks: dict[tuple[str, str], list[Bottleneck]] = field(default_factory=dict)
    local: dict[tuple[str, str], tuple[Segment, Window]] = field(default_factory=dict)
    dense: list[tuple[str, str]] = field(default_factory=list)
    chunking: Chunking | None = None

    def config(self) -> dict:
        """The JSON-ready part of the pass's config that the plan decides."""
        return {
            "channels": dict(self.channels),
            "joins": {f"{l}|{e}": j.describe(self.channels[l])
                      for (e, l), j in self.joins.items()},
            "bottlenecks": {f"{l}|{e}": [{"layer": n.layer, "channels": n.channels}
                                         for n in necks]
                            for (e, l), necks in self.bottlenecks.items()},
            "gradient": {**{f"{l}|{e}": {"on": "crops", **window.describe()}
                            for (e, l), (_, window) in self.local.items()},
                         **{f"{l}|{e}": {"on": "dense"} for e, l in self.dense}},
            "chunking": self.chunking.as_dict() if self.chunking else None,
        }


def plan_pass(model, images: torch.Tensor, pairs, *, estimators, convs, skip_tokens,
              fold_bn, budget: int, batch: int, crops: bool, backend: str) -> PassPlan:
    """Run the probe on the first images and plan the pass (module docstring)."""
    earlier = {e for e, _ in pairs}
    names = list(dict.fromkeys(n for pair in pairs for n in pair))

    def then(rec):
        return _plan(rec, pairs, names, estimators=estimators, convs=convs,
                     skip_tokens=skip_tokens, fold_bn=fold_bn, budget=budget, batch=batch,
                     crops=crops, backend=backend)

    return record(model, images[:PROBE_IMAGES], names, earlier, then, budget=budget)


def _plan(rec: Record, pairs, names, *, estimators, convs, skip_tokens, fold_bn, budget, batch,
          crops, backend) -> PassPlan:
    channels = {n: as_channels(rec.outputs[n], skip_tokens=skip_tokens).shape[1] for n in names}
    for e, l in pairs:
        z = rec.outputs[l]
        if not (z.requires_grad and depends(z, rec.deltas[e])):
            raise ValueError(f"layer pair ({e!r}, {l!r}): no path from {e!r} to {l!r}, so {l!r} "
                             f"does not depend on {e!r}. Give pairs as (earlier, later) with the "
                             "later layer computed from the earlier one.")
    logits = rec.logits
    width = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.ndim == 2 else None
    plan = PassPlan(list(pairs), list(pairs), channels, width)
    if "conv" in estimators:
        plan.joins, plan.bottlenecks = find_joins(rec, pairs, channels, convs=convs,
                                                  fold_bn=fold_bn)
        for (e, l), necks in plan.bottlenecks.items():
            for neck in necks:
                channels[neck.layer] = neck.channels
                for pair, join in (((e, neck.layer), neck.first), ((neck.layer, l), neck.second)):
                    if pair not in plan.joins:
                        plan.joins[pair] = join
                        plan.pairs.append(pair)
    if "gradient" in estimators:
        for e, l in pairs:
            local = _local(rec, e, l) if crops else None
            if local is None:
                plan.dense.append((e, l))
            else:
                plan.local[(e, l)] = local
    plan.chunking = _chunking(rec, plan, budget, batch, backend)
    return plan


def _local(rec: Record, e: str, l: str):
    """``(segment, window)`` if the pair's block runs on crops (``local``): the chain of calls
    reproduces the later layer, its window is under half the map, and crops agree with dense
    backward passes; else None."""
    x, z = rec.flows[e].detach(), rec.outputs[l].detach()
    if x.ndim != 4 or z.ndim != 4:
        return None
    segment = find_segment(rec, e, l)
    if segment is None:
        return None
    with torch.no_grad():
        if not torch.allclose(segment(x), z, rtol=1e-4, atol=1e-5 * float(z.abs().max() + 1)):
            return None  # the chain does not reproduce the later layer
    window = find_window(segment, x, z)
    if window is None:
        return None
    agree, per_crop = check_window(segment, x[:1], window)
    if not agree:
        return None
    window.per_crop = per_crop
    return segment, window


def _bytes(t: torch.Tensor) -> int:
    """Bytes per image of a recorded tensor."""
    return t[:1].numel() * t.element_size()


def _chunking(rec: Record, plan: PassPlan, budget: int, batch: int, backend: str) -> Chunking:
    n = rec.n_images
    kept, dense = 0, 0
    local_e = {e for e, _ in plan.local}
    dense_e = {e for e, _ in plan.dense}
    dense_l = {l for _, l in plan.dense}
    kept += sum(_bytes(rec.outputs[e]) for e in local_e - dense_e)
    kept += sum(3 * _bytes(rec.outputs[e]) for e in dense_e)
    kept += sum(_bytes(rec.outputs[l]) for l in dense_l)
    kept += max([8 * plan.channels[l] * plan.channels[e] for e, l in plan.local] + [0])
    dense_row = {}
    for l in dense_l:
        sources = [e for e, l2 in plan.dense if l2 == l]
        begin = min(rec.ended[e] for e in sources)
        inner = [_bytes(c.output) for c in rec.calls
                 if c.output is not None and c.output.ndim > 0 and c.output.shape[0] == n
                 and begin < c.start and c.end < rec.ended[l]]
        dense_row[l] = (_bytes(rec.outputs[l]) + sum(2 * _bytes(rec.outputs[e]) for e in sources)
                        + 2 * max(inner + [0]))
    if dense_row:
        dense = rec.saved_per_image + max(dense_row.values())
    conv = {}
    for join in plan.joins.values():
        for branch in join.branches:
            call = next(c for c in rec.convs()
                        if c.path == branch.conv and c.index == branch.call)
            conv[branch.name] = _conv_cost(call, backend)
    local_row = {}
    for (e, l), (_, window) in plan.local.items():
        crop = window.size[0] * window.size[1] * plan.channels[e] * 4
        local_row[f"{l}|{e}"] = 2 * window.per_crop + 4 * crop
    channels = dict(plan.channels)
    channels.update({f"{l}|{e}": plan.channels[l] for e, l in plan.local})
    gradient = {f"{l}|{e}": "crops" if (e, l) in plan.local else "dense"
                for e, l in list(plan.local) + plan.dense}
    return Chunking.plan(budget, batch, forward=rec.forward_peak, kept=kept, dense=dense,
                         conv=conv, dense_row=dense_row, local_row=local_row, channels=channels,
                         gradient=gradient)


def _conv_cost(call, backend: str) -> int:
    """Bytes per image of ``conv_influence`` on one conv call: the padded input copy (numba),
    the maxima per input channel, the (C_out, C_in) influence and its copies, the top inputs."""
    m = call.module
    h, w = call.input.shape[2:]
    pad = m.padding if isinstance(m.padding, tuple) else (0, 0)
    padded = 0 if backend == "torch" else m.in_channels * (h + 2 * pad[0]) * (w + 2 * pad[1])
    maxima = m.in_channels * (m.out_channels // m.groups)
    influence = 3 * m.out_channels * m.in_channels
    top = 24 * m.out_channels * 8  # values, indices and flat indices of up to 8 top inputs
    return 4 * (padded + maxima + influence) + top
