"""``dissect``: the passes of a Network Dissection over a concept data set."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ...capture import mappable_layers, model_device
from ...datasets.concept_data import ConceptData
from .batches import Concepts, forward
from .counting import Search, Tally, estimator as make_estimator
from .result import Dissection

__all__ = ["METHODS", "dissect"]

METHODS = {"original": 0.005, "2020": 0.01}


def dissect(model: nn.Module, data: ConceptData, layers=None, *, method: str = "original",
            quantile: float | None = None, iou_threshold: float = 0.04, concepts=None,
            thresholds: dict | None = None, estimator: str = "auto", sketch_size: int = 8192,
            exact_limit: int = 1 << 26, cache_limit: int = 1 << 25, batch_size: int = 64,
            top_n: int = 10, num_workers: int = 0, seed: int = 0,
            progress: bool = True) -> Dissection:
    """Network Dissection of ``layers`` (default: ``mappable_layers(model)``) over ``data``.

    Args:
        model: the network (left exactly as it was); data runs on its device.
        data: a ``ConceptData`` (images with concept masks and/or image-level labels).
        method: ``"original"`` (threshold from the raw activations) or ``"2020"`` (threshold
            from the activations resampled to the mask grid).
        quantile: share of positions above each unit's threshold; default 0.005 (original)
            or 0.01 (2020).
        iou_threshold: a unit with best IoU above this is a detector (0.04).
        concepts: names of the concepts to score (default all); unknown names raise KeyError.
        thresholds: {layer: (C,) thresholds} to skip the quantile pass.
        estimator: how the quantile pass finds thresholds: "exact" keeps the top values of every
            unit (``stats.TopValues``: exact, about ``quantile`` x positions values per unit),
            "sketch" uses ``stats.QuantileSketch`` (fixed memory, rank error about
            1/sketch_size of the positions), "auto" is exact when a layer needs at most
            ``exact_limit`` values.
        sketch_size: capacity of the quantile sketch.
        exact_limit: the most values per layer the exact estimator may hold under "auto".
        cache_limit: the most fired pixels kept per layer (12 bytes each: 400 MB at 2**25)
            from the band around T that lets one forward pass give the thresholds and the
            counts (see ``counting``); a layer that needs more is counted in a second pass; 0
            always takes two passes (faster for tiny models, whose forward costs less than
            the counting).
        batch_size, num_workers: how images are loaded (workers run ``data.load_batch``).
        top_n: top images kept per unit (for galleries).
        seed: seed of the sketch's sampling.
        progress: show progress bars.

    Returns a ``Dissection``. Raises ValueError when the data set has no concept masks or
    labels (for the chosen concepts), when a layer has no spatial maps, or on bad parameters.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    quantile = METHODS[method] if quantile is None else quantile
    if not (isinstance(quantile, (int, float)) and 0 < quantile < 1):
        raise ValueError(f"quantile (the share of positions above the threshold) must be in "
                         f"(0, 1), got {quantile!r}")
    if not iou_threshold >= 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold!r}")
    for name, value in (("batch_size", batch_size), ("top_n", top_n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(data, ConceptData):
        raise TypeError(f"data must be a ConceptData (see notebookcarto.datasets.concept_data), "
                        f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("the data set is empty: dissection needs annotated images")
    if layers is None:
        layers = mappable_layers(model)
        if not layers:
            raise ValueError("found no blocks to dissect in this model: pass layers=[...]")
    layers = [layers] if isinstance(layers, str) else list(layers)
    if estimator not in ("auto", "exact", "sketch"):
        raise ValueError(f"estimator must be 'auto', 'exact' or 'sketch', got {estimator!r}")
    device = model_device(model)
    chosen = Concepts(data, concepts, device)
    params = dict(method=method, quantile=float(quantile), iou_threshold=float(iou_threshold),
                  estimator=estimator if thresholds is None else "given",
                  sketch_size=sketch_size, seed=seed, batch_size=batch_size, top_n=top_n,
                  n_images=len(data))
    feed = dict(batch_size=batch_size, num_workers=num_workers, progress=progress)
    passes = 1
    if thresholds is None:
        def search(kind, cache):
            def make(name, z, mask_shape):
                positions = math.prod(z.shape[2:] if method == "original" else mask_shape)
                estimate = make_estimator(kind, z.shape[1], len(data) * positions,
                                          1.0 - quantile, k=sketch_size,
                                          seed=seed * 1000 + layers.index(name),
                                          exact_limit=exact_limit, device=z.device)
                return Search(estimate, method, quantile, chosen.targets, top_n, cache)
            return make

        states, ground = _pass(model, data, layers, chosen, search(estimator, cache_limit),
                               desc="dissection", **feed)
        found = {name: s.thresholds() for name, s in states.items()}
        failed = [name for name, t in found.items() if t is None]
        if failed:  # images of several sizes made the stream longer than planned
            if estimator == "exact":
                raise ValueError(f"layers {failed} saw more positions than len(data) times those "
                                 "of the first batch (images of several sizes?): use "
                                 "estimator='sketch'")
            again, _ = _pass(model, data, failed, chosen, search("sketch", 0),
                             desc="dissection: thresholds", **feed)
            found.update({name: s.thresholds() for name, s in again.items()})
            passes += 1
        counts = {name: s.counts(found[name]) for name, s in states.items()}
    else:
        found = _given_thresholds(thresholds, layers, device)
        states, ground = _pass(model, data, layers, chosen,
                               lambda name, z, _: Tally(_checked(found, name, z),
                                                        chosen.targets, top_n),
                               desc="dissection", **feed)
        counts = {name: s.result() for name, s in states.items()}
    rest = [name for name in layers if counts[name] is None]
    if rest:
        again, _ = _pass(model, data, rest, chosen,
                         lambda name, z, _: Tally(found[name], chosen.targets),
                         desc="dissection: IoU", **feed)
        counts.update({name: s.result() for name, s in again.items()})
        passes += 1
    params["passes"] = passes
    k_ = chosen.k
    return Dissection(
        layers=layers, concepts=chosen.names, concept_categories=chosen.concept_categories,
        categories=chosen.categories,
        thresholds={n: found[n].cpu().numpy().astype(np.float32) for n in layers},
        intersection={n: counts[n][:, :k_].cpu().numpy() for n in layers},
        area={n: counts[n][:, k_:].cpu().numpy() for n in layers},
        ground=ground.cpu().numpy(),
        top_images={n: states[n].top.index.cpu().numpy() for n in layers},
        top_values={n: states[n].top.values.cpu().numpy() for n in layers}, params=params)


def _pass(model, data, layers, chosen, make_counter, *, desc, batch_size, num_workers, progress):
    """One forward pass over ``data``; ``make_counter(name, z, mask_shape)`` builds each
    layer's ``Search`` or ``Tally`` at its first batch. Returns (counters, G)."""
    device = model_device(model)
    counters = {}
    ground = torch.zeros(chosen.k, dtype=torch.long, device=device)
    for batch, outputs in forward(model, data, layers, batch_size, num_workers, progress, desc):
        masks, mask_target, image_target, batch_ground = chosen.batch(batch, device)
        ground += batch_ground
        index = batch.index.to(device)
        for name in layers:
            z = outputs[name]
            if name not in counters:
                counters[name] = make_counter(name, z, batch.mask_shape)
            counters[name].update(z, batch.mask_shape, masks, mask_target, image_target, index)
    if int(ground.sum()) == 0:
        raise ValueError(NO_MASKS)
    return counters, ground


NO_MASKS = ("the data set has no concept masks or image-level labels (for the chosen concepts): "
            "dissection needs annotated images; check sample(i).masks / .labels")


def _given_thresholds(thresholds: dict, layers, device) -> dict[str, torch.Tensor]:
    missing = [n for n in layers if n not in thresholds]
    if missing:
        raise KeyError(f"thresholds given for {sorted(thresholds)} but not for {missing}")
    return {n: torch.as_tensor(np.asarray(thresholds[n], dtype=np.float32)).to(device)
            for n in layers}


def _checked(found: dict, name: str, z: torch.Tensor) -> torch.Tensor:
    t = found[name]
    if t.shape != (z.shape[1],):
        raise ValueError(f"layer {name!r} has {z.shape[1]} units but {tuple(t.shape)} "
                         "thresholds were given")
    return t
