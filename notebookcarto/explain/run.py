"""``explain``: I-GOS / iGOS++ masks, deletion and insertion curves and the units behind each
prediction, for chosen images, as one ``Explanation``; ``select_images`` picks the images
worth explaining (each class's most confident hits and its worst misses)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from ..capture import LayerError, mappable_layers, resolve_layers
from ..datasets.folder import denormalize
from ..datasets.items import ImageData, find_normalization, image_data, warn_if_normalized
from .igos import IGOS, IGOSPlusPlus, MaskExplainer, check_images
from .metrics import Curves, deletion_insertion, protocol_of, to_heatmaps
from .model import Scorer, check_targets
from .result import UNIT_FIELDS, Explanation
from .units import SCORES, Units, coverage, rank_units, unit_contributions, unit_labels

__all__ = ["METHODS", "Explainer", "explain", "read_images", "select_images"]

METHODS = {"igospp": IGOSPlusPlus, "igos": IGOS}
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def explain(model: nn.Module, data, images=None, *, atlas=None, targets="prediction",
            methods=("igospp", "igos"), heatmaps: dict | None = None, layer=None,
            top_units: int = 8, score: str = "logit", protocol="cells",
            options: dict | None = None, mean=None, std=None, batch_size: int = 32,
            chunk_size: int | None = None, progress: bool = True) -> Explanation:
    """Explain the model's predictions for ``images`` (ids into ``data``; default all).

    Args:
        model: the classifier (left exactly as it was); the work runs on its device.
        data: anything ``notebookcarto.datasets.image_data`` reads that gives images by id
            (a tensor, (images, labels), a data set, an ordered loader), normally the data the
            atlas was built on, so ids are the atlas's image ids.
        atlas: labels the units with its dissection and clusters (when attached).
        targets: "prediction" (the model's class), "label" (the data's) or class indices.
        methods: mask methods, by name ("igospp", "igos") or as ``IGOS`` / ``IGOSPlusPlus``
            objects built on ``model`` (for other parameters); ``options`` are passed to those
            built by name (e.g. ``{"iterations": 10, "noise": 0.045}``).
        heatmaps: {name: (n, h, w) or (n, C, h, w)} saliency maps of the same images from
            elsewhere (e.g. Captum attributions), scored with the same curves.
        layer: the layer whose units explain the prediction (default: the atlas's last layer,
            else the model's last mappable block; False for none); ``top_units`` per image by
            gradient x activation of the target's ``score`` ("logit" or "probability").
        protocol: the deletion / insertion protocol, "cells" (the I-GOS code's) or "pixels"
            (RISE's), or a ``CellProtocol`` / ``PixelProtocol``.
        mean, std: the normalisation to undo for the stored images (default: the one found in
            the data set's transform, else none).
        batch_size: images optimised together (each batch's path points share forward passes
            chunked to the memory budget of the methods' ``memory``).
        chunk_size: inputs per forward pass of the deletion / insertion curves (default 128
            on a CPU, 1024 on a GPU).

    Returns an ``Explanation`` (``atlas.attach`` it). Everything is checked before the model
    runs: unknown methods or layers, targets out of range, heatmaps of the wrong size, a model
    whose output is not logits (batch, classes), a mask larger than the images.
    """
    explainers = _explainers(model, methods, options or {})
    names = [e.name for e in explainers]
    extra = _check_heatmap_names(heatmaps, names)
    if not explainers and not extra:
        raise ValueError("nothing to explain with: give methods and/or heatmaps")
    rule = protocol_of(protocol)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(top_units, bool) or not isinstance(top_units, int) or top_units < 1:
        raise ValueError(f"top_units must be a positive integer, got {top_units!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    layer = _layer(model, atlas, layer)
    source = data
    data = image_data(data, model=model)
    ids = _ids(data, images)
    n = len(ids)
    heat = {k: to_heatmaps(v, n) for k, v in extra.items()}
    if mean is None and std is None:
        found = find_normalization(source)
        mean, std = found if found is not None else (None, None)
    coverage_of = next((e.name for e in explainers), None)
    first, first_label = read_images(data, ids[:1])  # everything checked before the work starts
    classes = _logits(model, first).shape[1]
    for e in explainers:
        check_images(first, model, e.size)
    targets = _check_targets(targets, n, classes, first_label)
    work = _Work(model, explainers, heat, rule, chunk_size, layer, top_units, score, atlas,
                 coverage_of, mean, std)
    parts = []
    bar = tqdm(total=-(-n // batch_size) * (len(explainers) + 2), desc="explain",
               disable=not progress)
    for s in range(0, n, batch_size):
        parts.append(work.batch(data, ids[s:s + batch_size], s, targets, bar))
        if tuple(parts[-1]["images"].shape[1:3]) != tuple(parts[0]["images"].shape[1:3]):
            raise ValueError(f"images of {parts[-1]['images'].shape[1:3]} px after images of "
                             f"{parts[0]['images'].shape[1:3]} px: explain images of one size")
    bar.close()
    params = {"methods": {e.name: e.params() for e in explainers},
              "heatmaps": list(heat), "targets": targets if isinstance(targets, str)
              else "given", "top_units": top_units, "score": score, "batch_size": batch_size}
    return _assemble(parts, layer, coverage_of, params)


class _Work:
    """What ``explain`` does to one batch of images."""

    def __init__(self, model, explainers, heat, rule, chunk_size, layer, top_units, score,
                 atlas, coverage_of, mean, std):
        self.model, self.explainers, self.heat, self.rule = model, explainers, heat, rule
        self.chunk_size, self.layer, self.top_units, self.score = chunk_size, layer, \
            top_units, score
        self.atlas, self.coverage_of, self.mean, self.std = atlas, coverage_of, mean, std
        self.labels = self.thresholds = None  # the layer's unit labels, read once

    def batch(self, data, ids, start, targets, bar) -> dict:
        x, y = read_images(data, ids)
        logits = _logits(self.model, x)
        t = _targets(targets, start, len(ids), logits, y)
        saliency = {}
        for e in self.explainers:
            bar.set_postfix(method=e.name)
            saliency[e.name] = (1 - e.attribute(x, t, image_ids=ids)).float().cpu()
            bar.update(1)
        for k, h in self.heat.items():
            saliency[k] = h[start:start + len(ids)]
        bar.set_postfix(method="deletion / insertion")
        curves = {k: deletion_insertion(self.model, x, v, t, protocol=self.rule,
                                        chunk_size=self.chunk_size)
                  for k, v in saliency.items()}
        bar.update(1)
        units = self.units(x, t, saliency) if self.layer is not None else None
        bar.update(1)
        probs = torch.softmax(logits, 1)
        return dict(
            image_ids=np.asarray(ids, np.int64), targets=t.cpu().numpy(),
            labels=(y.cpu().numpy() if y is not None else np.full(len(ids), -1)),
            predictions=logits.argmax(1).cpu().numpy(),
            probabilities=probs.gather(1, t.view(-1, 1)).squeeze(1).float().cpu().numpy(),
            images=display_images(x, self.mean, self.std), saliency=saliency, curves=curves,
            units=units, mask_methods=[e.name for e in self.explainers])

    def units(self, x, t, saliency) -> Units:
        contrib, maps = unit_contributions(self.model, x, t, self.layer, score=self.score)
        if self.labels is None:
            self.labels, self.thresholds = unit_labels(self.atlas, self.layer, contrib.shape[1])
        units = rank_units(contrib, maps, self.layer, self.top_units,
                           thresholds=self.thresholds, labels=self.labels)
        if self.coverage_of is not None:
            units.coverage = coverage(units, saliency[self.coverage_of], tuple(x.shape[-2:]))
        return units


class Explainer:
    """``explain`` with its settings kept: ``Explainer(model, data, atlas=atlas, **settings)``;
    ``.explain(images)`` returns an ``Explanation``, ``.update(atlas, images)`` explains and
    adds the images to the atlas's explanation (what a view does when asked, in the kernel)."""

    def __init__(self, model: nn.Module, data, *, atlas=None, **settings):
        unknown = set(settings) - {"targets", "methods", "heatmaps", "layer", "top_units",
                                   "score", "protocol", "options", "mean", "std",
                                   "batch_size", "chunk_size", "progress"}
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)} (see explain's arguments)")
        self.model, self.data, self.atlas, self.settings = model, data, atlas, settings

    def explain(self, images, **overrides) -> Explanation:
        return explain(self.model, self.data, images, atlas=self.atlas,
                       **{**self.settings, **overrides})

    def update(self, atlas, images, **overrides) -> Explanation:
        """Explain ``images`` and attach them to ``atlas`` (merged with what it holds)."""
        new = explain(self.model, self.data, images, atlas=atlas,
                      **{**self.settings, **overrides})
        if atlas.has(Explanation):
            new = atlas.get(Explanation).merged(new)
        return atlas.attach(new)


def select_images(model: nn.Module, data, *, per_class: int = 2, misclassified: int = 2,
                  batch_size: int = 256, progress: bool = True) -> pd.DataFrame:
    """Images worth explaining, from one forward pass over ``data`` (with labels): for every
    class its ``per_class`` correctly classified images of highest probability ("exemplar")
    and its ``misclassified`` images given the highest probability for a wrong class
    ("misclassified"). Returns one row per image (index: image id) with ``label``,
    ``prediction``, ``probability`` (of the prediction) and ``kind``; pass ``.index`` to
    ``explain``."""
    for key, value in (("per_class", per_class), ("misclassified", misclassified)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    source = image_data(data, batch_size=batch_size, model=model)
    labels, preds, probs = [], [], []
    with Scorer(model) as scorer, torch.no_grad():
        for batch in source.batches(device=scorer.device, labels="required", progress=progress,
                                    desc="select images"):
            p = torch.softmax(scorer.logits(batch.images), 1)
            top = p.max(1)
            labels.append(batch.labels.cpu())
            preds.append(top.indices.cpu())
            probs.append(top.values.float().cpu())
    label, pred, prob = (torch.cat(v).numpy() for v in (labels, preds, probs))
    rows = []
    for c in np.unique(label):
        for kind, hit, count in (("exemplar", True, per_class),
                                 ("misclassified", False, misclassified)):
            pool = np.flatnonzero((label == c) & ((pred == label) == hit))
            best = pool[np.argsort(-prob[pool], kind="stable")[:count]]
            rows += [(int(i), int(c), int(pred[i]), float(prob[i]), kind) for i in best]
    frame = pd.DataFrame(rows, columns=["image", "label", "prediction", "probability", "kind"])
    return frame.set_index("image")


def read_images(data: ImageData, ids) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (n, C, H, W) and labels (n,) or None of ``ids``, through the data adapter."""
    if data.dataset is None:
        raise TypeError("explanations need images by id: give a tensor, a data set or a "
                        "loader over a data set in order (this data is an iterable stream)")
    items = [data.dataset[int(i)] for i in ids]
    try:
        batch = default_collate(items)
    except RuntimeError as err:
        raise ValueError(f"images {list(ids)[:8]} cannot be stacked ({err}): explain images "
                         "of one size") from None
    return data.split(batch)


def display_images(x: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """uint8 (n, H, W, 3) for display: ``mean`` / ``std`` undone when given, else [0, 1]
    clipped (with a warning when the values lie outside); one channel is repeated."""
    x = x.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    if mean is not None and std is not None:
        return denormalize(x, mean, std)
    warn_if_normalized(x, "explain")
    return denormalize(x, (0.0,) * 3, (1.0,) * 3)


# -- checks before work -----------------------------------------------------------------------
def _explainers(model, methods, options) -> list[MaskExplainer]:
    if isinstance(methods, (str, MaskExplainer)):
        methods = [methods]
    out = []
    for m in methods:
        if isinstance(m, MaskExplainer):
            if m.model is not model:
                raise ValueError(f"the {m.name} explainer was built on another model: build it "
                                 "on the model being explained")
            out.append(m)
        elif m in METHODS:
            out.append(METHODS[m](model, **options))
        else:
            raise ValueError(f"unknown method {m!r}: choose from {sorted(METHODS)} or pass "
                             "IGOS / IGOSPlusPlus objects (heatmaps from elsewhere go in "
                             "heatmaps={name: array})")
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"methods repeat: {names}")
    return out


def _check_heatmap_names(heatmaps, names) -> dict:
    if heatmaps is None:
        return {}
    if not isinstance(heatmaps, dict):
        raise TypeError("heatmaps must be a dict {name: (n, h, w) array}")
    for k in heatmaps:
        if not isinstance(k, str) or not _NAME.match(k):
            raise ValueError(f"heatmap name {k!r}: use letters, digits and _ . + -")
        if k in names:
            raise ValueError(f"heatmap name {k!r} is also a method's name")
    return dict(heatmaps)


def _layer(model, atlas, layer):
    if layer is False:
        return None
    if layer is None:
        layers = list(atlas.layers) if atlas is not None else mappable_layers(model)
        return layers[-1] if layers else None
    resolve_layers(model, [layer])  # KeyError with the closest names
    return layer


def _ids(data: ImageData, images) -> list[int]:
    n = len(data) if data.dataset is not None else None
    if images is None:
        if n is None:
            raise TypeError("give the ids of the images to explain (images=[...]): this data "
                            "has no length")
        return list(range(n))
    if isinstance(images, (pd.Index, pd.Series)):
        images = images.to_numpy()
    ids = np.asarray(images).reshape(-1)
    if ids.size == 0:
        raise ValueError("no images to explain: give at least one image id")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"images must be integer ids, got {ids.dtype}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("image ids repeat: give each image once")
    if n is not None and (ids.min() < 0 or ids.max() >= n):
        bad = int(ids[(ids < 0) | (ids >= n)][0])
        raise IndexError(f"image id {bad} is out of range: the data has {n} images")
    return [int(i) for i in ids]


def _logits(model, x) -> torch.Tensor:
    with Scorer(model) as scorer, torch.no_grad():
        try:
            return scorer.logits(x.to(scorer.device))
        except LayerError:
            raise
        except RuntimeError as err:
            raise ValueError(f"the model could not run on images of shape "
                             f"{tuple(x.shape[1:])} ({err}): give images of the size and "
                             "channels the model takes") from None


def _check_targets(targets, n, classes, first_label):
    """``targets`` checked once for all images: a rule name, or (n,) class indices."""
    if isinstance(targets, str):
        if targets not in ("prediction", "label"):
            raise ValueError(f"targets must be 'prediction', 'label' or class indices, got "
                             f"{targets!r}")
        if targets == "label" and first_label is None:
            raise ValueError("targets='label' but the data has no labels: use 'prediction' "
                             "or give class indices")
        return targets
    return check_targets(targets, n, classes)


def _targets(targets, start, count, logits, labels) -> torch.Tensor:
    """The targets of one batch (``targets`` already checked)."""
    if targets == "prediction":
        return logits.argmax(1)
    if isinstance(targets, str):  # "label"
        if labels is None:
            raise ValueError("targets='label' but a batch has no labels")
        return check_targets(labels, count, logits.shape[1]).to(logits.device)
    return targets[start:start + count].to(logits.device)


def _assemble(parts, layer, coverage_of, params) -> Explanation:
    first = parts[0]
    methods = list(first["saliency"])
    curve = {m: [p["curves"][m] for p in parts] for m in methods}

    def cat(key):
        return np.concatenate([p[key] for p in parts])

    def per(fn):
        return {m: np.concatenate([fn(c) for c in curve[m]]) for m in methods}

    units = None
    if layer is not None:
        units = Units(layer, total=np.concatenate([p["units"].total for p in parts]),
                      **{f: np.concatenate([getattr(p["units"], f) for p in parts])
                         for f in UNIT_FIELDS})
    c0: Curves = curve[methods[0]][0] if methods else None
    return Explanation(
        image_ids=cat("image_ids"), targets=cat("targets").astype(np.int64),
        labels=cat("labels").astype(np.int64), predictions=cat("predictions").astype(np.int64),
        probabilities=cat("probabilities").astype(np.float32), images=cat("images"),
        saliency={m: torch.cat([p["saliency"][m] for p in parts]).numpy().astype(np.float32)
                  for m in methods},
        mask_methods=list(first["mask_methods"]),
        fractions=c0.fractions if c0 is not None else np.zeros(0, np.float32),
        deletion=per(lambda c: c.deletion), insertion=per(lambda c: c.insertion),
        deletion_auc=per(lambda c: c.deletion_auc), insertion_auc=per(lambda c: c.insertion_auc),
        protocol=c0.protocol if c0 is not None else {}, units=units, coverage_of=coverage_of,
        params=params)
