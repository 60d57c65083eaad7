"""The Explanation result: saliency maps, deletion / insertion curves and the units that carried
each prediction, for a chosen set of images, as an atlas section (``explanation``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..analyses.result import Result
from .units import Units

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["UNIT_FIELDS", "Explanation"]

UNIT_FIELDS = {"channels": "int64", "neurons": "str", "contributions": "float32",
               "maps": "float32", "thresholds": "float32", "labels": "str",
               "clusters": "int64", "cluster_labels": "str", "coverage": "float32"}


def check_in_atlas(atlas: "Atlas", classes, image_ids, what: str = "target class") -> None:
    """Refuse an explanation whose classes or image ids the atlas does not have."""
    if atlas.class_names and len(classes) and int(np.max(classes)) >= len(atlas.class_names):
        raise ValueError(f"{what} {int(np.max(classes))} is not one of the atlas's "
                         f"{len(atlas.class_names)} classes")
    n_images = getattr(atlas.stats, "n_images", 0)
    if n_images and len(image_ids) and int(np.max(image_ids)) >= n_images:
        raise ValueError(f"image id {int(np.max(image_ids))} is not one of the atlas's "
                         f"{n_images} images: explain images of the data the atlas was "
                         "built on, by id")


@dataclass
class Explanation(Result):
    """Explanations of single predictions (``explain``), one row per image.

    Attributes:
        image_ids: int64 (n,) ids of the images in the data they came from (the atlas's).
        targets: int64 (n,) the class explained; ``labels`` (-1: unknown) and ``predictions``
            int64 (n,); ``probabilities`` float32 (n,) the target's softmax on the image.
        images: uint8 (n, H, W, 3) the images as shown.
        saliency: {method: float32 (n, h, w)}, higher = more salient, any resolution (I-GOS
            masks: 1 - mask on their s x s cells; ``mask_methods`` names those).
        fractions: float32 (k,) shares removed / inserted at each step of the curves.
        deletion, insertion: {method: float32 (n, k)} the target's probability at each step.
        deletion_auc, insertion_auc: {method: float32 (n,)} trapezoid AUCs.
        protocol: the metric's protocol (``metrics.CellProtocol`` / ``PixelProtocol``).
        units: the top units of ``units.layer`` per image (``units.Units``) or None;
            ``coverage_of``: the method whose saliency the units' coverage measures.
        params: the parameters of the run (per method, targets, top units).
    """

    image_ids: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    images: np.ndarray
    saliency: dict
    mask_methods: list
    fractions: np.ndarray
    deletion: dict
    insertion: dict
    deletion_auc: dict
    insertion_auc: dict
    protocol: dict
    units: Units | None = None
    coverage_of: str | None = None
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "explanation"

    @property
    def methods(self) -> list[str]:
        return list(self.saliency)

    def __len__(self) -> int:
        return len(self.image_ids)

    def row(self, image_id: int) -> int:
        """The row of ``image_id``; KeyError when it was not explained."""
        hits = np.flatnonzero(self.image_ids == int(image_id))
        if not len(hits):
            raise KeyError(f"image {image_id} was not explained; explained: "
                           f"{self.image_ids[:10].tolist()}{' ...' if len(self) > 10 else ''}")
        return int(hits[0])

    def mask(self, method: str, image_id: int | None = None) -> np.ndarray:
        """The I-GOS mask of a mask method (1 keeps the image): 1 - saliency."""
        if method not in self.mask_methods:
            raise KeyError(f"{method!r} is not a mask method; mask methods: {self.mask_methods}")
        m = 1 - self.saliency[method]
        return m if image_id is None else m[self.row(image_id)]

    # -- tables ---------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """Per method: mean deletion and insertion AUC over the images (lower deletion and
        higher insertion are better)."""
        return pd.DataFrame({"deletion_auc": [float(np.mean(self.deletion_auc[m]))
                                              for m in self.methods],
                             "insertion_auc": [float(np.mean(self.insertion_auc[m]))
                                               for m in self.methods]},
                            index=pd.Index(self.methods, name="method"))

    def table(self) -> pd.DataFrame:
        """One row per image: target, label, prediction, probability and each method's AUCs."""
        frame = pd.DataFrame({"target": self.targets, "label": self.labels,
                              "prediction": self.predictions,
                              "probability": self.probabilities},
                             index=pd.Index(self.image_ids, name="image"))
        for m in self.methods:
            frame[f"{m}_deletion_auc"] = self.deletion_auc[m]
            frame[f"{m}_insertion_auc"] = self.insertion_auc[m]
        return frame

    def units_of(self, image_id: int) -> pd.DataFrame:
        """The ranked units of one image: neuron, contribution, label, cluster, coverage."""
        if self.units is None:
            raise KeyError("this explanation has no units: explain with layer=...")
        r, u = self.row(image_id), self.units
        keep = u.channels[r] >= 0
        return pd.DataFrame({"neuron": u.neurons[r][keep], "channel": u.channels[r][keep],
                             "contribution": u.contributions[r][keep],
                             "label": u.labels[r][keep], "cluster": u.clusters[r][keep],
                             "cluster_label": u.cluster_labels[r][keep],
                             "coverage": u.coverage[r][keep]},
                            index=pd.RangeIndex(int(keep.sum()), name="rank"))

    # -- combining ----------------------------------------------------------------------------
    def merged(self, other: "Explanation") -> "Explanation":
        """This explanation with ``other``'s images added (an image in both takes ``other``'s
        row); both must share methods, protocol, layer and image size."""
        if not isinstance(other, Explanation):
            raise TypeError(f"can only merge an Explanation, got {type(other).__name__}")
        problems = [what for what, a, b in (
            ("methods", self.methods, other.methods), ("protocol", self.protocol,
                                                       other.protocol),
            ("fractions", self.fractions.tolist(), other.fractions.tolist()),
            ("layer", self.units and self.units.layer, other.units and other.units.layer),
            ("image size", self.images.shape[1:], other.images.shape[1:])) if a != b]
        if problems:
            raise ValueError(f"cannot merge explanations that differ in {problems}: explain "
                             "the new images with the same settings")
        keep = ~np.isin(self.image_ids, other.image_ids)

        def join(a, b):
            return np.concatenate([a[keep], b])

        units = None
        if self.units is not None:
            if self.units.maps.shape[1:] != other.units.maps.shape[1:]:
                raise ValueError("cannot merge explanations with different numbers of units")
            units = Units(self.units.layer, **{
                f: join(getattr(self.units, f), getattr(other.units, f))
                for f in [*UNIT_FIELDS, "total"]})
        per = {name: {m: join(getattr(self, name)[m], getattr(other, name)[m])
                      for m in self.methods}
               for name in ("saliency", "deletion", "insertion", "deletion_auc",
                            "insertion_auc")}
        return replace(self, image_ids=join(self.image_ids, other.image_ids),
                       targets=join(self.targets, other.targets),
                       labels=join(self.labels, other.labels),
                       predictions=join(self.predictions, other.predictions),
                       probabilities=join(self.probabilities, other.probabilities),
                       images=join(self.images, other.images), units=units, **per)

    # -- the atlas section --------------------------------------------------------------------
    def to_section(self) -> dict:
        arrays = {"image_ids": np.asarray(self.image_ids, np.int64),
                  "targets": np.asarray(self.targets, np.int64),
                  "labels": np.asarray(self.labels, np.int64),
                  "predictions": np.asarray(self.predictions, np.int64),
                  "probabilities": np.asarray(self.probabilities, np.float32),
                  "images": np.asarray(self.images, np.uint8),
                  "fractions": np.asarray(self.fractions, np.float32)}
        for m in self.methods:
            arrays[f"saliency/{m}"] = np.asarray(self.saliency[m], np.float32)
            arrays[f"deletion/{m}"] = np.asarray(self.deletion[m], np.float32)
            arrays[f"insertion/{m}"] = np.asarray(self.insertion[m], np.float32)
            arrays[f"deletion_auc/{m}"] = np.asarray(self.deletion_auc[m], np.float32)
            arrays[f"insertion_auc/{m}"] = np.asarray(self.insertion_auc[m], np.float32)
        if self.units is not None:
            for name, dtype in UNIT_FIELDS.items():
                value = getattr(self.units, name)
                arrays[f"units/{name}"] = (np.asarray(value, str) if dtype == "str"
                                           else np.asarray(value, dtype))
            arrays["units/total"] = np.asarray(self.units.total, np.float32)
        meta = {"methods": self.methods, "mask_methods": list(self.mask_methods),
                "protocol": dict(self.protocol),
                "layer": None if self.units is None else self.units.layer,
                "coverage_of": self.coverage_of, "params": dict(self.params)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "Explanation":
        meta, arrays = section["meta"], section["arrays"]
        methods = [str(m) for m in meta["methods"]]
        per = {name: {m: arrays[f"{name}/{m}"] for m in methods}
               for name in ("saliency", "deletion", "insertion", "deletion_auc",
                            "insertion_auc")}
        units = None
        if meta["layer"] is not None:
            units = Units(str(meta["layer"]), total=arrays["units/total"],
                          **{f: arrays[f"units/{f}"] for f in UNIT_FIELDS})
        return cls(image_ids=arrays["image_ids"], targets=arrays["targets"],
                   labels=arrays["labels"], predictions=arrays["predictions"],
                   probabilities=arrays["probabilities"], images=arrays["images"],
                   mask_methods=list(meta["mask_methods"]), fractions=arrays["fractions"],
                   protocol=dict(meta["protocol"]), units=units,
                   coverage_of=meta["coverage_of"], params=dict(meta["params"]), **per)

    def check(self, atlas: "Atlas") -> None:
        missing = [m for m in self.mask_methods if m not in self.saliency]
        if missing:
            raise ValueError(f"mask methods {missing} have no saliency maps")
        if len(np.unique(self.image_ids)) != len(self.image_ids):
            raise ValueError("an image is explained twice: use merged() to add images")
        check_in_atlas(atlas, self.targets, self.image_ids)
        if self.units is not None and self.units.layer in atlas.layers:
            width = atlas.stats.layers[self.units.layer].channels
            if int(self.units.channels.max(initial=-1)) >= width:
                raise ValueError(f"units of layer {self.units.layer!r} beyond its {width} "
                                 "channels in the atlas: explain with the atlas's model")

    def __repr__(self) -> str:
        parts = ", ".join(f"{m} deletion {float(np.mean(self.deletion_auc[m])):.3f} / "
                          f"insertion {float(np.mean(self.insertion_auc[m])):.3f}"
                          for m in self.methods)
        layer = f", units of {self.units.layer!r}" if self.units is not None else ""
        return f"Explanation({len(self)} images; {parts}{layer})"

