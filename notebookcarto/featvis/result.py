"""FeatureVisualizations: one image per target, with how it was made and how strongly it drives
its target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..analyses.result import Result

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["FeatureVisualizations"]


@dataclass
class FeatureVisualizations(Result):
    """Feature visualisations of neurons, classes and clusters (``featvis.visualize``).

    Attributes:
        targets: the keys, ``"layer:channel"``, ``"class:<k>"``, ``"cluster:<n>"`` or
            ``"cluster:<n>@<layer>"`` (the ids of the atlas's neurons and graph nodes).
        kinds: "neuron", "class" or "cluster" per target; ``layers``: its layer ("" for a
            class); ``labels``: text to show.
        images: uint8 (targets, H, W, 3), de-normalised for display.
        inputs: float32 (targets, 3, H, W), the images in the model's input space.
        activation: float32 (targets,), the target's activation on its image (spatial max of
            the channel's (direction's) map; the logit for a class).
        reference_max: float32 (targets,), its maximum over the reference images (NaN: none).
        loss: float32 (targets,), the method's final loss.
        reference_ids: int64 (targets, n), the image ids it was matched or measured against
            (-1: none, or images given directly).
        seeds: the seed of each target's generator.
        method: "vital" or "lucent"; ``space``: the input normalisation ({"mean", "std"} or
            None); ``params``: every option the images were made with.
    """

    targets: list
    kinds: list
    layers: list
    labels: list
    images: np.ndarray
    inputs: np.ndarray
    activation: np.ndarray
    reference_max: np.ndarray
    loss: np.ndarray
    reference_ids: np.ndarray
    seeds: list
    method: str
    space: dict | None = None
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "feature_visualizations"

    def index(self, key: str) -> int:
        """Position of target ``key``; a cluster spanning one layer answers to both
        ``"cluster:<n>"`` and ``"cluster:<n>@<layer>"``."""
        if key in self.targets:
            return self.targets.index(key)
        number, _, layer = str(key).partition("@")
        if layer and number in self.targets and self.layers[self.targets.index(number)] == layer:
            return self.targets.index(number)
        raise KeyError(f"no feature visualisation of {key!r}; this result has "
                       f"{self.targets[:8]}{' ...' if len(self.targets) > 8 else ''}")

    def image(self, key: str) -> np.ndarray:
        """The uint8 (H, W, 3) image of one target."""
        return self.images[self.index(key)]

    @property
    def relative_activation(self) -> np.ndarray:
        """activation / reference_max (NaN where no reference was measured)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.activation / self.reference_max

    def table(self) -> pd.DataFrame:
        """One row per target: kind, layer, label, activation, reference max, their ratio,
        loss, seed."""
        return pd.DataFrame({"kind": self.kinds, "layer": self.layers, "label": self.labels,
                             "activation": self.activation, "reference_max": self.reference_max,
                             "relative_activation": self.relative_activation,
                             "loss": self.loss, "seed": self.seeds},
                            index=pd.Index(self.targets, name="target"))

    def to_section(self) -> dict:
        arrays = {"images": np.asarray(self.images, np.uint8),
                  "inputs": np.asarray(self.inputs, np.float32),
                  "activation": np.asarray(self.activation, np.float32),
                  "reference_max": np.asarray(self.reference_max, np.float32),
                  "loss": np.asarray(self.loss, np.float32),
                  "reference_ids": np.asarray(self.reference_ids, np.int64)}
        meta = {"targets": list(self.targets), "kinds": list(self.kinds),
                "layers": list(self.layers), "labels": list(self.labels),
                "seeds": [int(s) for s in self.seeds], "method": self.method,
                "space": self.space, "params": dict(self.params)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "FeatureVisualizations":
        m, a = section["meta"], section["arrays"]
        return cls(list(m["targets"]), list(m["kinds"]), list(m["layers"]), list(m["labels"]),
                   a["images"], a["inputs"], a["activation"], a["reference_max"], a["loss"],
                   a["reference_ids"], [int(s) for s in m["seeds"]], m["method"], m["space"],
                   dict(m["params"]))

    def check(self, atlas: "Atlas") -> None:
        n = len(self.targets)
        lists = {"kinds": self.kinds, "layers": self.layers, "labels": self.labels,
                 "seeds": self.seeds}
        wrong = [name for name, values in lists.items() if len(values) != n]
        if wrong or self.images.shape[0] != n:
            raise ValueError(f"feature visualisations of {n} targets with {wrong or 'images'} "
                             "of another length")
        for key, kind, layer in zip(self.targets, self.kinds, self.layers):
            if kind == "neuron":
                atlas.parse_neuron(key)
            elif kind == "class" and int(key.partition(":")[2]) >= len(atlas.class_names):
                raise ValueError(f"visualisation of {key!r}, but the atlas has "
                                 f"{len(atlas.class_names)} classes")
            elif kind == "cluster" and layer not in atlas.layers:
                raise ValueError(f"visualisation of {key!r} in layer {layer!r}, which the atlas "
                                 f"does not map ({atlas.layers})")

    def __repr__(self) -> str:
        kinds = ", ".join(f"{self.kinds.count(k)} {k}s" for k in ("neuron", "class", "cluster")
                          if k in self.kinds)
        size = "x".join(str(s) for s in self.images.shape[1:3])
        return f"FeatureVisualizations({self.method}: {kinds}; {size} px)"
