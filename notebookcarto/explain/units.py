"""Concept explanations of a prediction: which units of a layer carried it, and what they are.

Network Dissection explains a single prediction by the units of the last convolutional layer that
contribute most to the predicted class, each shown with its concept label and its activation
map over the image (Bau, Zhou, Khosla, Oliva, Torralba: "Network Dissection: Quantifying
Interpretability of Deep Visual Representations", CVPR 2017, and "Interpreting Deep Visual
Representations via Network Dissection", TPAMI 2018, section on explaining predictions: the
contribution of a unit is the class weight times the unit's pooled activation).

Here a unit's contribution to class c for one image is gradient x activation, the sum over
positions of dy_c/dZ_k * Z_k with y_c the class logit (``score="logit"``) or its softmax
probability. For a linear head after global average (or max) pooling it equals the paper's
weight x activation exactly, and it applies to any layer of any model. Units are joined with
the atlas: their dissection label (``concept``), their cluster and the cluster's name (its
members' most common label, ``analyses.dissection.cluster_concepts``), and, given an I-GOS mask,
the share of the mask's saliency that falls inside the unit's region (its map upsampled to the
image above the unit's dissection threshold T_k, or above half the map's maximum when the layer
was not dissected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..analyses.dissection import cluster_concepts
from ..capture import Capture, as_channels, model_device
from .masks import upsample
from .model import check_logits, check_targets

__all__ = ["SCORES", "Units", "coverage", "rank_units", "unit_contributions", "unit_labels"]

SCORES = ("logit", "probability")


def unit_contributions(model: nn.Module, images: torch.Tensor, targets, layer: str, *,
                       score: str = "logit", batch_size: int = 64):
    """Gradient x activation of every unit of ``layer`` for the class ``targets`` of each image.

    Returns ``(contributions, maps)``: float32 (n, C) and the units' activation maps (n, C,
    *positions) ((n, C) for vector layers, (n, C, T) for tokens), on the CPU."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    n = images.shape[0]
    targets = torch.as_tensor(targets)
    if targets.ndim == 0:
        targets = targets.expand(n)
    found = {}

    def hold(name, z):
        leaf = z.detach().requires_grad_(True)
        found["z"] = leaf
        return leaf * 1  # later in-place operations change this copy, not the leaf

    contributions, maps = [], []
    device = model_device(model)
    with Capture(model, [layer], on_output=hold, detach=False, freeze=True) as capture:
        for s in range(0, n, batch_size):
            x = images[s:s + batch_size].to(device)
            with torch.enable_grad():
                logits = check_logits(capture.forward(x), x.shape[0])
                t = check_targets(targets[s:s + batch_size], x.shape[0],
                                  logits.shape[1]).to(device)
                y = torch.softmax(logits, 1) if score == "probability" else logits
                z = found.pop("z")
                grad, = torch.autograd.grad(y.gather(1, t.view(-1, 1)).sum(), z,
                                            allow_unused=True)
            if grad is None:
                raise ValueError(f"the model's output does not depend on layer {layer!r}")
            per_unit = as_channels(grad * z.detach()).sum(2)
            contributions.append(per_unit.float().cpu())
            maps.append(z.detach().float().cpu())
    maps = torch.cat(maps)
    if maps.ndim == 3:  # tokens (B, T, C) -> (B, C, T), as as_channels reads them
        maps = maps.transpose(1, 2)
    return torch.cat(contributions), maps


@dataclass
class Units:
    """The top units of one layer for n images, best first (-1 / "" / NaN pad the rows with
    fewer units of positive contribution).

    ``channels`` int64 (n, k); ``neurons`` "layer:channel" (n, k); ``contributions`` float32
    (n, k); ``maps`` float32 (n, k, h, w) activation maps; ``thresholds`` float32 (n, k), the
    level above which a map is the unit's region; ``labels``, ``clusters``, ``cluster_labels``
    (n, k) from the atlas; ``coverage`` float32 (n, k), the share of the mask's saliency inside
    the region (NaN without a mask); ``total`` float32 (n,), the sum over all the layer's units
    (for a linear head: the logit less its bias)."""

    layer: str
    channels: np.ndarray
    neurons: np.ndarray
    contributions: np.ndarray
    maps: np.ndarray
    thresholds: np.ndarray
    labels: np.ndarray
    clusters: np.ndarray
    cluster_labels: np.ndarray
    coverage: np.ndarray
    total: np.ndarray


