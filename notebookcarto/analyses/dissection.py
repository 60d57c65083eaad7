"""Network Dissection (Bau et al., CVPR 2017 / TPAMI 2018; REFERENCE section 3).

``dissect(model, data, layers)`` labels every unit (channel) of the chosen layers with the
concept whose pixels its high activations cover best:

1. Threshold T_k per unit: the value exceeded by a share ``quantile`` of all positions of all
   images (default 0.005), from a streaming, mergeable estimator on the model's device: the
   exact top values of every unit (``stats.TopValues``) when they fit in memory, else a
   KLL-style quantile sketch (``stats.QuantileSketch``, rank error about 1/k).
2. Each activation map is resampled bilinearly to the image's mask resolution (as
   ``F.interpolate(mode="bilinear", align_corners=False)``; no resampling when the sizes are
   equal) and M_k = (map > T_k), strictly greater.
3. Tallies over the data set: I[k, c] = pixels of M_k inside concept c (an image-level label
   covers the whole image), G[c] = pixels of c, A[k, g] = pixels of M_k in images that carry a
   concept of category g. The intersections are batched matrix products of the boolean masks
   (images x masks x positions) @ (images x positions x units) on the device; when few
   positions fire (the usual case: a share ``quantile`` of them) the same integers come from
   resampling only the maps whose maximum exceeds T_k (no other map can exceed it after
   bilinear resampling) and counting their fired pixels per mask.
4. IoU[k, c] = I / (A[k, category(c)] + G - I). Per unit: the best concept of each category,
   then the best overall (ties: the earlier concept); a unit is a detector if its best IoU >
   ``iou_threshold`` (0.04). Per layer: detectors and unique concepts, also per category.

Two methods: ``"original"`` (2017: quantile of the raw activations, 0.005) and ``"2020"``
(Bau 2020, ``dissect``: quantile of the activations after resampling to the mask grid, 0.01).
The same pass also keeps every unit's top images (by spatial maximum) for the gallery.

Guarantees: thresholds are exact (``TopValues``) or from a sketch whose rank error is measured
(tests/test_quantile.py); values equal to the threshold are not in M_k (strictly greater: a
unit whose top values tie at T_k leaves them out); A is counted separately for every category;
an image-level label counts every pixel of the image at its mask resolution; a concept never
present gets IoU 0 (no division by zero); counts are exact integers (products of booleans per
image, summed in int64), and IoU equals a brute-force reference exactly
(tests/test_dissection.py). Only layers with spatial maps (B, C, H, W) can be dissected.

Results go into the Atlas with ``attach_dissection`` (section "dissection"; cluster names with
``label_clusters``), a plotly chart of the summary with ``summary_figure`` and galleries of top
images with the unit's mask overlaid with ``unit_gallery`` / ``attach_gallery``.
``rotate_channels`` builds the paper's control: a random rotation of a layer's channel basis
that leaves the model's function unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..capture import Capture, mappable_layers, model_device
from ..datasets.concept_data import ConceptBatch, ConceptData
from ..stats.quantile import QuantileSketch, TopValues
from ..stats.reducers import LayerBatch, TopImages

METHODS = {"original": 0.005, "2020": 0.01}
CHUNK_ELEMENTS = 1 << 24  # resampled activations held at once (images are processed in chunks)


# ------------------------------------------------------------------------------- helpers
def resample(z: torch.Tensor, shape) -> torch.Tensor:
    """Bilinear resampling of (B, C, h, w) maps to ``shape`` (align_corners=False, no
    antialiasing); the maps themselves when the size already matches."""
    shape = (int(shape[0]), int(shape[1]))
    if tuple(z.shape[2:]) == shape:
        return z
    # channels-last is several times faster on CPU and keeps (B, P, C) views cheap
    z = z.float().contiguous(memory_format=torch.channels_last)
    return F.interpolate(z, size=shape, mode="bilinear", align_corners=False)


def _check_map(name: str, z: torch.Tensor):
    if z.ndim != 4:
        raise ValueError(f"layer {name!r} gives outputs of shape {tuple(z.shape)}: dissection "
                         "needs spatial maps (B, C, H, W); choose a convolutional layer")


def _batches(data: ConceptData, batch_size: int, num_workers: int):
    """Lists of ConceptBatch (one per mask shape), batch by batch."""
    n = len(data)
    starts = list(range(0, n, batch_size))
    if num_workers:
        source = _BatchSource(data, batch_size)
        yield from torch.utils.data.DataLoader(source, batch_size=None, num_workers=num_workers)
    else:
        for start in starts:
            yield data.load_batch(range(start, min(start + batch_size, n)))


class _BatchSource(torch.utils.data.Dataset):
    def __init__(self, data, batch_size):
        self.data, self.batch_size = data, batch_size

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def __getitem__(self, j):
        start = j * self.batch_size
        return self.data.load_batch(range(start, min(start + self.batch_size, len(self.data))))


def _chunks(batch_size: int, per_image: int):
    step = max(1, CHUNK_ELEMENTS // max(per_image, 1))
    return [slice(s, min(s + step, batch_size)) for s in range(0, batch_size, step)]


def _forward(model, data, layers, batch_size, num_workers, progress, desc):
    """Yield (batch, {layer: output}) over the data set, with the model captured."""
    device = model_device(model)
    outputs: dict[str, torch.Tensor] = {}
    total = math.ceil(len(data) / batch_size)
    with Capture(model, layers, on_output=outputs.__setitem__), torch.inference_mode():
        for groups in tqdm(_batches(data, batch_size, num_workers), total=total, desc=desc,
                           disable=not progress):
            for batch in groups:
                outputs.clear()
                model(batch.images.to(device, non_blocking=True))
                for name in layers:
                    _check_map(name, outputs[name])
                yield batch, outputs


class _Concepts:
    """Selected concepts, remapped to 0..K-1 with a dummy K for padding and the rest."""

    def __init__(self, data: ConceptData, names, device):
        all_concepts = list(data.concepts)
        if not all_concepts:
            raise ValueError("the data set has no concepts")
        chosen = (list(range(len(all_concepts))) if names is None
                  else data.concept_index(names))
        if not chosen:
            raise ValueError("concepts=[] selects nothing: pass concept names or None for all")
        if len(set(chosen)) != len(chosen):
            raise ValueError("concepts lists a name twice")
        self.names = [all_concepts[i].name for i in chosen]
        self.concept_categories = [all_concepts[i].category for i in chosen]
        self.categories = list(dict.fromkeys(self.concept_categories))
        k = len(chosen)
        remap = torch.full((len(all_concepts) + 1,), k, dtype=torch.long)
        remap[torch.tensor(chosen)] = torch.arange(k)
        self.remap = remap.to(device)  # index -1 (padding) reads the last entry: the dummy
        cat = [self.categories.index(c) for c in self.concept_categories] + [len(self.categories)]
        self.category_of = torch.tensor(cat, dtype=torch.long, device=device)
        self.k = k

    def batch(self, batch: ConceptBatch, device):
        """(masks (B, M + 1, P) bool whose last row is all True, mask concepts (B, M), labels
        (B, L), pixels (B, M), carried categories (B, G + 1) float) for one batch, on the
        device. The last row makes the intersection counts also count M_k's pixels."""
        masks = batch.masks.to(device, non_blocking=True).flatten(2)
        concepts = self.remap[batch.mask_concepts.to(device)]
        labels = self.remap[batch.labels.to(device)]
        pixels = torch.count_nonzero(masks, dim=2)
        carried_mask = torch.where(pixels > 0, self.category_of[concepts], len(self.categories))
        carried = torch.zeros(masks.shape[0], len(self.categories) + 1, device=device)
        carried.scatter_(1, carried_mask, 1.0)
        carried.scatter_(1, self.category_of[labels], 1.0)
        ones = torch.ones(masks.shape[0], 1, masks.shape[2], dtype=torch.bool, device=device)
        return torch.cat([masks, ones], 1), concepts, labels, pixels, carried


