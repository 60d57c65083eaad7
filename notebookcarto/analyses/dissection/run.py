"""``dissect``: the passes of a Network Dissection over a concept data set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...capture import mappable_layers, model_device
from ...datasets.concept_data import ConceptData
from .batches import Concepts
from .counting import NO_MASKS, thresholds_pass, tally_pass
from .result import Dissection

METHODS = {"original": 0.005, "2020": 0.01}


def dissect(model: nn.Module, data: ConceptData, layers=None, *, method: str = "original",
            quantile: float | None = None, iou_threshold: float = 0.04, concepts=None,
            thresholds: dict | None = None, estimator: str = "auto", k: int = 8192,
            exact_limit: int = 1 << 26, batch_size: int = 64, top_n: int = 10,
            num_workers: int = 0, seed: int = 0, progress: bool = True) -> Dissection:
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
            "sketch" uses ``stats.QuantileSketch`` (fixed memory, rank error about 1/k of the
            positions), "auto" is exact when a layer needs at most ``exact_limit`` values.
        k: capacity of the quantile sketch.
        exact_limit: the most values per layer the exact estimator may hold under "auto".
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
    chosen = Concepts(data, concepts, model_device(model))
    params = dict(method=method, quantile=float(quantile), iou_threshold=float(iou_threshold),
                  estimator=estimator if thresholds is None else "given", k=k, seed=seed,
                  batch_size=batch_size, top_n=top_n, n_images=len(data))

    if thresholds is None:
        pass_one = dict(method=method, quantile=quantile, k=k, seed=seed, chosen=chosen,
                        batch_size=batch_size, num_workers=num_workers, progress=progress,
                        exact_limit=exact_limit)
        thresholds, failed = thresholds_pass(model, data, layers, estimator=estimator, **pass_one)
        if failed:  # images of several sizes made the stream longer than planned
            if estimator == "exact":
                raise ValueError(f"layers {failed} saw more positions than len(data) times those "
                                 "of the first batch (images of several sizes?): use "
                                 "estimator='sketch'")
            thresholds.update(thresholds_pass(model, data, failed, estimator="sketch",
                                              **pass_one)[0])
    else:
        thresholds = _given_thresholds(thresholds, layers)
    tally = tally_pass(model, data, layers, thresholds, chosen, top_n, batch_size, num_workers,
                       progress)
    if int(tally["ground"].sum()) == 0:
        raise ValueError(NO_MASKS)
    return Dissection(
        layers=layers, concepts=chosen.names, concept_categories=chosen.concept_categories,
        categories=chosen.categories,
        thresholds={n: t.cpu().numpy().astype(np.float32) for n, t in thresholds.items()},
        intersection=tally["intersection"], area=tally["area"], ground=tally["ground"],
        top_images=tally["top_images"], top_values=tally["top_values"], params=params)


def _given_thresholds(thresholds: dict, layers) -> dict[str, torch.Tensor]:
    missing = [n for n in layers if n not in thresholds]
    if missing:
        raise KeyError(f"thresholds given for {sorted(thresholds)} but not for {missing}")
    return {n: torch.as_tensor(np.asarray(thresholds[n], dtype=np.float32)) for n in layers}

