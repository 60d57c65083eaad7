"""The result of a dissection: counts, IoU, per-unit labels and the per-layer summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


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