# ------------------------------------------------------------------------------- result
@dataclass
class Dissection:
    """The result of ``dissect``; per-layer arrays are numpy, units in channel order.

    Attributes:
        layers: dissected layers.
        concepts, concept_categories: the concepts scored and the category of each.
        categories: category names.
        thresholds: layer -> (C,) float32 per-unit threshold T_k.
        intersection: layer -> (C, K) int64, I.
        area: layer -> (C, G) int64, A per category.
        ground: (K,) int64, G per concept (pixels at mask resolution).
        top_images, top_values: layer -> (C, top_n) image ids (-1: none) and spatial maxima.
        params: method, quantile, iou_threshold, k, seed, batch_size, n_images.
    """

    layers: list[str]
    concepts: list[str]
    concept_categories: list[str]
    categories: list[str]
    thresholds: dict[str, np.ndarray]
    intersection: dict[str, np.ndarray]
    area: dict[str, np.ndarray]
    ground: np.ndarray
    top_images: dict[str, np.ndarray]
    top_values: dict[str, np.ndarray]
    params: dict = field(default_factory=dict)

    @property
    def iou_threshold(self) -> float:
        return float(self.params["iou_threshold"])

    def iou(self, layer: str) -> np.ndarray:
        """(C, K) IoU of every unit of ``layer`` with every concept (0 where the union is 0)."""
        self._check_layer(layer)
        inter = self.intersection[layer].astype(np.float64)
        cat = np.array([self.categories.index(c) for c in self.concept_categories])
        union = self.area[layer][:, cat] + self.ground[None, :] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    def _check_layer(self, layer: str):
        if layer not in self.layers:
            raise KeyError(f"layer {layer!r} was not dissected; dissected: {self.layers}")

    def units(self) -> pd.DataFrame:
        """One row per unit (index "layer:channel"): best concept ("" if it overlaps none), its
        category and IoU, ``detector`` (IoU > iou_threshold), the threshold, and per category
        the best concept and IoU (``<category>_concept``, ``<category>_iou``). Sort it by any
        column."""
        frames = []
        cats = np.array(self.concept_categories)
        names = np.array(self.concepts)
        for layer in self.layers:
            iou = self.iou(layer)
            best = iou.argmax(1)
            score = iou[np.arange(iou.shape[0]), best]
            none = score <= 0  # no overlap with any concept: no label
            frame = pd.DataFrame({
                "layer": layer, "channel": np.arange(iou.shape[0]),
                "concept": np.where(none, "", names[best]),
                "category": np.where(none, "", cats[best]), "iou": score})
            frame["detector"] = frame["iou"] > self.iou_threshold
            frame["threshold"] = self.thresholds[layer]
            for g in self.categories:
                cols = np.flatnonzero(cats == g)
                sub = iou[:, cols]
                pick = sub.argmax(1)
                value = sub[np.arange(sub.shape[0]), pick]
                frame[f"{g}_concept"] = np.where(value > 0, names[cols][pick], "")
                frame[f"{g}_iou"] = value
            frame.index = [f"{layer}:{c}" for c in range(iou.shape[0])]
            frames.append(frame)
        table = pd.concat(frames)
        table.index.name = "neuron"
        return table

    def summary(self) -> pd.DataFrame:
        """Per layer: units, detectors, unique concepts among detectors, and per category the
        detectors whose best concept is of that category and their unique concepts."""
        units = self.units()
        rows = []
        for layer in self.layers:
            u = units[units["layer"] == layer]
            d = u[u["detector"]]
            row = {"layer": layer, "units": len(u), "detectors": len(d),
                   "unique_concepts": d["concept"].nunique()}
            for g in self.categories:
                dg = d[d["category"] == g]
                row[f"{g}_detectors"] = len(dg)
                row[f"{g}_unique"] = dg["concept"].nunique()
            rows.append(row)
        return pd.DataFrame(rows).set_index("layer")

    def summary_records(self) -> list[dict]:
        """The summary as JSON-ready records (the Atlas section's ``summary``)."""
        out = []
        for layer, row in self.summary().iterrows():
            out.append({"layer": layer, "units": int(row["units"]),
                        "detectors": int(row["detectors"]),
                        "unique_concepts": int(row["unique_concepts"]),
                        "per_category": {g: {"detectors": int(row[f"{g}_detectors"]),
                                             "unique_concepts": int(row[f"{g}_unique"])}
                                         for g in self.categories}})
        return out

    def __repr__(self) -> str:
        n = sum(len(t) for t in self.thresholds.values())
        return (f"Dissection({len(self.layers)} layers, {n} units, {len(self.concepts)} "
                f"concepts, method={self.params.get('method')!r})")


