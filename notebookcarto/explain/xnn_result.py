"""The XNN result: per explained class, a few x-features of one layer, their heatmaps on chosen
images, their nearest neurons and the faithfulness of the class score they rebuild, as an atlas
section (``xnn``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..analyses.result import Result
from .result import check_in_atlas

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["XNN"]

# per explained class (leading dimension m), with the dtype each is stored in
PER_CLASS = {"encoder": "float32", "encoder_bias": "float32", "decoder": "float32",
             "decoder_bias": "float32", "head": "float32", "head_bias": "float32",
             "heatmaps": "float32", "scores": "float32", "reconstructed": "float32",
             "neurons": "str", "neuron_weights": "float32", "neuron_labels": "str",
             "faithfulness_r2": "float32", "train_r2": "float32", "history": "float32",
             "seconds": "float32"}
IMAGES = {"image_ids": "int64", "images": "uint8", "train_ids": "int64",
          "held_out_ids": "int64"}


@dataclass
class XNN(Result):
    """x-features of ``layer`` (``xnn``) for m classes, k x-features each, C channels.

    The network of class row i: x = relu(encoder[i] @ (a / scale) + encoder_bias[i]) at each
    position of the activations a; a / scale ~ decoder[i] @ x + decoder_bias[i] (decoder
    columns: each x-feature's unit-norm basis in channel space); the class logit ~ head[i] .
    pool(x) + head_bias[i]. x-features are ordered by the share of the score they carry.

    Attributes:
        classes: int64 (m,) the classes explained.
        encoder (m, k, C), encoder_bias (m, k), decoder (m, C, k), decoder_bias (m, C), head
            (m, k), head_bias (m,): float32, the networks; ``scale``: the root mean square
            of the activations' norm over positions of the training images; ``pool``: "mean"
            or "max".
        image_ids: int64 (n,) the images shown (ids in the data); ``images`` uint8 (n, H, W, 3).
        heatmaps: float32 (m, n, k, h, w) the x-feature maps of the shown images.
        scores, reconstructed: float32 (m, n) the model's logit of the class and its
            reconstruction from the x-features, on the shown images.
        neurons: str (m, k, t) the nearest neurons of each x-feature ("layer:channel", largest
            decoder weight first), ``neuron_weights`` float32 (m, k, t) those weights,
            ``neuron_labels`` str (m, k, t) their concepts in the atlas ("" when none).
        faithfulness_r2: float32 (m,) R^2 of the reconstructed logit on the held-out images;
            ``train_r2`` on the training images.
        train_ids, held_out_ids: int64 the images trained on and held out.
        history: float32 (m, steps) the loss per step; ``seconds`` float32 (m,) training time
            per class; ``capture_seconds`` reading the activations (once for all classes).
        params: the settings of the run.
    """

    layer: str
    classes: np.ndarray
    encoder: np.ndarray
    encoder_bias: np.ndarray
    decoder: np.ndarray
    decoder_bias: np.ndarray
    head: np.ndarray
    head_bias: np.ndarray
    scale: float
    pool: str
    image_ids: np.ndarray
    images: np.ndarray
    heatmaps: np.ndarray
    scores: np.ndarray
    reconstructed: np.ndarray
    neurons: np.ndarray
    neuron_weights: np.ndarray
    neuron_labels: np.ndarray
    faithfulness_r2: np.ndarray
    train_r2: np.ndarray
    train_ids: np.ndarray
    held_out_ids: np.ndarray
    history: np.ndarray
    seconds: np.ndarray
    capture_seconds: float = 0.0
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "xnn"

    @property
    def features(self) -> int:
        return self.encoder.shape[1]

    def index(self, cls: int) -> int:
        """The row of class ``cls``; KeyError when it was not explained."""
        hits = np.flatnonzero(self.classes == int(cls))
        if not len(hits):
            raise KeyError(f"class {cls} was not explained; explained: {self.classes.tolist()}")
        return int(hits[0])

    def heatmaps_of(self, image_id: int, cls: int | None = None) -> np.ndarray:
        """float32 (k, h, w): the x-feature maps of a shown image for ``cls`` (default the
        first class explained)."""
        hits = np.flatnonzero(self.image_ids == int(image_id))
        if not len(hits):
            raise KeyError(f"image {image_id} is not shown; shown: {self.image_ids[:10].tolist()}")
        return self.heatmaps[self._row(cls), int(hits[0])]

    def embed(self, activations, cls: int | None = None) -> np.ndarray:
        """float32 (n, k, h, w): the x-feature maps of activations (n, C, h, w) of the layer."""
        a = np.asarray(activations, np.float32) / self.scale
        i = self._row(cls)
        x = np.einsum("kc,nchw->nkhw", self.encoder[i], a)
        return np.maximum(x + self.encoder_bias[i][None, :, None, None], 0)

    def nearest(self, cls: int | None = None) -> pd.DataFrame:
        """One row per x-feature and nearest neuron: feature, rank, neuron, weight, label."""
        i = self._row(cls)
        k, t = self.neurons.shape[1:]
        return pd.DataFrame({"feature": np.repeat(np.arange(k), t),
                             "rank": np.tile(np.arange(t), k),
                             "neuron": self.neurons[i].reshape(-1),
                             "weight": self.neuron_weights[i].reshape(-1),
                             "label": self.neuron_labels[i].reshape(-1)})

    def summary(self) -> pd.DataFrame:
        """Per class: faithfulness R^2 (held out), training R^2, training seconds."""
        return pd.DataFrame({"faithfulness_r2": self.faithfulness_r2, "train_r2": self.train_r2,
                             "seconds": self.seconds},
                            index=pd.Index(self.classes, name="class"))

    def _row(self, cls) -> int:
        return 0 if cls is None else self.index(cls)

    # -- the atlas section --------------------------------------------------------------------
    def to_section(self) -> dict:
        arrays = {k: np.asarray(getattr(self, k), str if t == "str" else t)
                  for k, t in {**PER_CLASS, **IMAGES}.items()}
        arrays["classes"] = np.asarray(self.classes, np.int64)
        meta = {"layer": self.layer, "scale": float(self.scale), "pool": self.pool,
                "capture_seconds": float(self.capture_seconds), "params": dict(self.params)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "XNN":
        meta, arrays = section["meta"], section["arrays"]
        return cls(layer=str(meta["layer"]), scale=float(meta["scale"]), pool=str(meta["pool"]),
                   capture_seconds=float(meta["capture_seconds"]), params=dict(meta["params"]),
                   **{k: arrays[k] for k in ["classes", *PER_CLASS, *IMAGES]})

    def check(self, atlas: "Atlas") -> None:
        if self.layer not in atlas.layers:
            raise ValueError(f"x-features of layer {self.layer!r}, which the atlas lacks (its "
                             f"layers: {atlas.layers}): explain an atlas layer")
        width = atlas.stats.layers[self.layer].channels
        if self.encoder.shape[2] != width:
            raise ValueError(f"x-features of {self.encoder.shape[2]} channels of layer "
                             f"{self.layer!r}, which has {width} in the atlas: explain with the "
                             "atlas's model")
        check_in_atlas(atlas, self.classes, self.image_ids, what="class")

    def __repr__(self) -> str:
        r2 = ", ".join(f"{c}: {r:.3f}" for c, r in zip(self.classes, self.faithfulness_r2))
        return (f"XNN({self.features} x-features of {self.layer!r} for {len(self.classes)} "
                f"classes; faithfulness R^2 {r2})")

