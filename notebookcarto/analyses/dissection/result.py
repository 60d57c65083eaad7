"""The result of a dissection: counts, IoU, per-unit labels and the per-layer summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..result import Result

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["Dissection", "DissectionGallery"]


@dataclass
class Dissection(Result):
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
        params: method, quantile, iou_threshold, estimator, sketch_size, seed, batch_size,
            top_n, n_images, passes.
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

    section: ClassVar[str] = "dissection"

    def to_section(self) -> dict:
        arrays = {"ground": np.asarray(self.ground, dtype=np.int64)}
        for layer in self.layers:
            arrays[f"thresholds/{layer}"] = np.asarray(self.thresholds[layer], np.float32)
            arrays[f"intersection/{layer}"] = np.asarray(self.intersection[layer], np.int64)
            arrays[f"area/{layer}"] = np.asarray(self.area[layer], np.int64)
            arrays[f"top_images/{layer}"] = np.asarray(self.top_images[layer], np.int64)
            arrays[f"top_values/{layer}"] = np.asarray(self.top_values[layer], np.float32)
        meta = {"layers": list(self.layers), "concepts": list(self.concepts),
                "concept_categories": list(self.concept_categories),
                "categories": list(self.categories), "params": dict(self.params)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "Dissection":
        meta, arrays = section["meta"], section["arrays"]
        layers = [str(n) for n in meta["layers"]]
        per_layer = {kind: {n: arrays[f"{kind}/{n}"] for n in layers}
                     for kind in ("thresholds", "intersection", "area", "top_images",
                                  "top_values")}
        return cls(layers=layers, concepts=list(meta["concepts"]),
                   concept_categories=list(meta["concept_categories"]),
                   categories=list(meta["categories"]), ground=arrays["ground"],
                   params=dict(meta["params"]), **per_layer)

    def check(self, atlas: "Atlas") -> None:
        for layer in self.layers:
            if layer not in atlas.layers:
                raise ValueError(f"dissected layer {layer!r} is not in the atlas (layers "
                                 f"{atlas.layers}): dissect the atlas's layers")
            expected = atlas.stats.layers[layer].channels
            if len(self.thresholds[layer]) != expected:
                raise ValueError(f"layer {layer!r}: the atlas has {expected} channels, the "
                                 f"dissection {len(self.thresholds[layer])}")

    def neuron_columns(self, atlas: "Atlas") -> dict[str, np.ndarray]:
        """``concept`` and ``category`` (the best concept of detectors, "" for other units and
        for layers not dissected) and ``iou`` (the best IoU; NaN where not dissected)."""
        n = len(atlas.neuron_ids)
        concept, category = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        iou = np.full(n, np.nan)
        units = self.units()
        rows = atlas.neuron_index(list(units.index))
        detector = units["detector"].to_numpy()
        concept[rows] = np.where(detector, units["concept"], "")
        category[rows] = np.where(detector, units["category"], "")
        iou[rows] = units["iou"].to_numpy()
        return {"concept": concept.astype(str), "category": category.astype(str), "iou": iou}

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

    def __repr__(self) -> str:
        n = sum(len(t) for t in self.thresholds.values())
        return (f"Dissection({len(self.layers)} layers, {n} units, {len(self.concepts)} "
                f"concepts, method={self.params.get('method')!r})")



@dataclass
class DissectionGallery(Result):
    """Top images of dissected units with the unit's mask M_k overlaid (``dissection_gallery``).

    Attributes:
        layers: the layers.
        images: layer -> uint8 (C, n_images, H, W, 3) overlays, best first (zeros: none).
        image_ids: layer -> int64 (C, n_images) image ids (-1: none).
        params: n_images, darken, outline.
    """

    layers: list[str]
    images: dict[str, np.ndarray]
    image_ids: dict[str, np.ndarray]
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "dissection_gallery"

    def unit(self, neuron: str) -> tuple[np.ndarray, np.ndarray]:
        """(overlays (n, H, W, 3), image ids (n,)) of one unit ``"layer:channel"``."""
        layer, _, channel = str(neuron).rpartition(":")
        if layer not in self.images or not channel.isdigit():
            raise KeyError(f"no gallery for {neuron!r}: the gallery has layers {self.layers}")
        ids = self.image_ids[layer][int(channel)]
        keep = ids >= 0
        return self.images[layer][int(channel)][keep], ids[keep]

    def to_section(self) -> dict:
        arrays = {}
        for layer in self.layers:
            arrays[f"images/{layer}"] = np.asarray(self.images[layer], np.uint8)
            arrays[f"image_ids/{layer}"] = np.asarray(self.image_ids[layer], np.int64)
        return {"meta": {"layers": list(self.layers), "params": dict(self.params)},
                "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "DissectionGallery":
        meta, arrays = section["meta"], section["arrays"]
        layers = [str(n) for n in meta["layers"]]
        return cls(layers, {n: arrays[f"images/{n}"] for n in layers},
                   {n: arrays[f"image_ids/{n}"] for n in layers}, dict(meta["params"]))

    def __repr__(self) -> str:
        n = sum(len(v) for v in self.image_ids.values())
        return f"DissectionGallery({len(self.layers)} layers, {n} units)"