# ------------------------------------------------------------------------------- dissect
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
    device = model_device(model)
    chosen = _Concepts(data, concepts, device)
    params = dict(method=method, quantile=float(quantile), iou_threshold=float(iou_threshold),
                  estimator=estimator if thresholds is None else "given", k=k, seed=seed,
                  batch_size=batch_size, top_n=top_n, n_images=len(data))

    if thresholds is None:
        pass_one = dict(method=method, quantile=quantile, k=k, seed=seed, chosen=chosen,
                        batch_size=batch_size, num_workers=num_workers, progress=progress,
                        exact_limit=exact_limit)
        thresholds, failed = _thresholds(model, data, layers, estimator=estimator, **pass_one)
        if failed:  # images of several sizes made the stream longer than planned
            if estimator == "exact":
                raise ValueError(f"layers {failed} saw more positions than len(data) times those "
                                 "of the first batch (images of several sizes?): use "
                                 "estimator='sketch'")
            thresholds.update(_thresholds(model, data, failed, estimator="sketch",
                                          **pass_one)[0])
    else:
        thresholds = _given_thresholds(thresholds, layers)
    tally = _tally(model, data, layers, thresholds, chosen, top_n, batch_size, num_workers,
                   progress)
    if int(tally["ground"].sum()) == 0:
        raise ValueError(_NO_MASKS)
    return Dissection(
        layers=layers, concepts=chosen.names, concept_categories=chosen.concept_categories,
        categories=chosen.categories,
        thresholds={n: t.cpu().numpy().astype(np.float32) for n, t in thresholds.items()},
        intersection=tally["intersection"], area=tally["area"], ground=tally["ground"],
        top_images=tally["top_images"], top_values=tally["top_values"], params=params)