def rank_units(contributions: torch.Tensor, maps: torch.Tensor, layer: str, k: int, *,
               thresholds: np.ndarray | None = None, labels: dict | None = None) -> Units:
    """The ``k`` units of largest positive contribution per image (``unit_contributions``'s
    output), with their maps, region thresholds (``thresholds`` (C,), e.g. the dissection's
    T_k, else half of each map's maximum) and ``labels`` ({"concept", "cluster",
    "cluster_label"}: (C,) arrays, see ``unit_labels``)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_units must be a positive integer, got {k!r}")
    n, c = contributions.shape
    k = min(k, c)
    spatial = maps.reshape(n, c, -1) if maps.ndim > 2 else maps.reshape(n, c, 1)
    shape = tuple(maps.shape[2:]) if maps.ndim == 4 else (1, spatial.shape[2])
    values, order = torch.sort(contributions, dim=1, descending=True, stable=True)
    values, order = values[:, :k], order[:, :k]
    keep = values > 0
    picked = spatial.gather(1, order.unsqueeze(2).expand(-1, -1, spatial.shape[2]))
    if thresholds is None:
        level = 0.5 * picked.amax(2)
    else:
        level = torch.as_tensor(np.asarray(thresholds, np.float32))[order]
    labels = labels or {}
    concept = np.asarray(labels.get("concept", np.full(c, "")), dtype=str)
    cluster = np.asarray(labels.get("cluster", np.full(c, -1)), dtype=np.int64)
    cluster_label = np.asarray(labels.get("cluster_label", np.full(c, "")), dtype=str)
    ch = order.numpy()
    none = ~keep.numpy()
    neurons = np.char.add(f"{layer}:", ch.astype(str))
    return Units(
        layer=layer,
        channels=np.where(none, -1, ch).astype(np.int64),
        neurons=np.where(none, "", neurons).astype(str),
        contributions=np.where(none, np.nan, values.numpy()).astype(np.float32),
        maps=np.where(none[:, :, None, None], 0,
                      picked.reshape(n, k, *shape).numpy()).astype(np.float32),
        thresholds=np.where(none, np.nan, level.numpy()).astype(np.float32),
        labels=np.where(none, "", concept[ch]).astype(str),
        clusters=np.where(none, -1, cluster[ch]).astype(np.int64),
        cluster_labels=np.where(none, "", cluster_label[ch]).astype(str),
        coverage=np.full((n, k), np.nan, np.float32),
        total=contributions.sum(1).numpy().astype(np.float32))


def coverage(units: Units, saliency: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """Share of each image's saliency (n, h, w), upsampled to ``image_size`` (corners aligned,
    as I-GOS's masks), inside each ranked unit's region (its map upsampled bilinearly to the
    image, as Network Dissection does, above its threshold): (n, k), NaN for padding."""
    n, k = units.channels.shape
    sal = upsample(saliency.float().clamp(min=0), image_size)  # (n, H, W)
    maps = torch.from_numpy(units.maps).reshape(n * k, 1, *units.maps.shape[2:])
    up = F.interpolate(maps, size=image_size, mode="bilinear", align_corners=False)
    region = up.view(n, k, *image_size) > torch.from_numpy(units.thresholds).view(n, k, 1, 1)
    mass = sal.flatten(1).sum(1).view(n, 1)
    inside = (region * sal.unsqueeze(1)).flatten(2).sum(2)
    share = torch.where(mass > 0, inside / mass.clamp(min=1e-30), torch.nan)
    return np.where(units.channels < 0, np.nan, share.numpy()).astype(np.float32)


def unit_labels(atlas, layer: str, channels: int) -> tuple[dict, np.ndarray | None]:
    """({"concept", "cluster", "cluster_label"}: (channels,) arrays, dissection thresholds
    (channels,) or None) of ``layer``'s units from ``atlas`` (None: no labels)."""
    empty = {"concept": np.full(channels, ""), "cluster": np.full(channels, -1),
             "cluster_label": np.full(channels, "")}
    if atlas is None or layer not in atlas.layers:
        return empty, None
    table = atlas.neurons
    rows = table[table["layer"] == layer].sort_values("channel")
    if len(rows) != channels:
        raise ValueError(f"layer {layer!r} has {channels} units in the model but "
                         f"{len(rows)} in the atlas: explain with the atlas's model")
    out = dict(empty)
    if "concept" in rows:
        out["concept"] = rows["concept"].to_numpy().astype(str)
    if "cluster" in rows:
        out["cluster"] = rows["cluster"].to_numpy().astype(np.int64)
        if {"concept", "category", "iou"} <= set(table.columns):
            names = cluster_concepts(table)["concept"]
            out["cluster_label"] = np.array([str(names.get(c, "")) if c >= 0 else ""
                                             for c in out["cluster"]])
    thresholds = None
    if atlas.has("dissection"):
        dissection = atlas.get("dissection")
        if layer in dissection.layers:
            thresholds = np.asarray(dissection.thresholds[layer], np.float32)
    return out, thresholds