_NO_MASKS = ("the data set has no concept masks or image-level labels (for the chosen concepts): "
             "dissection needs annotated images; check sample(i).masks / .labels")


def _given_thresholds(thresholds: dict, layers) -> dict[str, torch.Tensor]:
    missing = [n for n in layers if n not in thresholds]
    if missing:
        raise KeyError(f"thresholds given for {sorted(thresholds)} but not for {missing}")
    return {n: torch.as_tensor(np.asarray(thresholds[n], dtype=np.float32)) for n in layers}


def _thresholds(model, data, layers, *, estimator, method, quantile, k, seed, chosen,
                batch_size, num_workers, progress, exact_limit):
    """Pass 1: one quantile estimator per layer; T = the (1 - quantile) quantile per unit.
    Returns (thresholds, layers whose exact estimator was too small)."""
    q = 1.0 - quantile
    sketches: dict[str, QuantileSketch | TopValues] = {}
    annotated = False
    for batch, outputs in _forward(model, data, layers, batch_size, num_workers, progress,
                                   "dissection: thresholds"):
        if not annotated:
            concepts = chosen.remap[batch.mask_concepts.to(chosen.remap.device)]
            labels = chosen.remap[batch.labels.to(chosen.remap.device)]
            has_pixels = batch.masks.flatten(2).any(2).to(concepts.device)
            annotated = bool(((concepts < chosen.k) & has_pixels).any()
                             or (labels < chosen.k).any())
        for i, name in enumerate(layers):
            z = outputs[name]
            if name not in sketches:
                c = z.shape[1]
                positions = (z.shape[2] * z.shape[3] if method == "original"
                             else math.prod(batch.mask_shape))
                t = TopValues.needed(len(data) * positions, q)
                if estimator == "exact" or (estimator == "auto" and t * c <= exact_limit):
                    sketches[name] = TopValues(c, t, device=z.device)
                else:
                    sketches[name] = QuantileSketch(c, k=k, device=z.device, seed=seed * 1000 + i)
            estimate = sketches[name]
            if method == "original":
                estimate.update(z, dim=1)
            elif isinstance(estimate, TopValues) and estimate.floor is not None:
                _add_resampled_tail(estimate, z, batch.mask_shape)
            else:
                per_image = z.shape[1] * math.prod(batch.mask_shape)
                for part in _chunks(z.shape[0], per_image):
                    estimate.update(resample(z[part], batch.mask_shape), dim=1)
    if not annotated:
        raise ValueError(_NO_MASKS)
    thresholds, failed = {}, []
    for name, s in sketches.items():
        if isinstance(s, TopValues) and TopValues.needed(s.count, q) > s.t:
            failed.append(name)
        else:
            thresholds[name] = s.quantile(q)
    return thresholds, failed


def _active_maps(z: torch.Tensor, floor: torch.Tensor, shape, maxima=None):
    """Resampled maps of the (image, unit) pairs whose raw maximum exceeds ``floor`` (C,): no
    other pair can exceed it after bilinear resampling (a convex combination of raw values).
    Yields (images, units, resampled maps (H, W, n)) in chunks."""
    maxima = z.amax((2, 3)) if maxima is None else maxima
    image, unit = (maxima > floor).nonzero(as_tuple=True)
    step = max(1, CHUNK_ELEMENTS // math.prod(shape))
    for s in range(0, len(image), step):
        i, u = image[s:s + step], unit[s:s + step]
        # the pairs as the channels of one image: channels-last resampling is fastest
        up = resample(z[i, u].unsqueeze(0), shape)[0]  # (n, H, W)
        yield i, u, up.permute(1, 2, 0)  # (H, W, n): contiguous when resampled


def _add_resampled_tail(estimate: TopValues, z: torch.Tensor, shape):
    """2020 method, exact estimator: add the resampled values above the floor."""
    floor = estimate.floor
    channels, values = [], []
    for _, unit, up in _active_maps(z, floor, shape):
        above = up > floor[unit]
        channels.append(unit[above.nonzero()[:, 2]])
        values.append(up[above])
    if channels:
        estimate.add(torch.cat(channels), torch.cat(values), z.shape[0] * math.prod(shape))
    else:
        estimate.add(floor.new_zeros(0, dtype=torch.long), floor.new_zeros(0),
                     z.shape[0] * math.prod(shape))


SPARSE_DENSITY = 0.05  # share of raw positions above threshold up to which the tally goes sparse


def _tally_dense(z, t, shape, masks, part):
    """(b, M + 1, C) counts for images ``part``: every resampled map, thresholded, times the
    masks (a matrix product of booleans; the last mask row, all True, counts M_k's pixels)."""
    fired = (resample(z[part], shape) > t.view(1, -1, 1, 1)).flatten(2)  # (b, C, P)
    # exact integer counts in float32 (P < 2**24)
    return torch.bmm(masks[part].float(), fired.transpose(1, 2).float()).long()


def _tally_sparse(z, t, shape, pixel_masks, maxima):
    """The same (B, M + 1, C) counts from the fired pixels only: resample the maps of active
    (image, unit) pairs, threshold, and look up which masks hold each fired pixel
    (``pixel_masks``: (B, P, M + 1) bool, the masks pixel by pixel)."""
    b, c = z.shape[:2]
    rows = pixel_masks.shape[2]
    out = torch.zeros(b * rows * c, dtype=torch.long, device=z.device)
    width = shape[1]
    for image, unit, up in _active_maps(z, t, shape, maxima):
        y, x, pair = (up > t[unit]).nonzero(as_tuple=True)
        if len(pair) == 0:
            continue
        i, u = image[pair], unit[pair]
        fired, row = pixel_masks[i, y * width + x].nonzero(as_tuple=True)
        out += torch.bincount((i[fired] * rows + row) * c + u[fired], minlength=out.numel())
    return out.view(b, rows, c)


def _tally(model, data, layers, thresholds, chosen, top_n, batch_size, num_workers, progress):
    """Pass 2: I, A, G and the top images of every unit."""
    device = model_device(model)
    k, g = chosen.k, len(chosen.categories)
    inter: dict[str, torch.Tensor] = {}
    area: dict[str, torch.Tensor] = {}
    top: dict[str, TopImages] = {}
    ground = torch.zeros(k + 1, dtype=torch.long, device=device)
    for batch, outputs in _forward(model, data, layers, batch_size, num_workers, progress,
                                   "dissection: IoU"):
        masks, concepts, labels, pixels, carried = chosen.batch(batch, device)
        positions = math.prod(batch.mask_shape)
        ground.index_add_(0, concepts.flatten(), pixels.flatten())
        ground.index_add_(0, labels.flatten(),
                          torch.full((labels.numel(),), positions, dtype=torch.long,
                                     device=device))
        index = batch.index.to(device)
        pixel_masks = None
        for name in layers:
            z = outputs[name]
            c = z.shape[1]
            if name not in inter:
                t = thresholds[name]
                if t.shape != (c,):
                    raise ValueError(f"layer {name!r} has {c} units but {tuple(t.shape)} "
                                     "thresholds were given")
                thresholds[name] = t.to(device=device, dtype=torch.float32)
                inter[name] = torch.zeros(k + 1, c, dtype=torch.long, device=device)
                area[name] = torch.zeros(g + 1, c, dtype=torch.float64, device=device)
                top[name] = TopImages(c, top_n, device=device)
            maxima = z.amax((2, 3)).float()
            top[name].update(LayerBatch(maxima, torch.zeros_like(maxima, dtype=torch.long),
                                        index))  # positions are not kept
            t = thresholds[name]
            raw_share = int(torch.count_nonzero(z > t.view(1, c, 1, 1))) / z.numel()
            if raw_share <= SPARSE_DENSITY:
                if pixel_masks is None:
                    pixel_masks = masks.transpose(1, 2).contiguous()
                parts = [(slice(None), _tally_sparse(z, t, batch.mask_shape, pixel_masks,
                                                     maxima))]
            else:
                parts = [(part, _tally_dense(z, t, batch.mask_shape, masks, part))
                         for part in _chunks(z.shape[0], c * positions)]
            for part, both in parts:
                counts = both[:, -1]  # pixels of M_k per image
                inter[name].index_add_(0, concepts[part].flatten(), both[:, :-1].reshape(-1, c))
                lab = labels[part]
                inter[name].index_add_(0, lab.flatten(), counts.unsqueeze(1).expand(
                    -1, lab.shape[1], -1).reshape(-1, c))
                area[name] += carried[part].double().T @ counts.double()
    return {
        "intersection": {n: v[:k].T.cpu().numpy() for n, v in inter.items()},
        "area": {n: v[:g].T.round().long().cpu().numpy() for n, v in area.items()},
        "ground": ground[:k].cpu().numpy(),
        "top_images": {n: r.index.cpu().numpy() for n, r in top.items()},
        "top_values": {n: r.values.cpu().numpy() for n, r in top.items()},
    }


# ------------------------------------------------------------------------------- atlas
def attach_dissection(atlas, result: Dissection) -> dict:
    """Store ``result`` as the atlas section "dissection" and return it.

    Arrays (one value per neuron, in ``atlas.neuron_ids`` order; units of layers that were not
    dissected get "" and NaN): ``concept`` and ``category`` (the best concept of detectors, ""
    for other units), ``iou`` (best IoU), ``best_concept`` (the best concept of every unit),
    ``threshold``. Meta: ``params``, ``concepts``, ``categories`` (the category of each
    concept), ``category_names``, ``layers``, ``summary`` (per layer: units, detectors, unique
    concepts, per category) and ``neuron_columns``. When the atlas has a "clusters" section,
    clusters are named with ``label_clusters``.
    """
    ids = atlas.neuron_ids
    position = {n: i for i, n in enumerate(ids)}
    concept = np.full(len(ids), "", dtype=object)
    category = np.full(len(ids), "", dtype=object)
    best = np.full(len(ids), "", dtype=object)
    iou = np.full(len(ids), np.nan)
    threshold = np.full(len(ids), np.nan, dtype=np.float32)
    units = result.units()
    for layer in result.layers:
        if layer not in atlas.layers:
            raise KeyError(f"dissected layer {layer!r} is not in the atlas (layers "
                           f"{atlas.layers}): dissect the atlas's layers")
        expected = atlas.stats.layers[layer].channels
        if len(result.thresholds[layer]) != expected:
            raise ValueError(f"layer {layer!r}: the atlas has {expected} channels, the "
                             f"dissection {len(result.thresholds[layer])}")
    rows = np.array([position[n] for n in units.index])
    detector = units["detector"].to_numpy()
    concept[rows] = np.where(detector, units["concept"], "")
    category[rows] = np.where(detector, units["category"], "")
    best[rows] = units["concept"].to_numpy()
    iou[rows] = units["iou"].to_numpy()
    threshold[rows] = units["threshold"].to_numpy()
    section = {
        "meta": {"params": dict(result.params), "concepts": list(result.concepts),
                 "categories": list(result.concept_categories),
                 "category_names": list(result.categories), "layers": list(result.layers),
                 "summary": result.summary_records(),
                 "neuron_columns": ["concept", "category", "iou"]},
        "arrays": {"concept": concept.astype(str), "category": category.astype(str),
                   "iou": iou, "best_concept": best.astype(str), "threshold": threshold},
    }
    atlas.sections["dissection"] = section
    if "clusters" in atlas.sections:
        label_clusters(atlas)
    return section


def label_clusters(atlas) -> dict:
    """Name each cluster (atlas section "clusters") after its members' dissection labels: the
    concept most of its detector members carry (ties: the larger summed IoU). Stores
    ``meta["cluster_concepts"]`` = {cluster id (str): {"concept", "category", "count",
    "members"}} ("" when no member is a detector) and the array ``cluster_concept`` (each
    neuron's cluster name, "" for none) in the "dissection" section, and returns the dict."""
    if "dissection" not in atlas.sections:
        raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
    if "clusters" not in atlas.sections:
        raise KeyError("the atlas has no 'clusters' section: cluster the neurons first")
    section = atlas.sections["dissection"]
    arrays = section["arrays"]
    cluster = np.asarray(atlas.sections["clusters"]["arrays"]["cluster"]).astype(np.int64)
    concept = np.asarray(arrays["concept"]).astype(str)
    category = np.asarray(arrays["category"]).astype(str)
    iou = np.nan_to_num(np.asarray(arrays["iou"], dtype=np.float64))
    if len(cluster) != len(concept):
        raise ValueError(f"the clusters section has {len(cluster)} neurons, the dissection "
                         f"{len(concept)}")
    names: dict[str, dict] = {}
    per_neuron = np.full(len(cluster), "", dtype=object)
    for cid in np.unique(cluster[cluster >= 0]):
        members = np.flatnonzero(cluster == cid)
        labelled = members[concept[members] != ""]
        entry = {"concept": "", "category": "", "count": 0, "members": int(len(members))}
        if len(labelled):
            stats = {}
            for m in labelled:
                n, s = stats.get(concept[m], (0, 0.0))
                stats[concept[m]] = (n + 1, s + iou[m])
            top = max(stats, key=lambda c: (stats[c][0], stats[c][1]))
            first = labelled[concept[labelled] == top][0]
            entry.update(concept=top, category=str(category[first]), count=stats[top][0])
        names[str(int(cid))] = entry
        per_neuron[members] = entry["concept"]
    section["meta"]["cluster_concepts"] = names
    arrays["cluster_concept"] = per_neuron.astype(str)
    return names


def summary_figure(source, value: str = "detectors"):
    """A plotly bar chart of the per-layer summary, stacked by category.

    ``source``: a ``Dissection``, an Atlas with a "dissection" section, or a ``summary()``
    DataFrame. ``value``: "detectors" or "unique_concepts".
    """
    import plotly.graph_objects as go

    if value not in ("detectors", "unique_concepts"):
        raise ValueError(f"value must be 'detectors' or 'unique_concepts', got {value!r}")
    if isinstance(source, Dissection):
        table, threshold = source.summary(), source.iou_threshold
    elif isinstance(source, pd.DataFrame):
        table, threshold = source, None
    elif hasattr(source, "sections"):
        if "dissection" not in source.sections:
            raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
        meta = source.sections["dissection"]["meta"]
        table = _summary_table(meta["summary"])
        threshold = meta["params"].get("iou_threshold")
    else:
        raise TypeError(f"expected a Dissection, an Atlas or a summary DataFrame, got "
                        f"{type(source).__name__}")
    suffix = "_detectors" if value == "detectors" else "_unique"
    categories = [c[: -len(suffix)] for c in table.columns if c.endswith(suffix)]
    fig = go.Figure([go.Bar(name=g, x=list(table.index), y=table[f"{g}{suffix}"].tolist())
                     for g in categories])
    what = "detectors" if value == "detectors" else "unique concepts of detectors"
    title = f"Network dissection: {what} per layer"
    if threshold is not None:
        title += f" (IoU > {threshold:g})"
    fig.update_layout(barmode="stack", title=title, xaxis_title="layer",
                      yaxis_title=value.replace("_", " "), legend_title="category")
    return fig


def _summary_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: r[k] for k in ("layer", "units", "detectors", "unique_concepts")}
        for g, v in r["per_category"].items():
            row[f"{g}_detectors"], row[f"{g}_unique"] = v["detectors"], v["unique_concepts"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


# ------------------------------------------------------------------------------- gallery
def overlay_mask(image: np.ndarray, mask: np.ndarray, darken: float = 0.35,
                 outline=(255, 214, 0)) -> np.ndarray:
    """uint8 (H, W, 3) image with the region outside ``mask`` darkened and the mask's border
    drawn in ``outline`` (None: no border)."""
    image = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(mask, dtype=bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask of shape {mask.shape} for an image of shape {image.shape[:2]}")
    out = np.where(mask[..., None], image, np.rint(image * darken)).astype(np.uint8)
    if outline is not None:
        padded = np.pad(mask, 1, constant_values=False)
        inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
        out[mask & ~inner] = np.asarray(outline, dtype=np.uint8)
    return out


def _overlays(model, data, result: Dissection, layer: str, pairs, darken, outline):
    """Overlays for (channel, image id) pairs of one layer, in order: uint8 (n, H, W, 3)."""
    device = model_device(model)
    ids = sorted({int(i) for _, i in pairs})
    pictures = {i: np.asarray(data.image_uint8(i), dtype=np.uint8) for i in ids}
    shapes = {p.shape for p in pictures.values()}
    if len(shapes) > 1:
        raise ValueError(f"the gallery images have different sizes {sorted(shapes)}")
    maps: dict[int, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}
    wanted: dict[int, list[int]] = {}
    for c, i in pairs:
        wanted.setdefault(int(i), []).append(int(c))
    with Capture(model, [layer], on_output=captured.__setitem__), torch.inference_mode():
        for start in range(0, len(ids), 64):
            chunk = ids[start:start + 64]
            images = torch.stack([data.sample(i).image for i in chunk]).to(device)
            model(images)
            z = captured[layer]
            _check_map(layer, z)
            for row, i in enumerate(chunk):
                maps[i] = z[row].float().cpu()
    threshold = torch.as_tensor(result.thresholds[layer])
    out = []
    for c, i in pairs:
        picture = pictures[int(i)]
        up = resample(maps[int(i)][int(c)][None, None], picture.shape[:2])[0, 0]
        out.append(overlay_mask(picture, (up > threshold[int(c)]).numpy(), darken, outline))
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), dtype=np.uint8)


def unit_gallery(model: nn.Module, data: ConceptData, result: Dissection, neuron: str,
                 n: int | None = None, darken: float = 0.35, outline=(255, 214, 0)):
    """A unit's top images (best first, at most ``n``; default all kept) with its mask
    M_k = (activation resampled to the image size > T_k) overlaid: the outside darkened, the
    border drawn. Returns (uint8 (n, H, W, 3), image ids (n,))."""
    layer, _, channel = str(neuron).rpartition(":")
    result._check_layer(layer)
    c = int(channel)
    ids = result.top_images[layer][c]
    ids = ids[ids >= 0][:n]
    images = _overlays(model, data, result, layer, [(c, i) for i in ids], darken, outline)
    return images, ids


def attach_gallery(atlas, model: nn.Module, data: ConceptData, result: Dissection,
                   n: int = 10, darken: float = 0.35, outline=(255, 214, 0)) -> np.ndarray:
    """Galleries of every dissected unit into the atlas's "dissection" section: arrays
    ``gallery`` (neurons, n, H, W, 3) uint8 (zeros for units without images) and
    ``gallery_images`` (neurons, n) int64 (-1 for none). Returns the gallery."""
    if "dissection" not in atlas.sections:
        raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
    position = {name: i for i, name in enumerate(atlas.neuron_ids)}
    gallery, ids_out = None, np.full((len(position), n), -1, dtype=np.int64)
    for layer in result.layers:
        top = result.top_images[layer][:, :n]
        pairs = [(c, int(i)) for c in range(top.shape[0]) for i in top[c] if i >= 0]
        images = _overlays(model, data, result, layer, pairs, darken, outline)
        if gallery is None and len(images):
            gallery = np.zeros((len(position), n, *images.shape[1:]), dtype=np.uint8)
        if len(images) and images.shape[1:] != gallery.shape[2:]:
            raise ValueError("gallery images of different layers have different sizes")
        slot = {}
        for (c, i), image in zip(pairs, images):
            row = position[f"{layer}:{c}"]
            r = slot.get(row, 0)
            gallery[row, r] = image
            ids_out[row, r] = i
            slot[row] = r + 1
    if gallery is None:
        gallery = np.zeros((len(position), n, 1, 1, 3), dtype=np.uint8)
    atlas.sections["dissection"]["arrays"]["gallery"] = gallery
    atlas.sections["dissection"]["arrays"]["gallery_images"] = ids_out
    return gallery


# ------------------------------------------------------------------------------- rotation
class ChannelMix(nn.Module):
    """Multiply the channel axis (dim 1) by a fixed matrix: out[:, i] = sum_j m[i, j] x[:, j]."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", self.matrix.to(x.dtype), x)


class ChannelRotation(nn.Module):
    """Wraps a layer: ``rotated`` outputs Q z (a random orthogonal mix of its channels), and
    the wrapper returns Q^T (Q z) = z, so the model computes the same function. Dissect
    ``"<layer>.rotated"`` to see the rotated basis."""

    def __init__(self, inner: nn.Module, q: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.rotated = ChannelMix(q)
        self.restored = ChannelMix(q.T)

    def forward(self, *args, **kwargs):
        return self.restored(self.rotated(self.inner(*args, **kwargs)))


def random_rotation(n: int, seed: int = 0) -> torch.Tensor:
    """A random orthogonal (n, n) matrix, uniform (Haar) over rotations and reflections."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).float()


def _out_channels(module: nn.Module) -> int | None:
    for sub in reversed(list(module.modules())):
        for attr in ("num_features", "out_channels"):
            if isinstance(getattr(sub, attr, None), int):
                return getattr(sub, attr)
    return None


def rotate_channels(model: nn.Module, layer: str, seed: int = 0,
                    channels: int | None = None) -> tuple[nn.Module, str]:
    """A copy of ``model`` whose ``layer`` is wrapped in a ``ChannelRotation`` (random,
    by ``seed``); returns (copy, name of the rotated layer to dissect). The copy computes the
    same function up to float rounding. ``channels`` defaults to the layer's last
    ``num_features`` / ``out_channels``."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise KeyError(f"unknown layer {layer!r}: use a module path from model.named_modules()")
    n = channels or _out_channels(modules[layer])
    if not n:
        raise ValueError(f"cannot tell how many channels {layer!r} outputs: pass channels=...")
    clone = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = clone.get_submodule(parent_name) if parent_name else clone
    inner = getattr(parent, child)
    q = random_rotation(n, seed).to(model_device(model))
    setattr(parent, child, ChannelRotation(inner, q))
    return clone, f"{layer}.rotated"
