"""Patches: every neuron's example patches and the heat maps over them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..result import Result

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["Patches"]


@dataclass
class Patches(Result):
    """Example patches of every neuron (``example_patches``), in ``atlas.neuron_ids`` order.

    Attributes:
        patches: uint8 (neurons, n_patches, size, size, 3), best first.
        values: float32 (neurons, n_patches), the spatial max of each patch's image (NaN: none).
        images: int64 (neurons, n_patches), the image id of each patch (-1: none).
        heatmaps: uint8 (neurons, n_patches, size, size), the neuron's map over each patch
            (255 = its best top value), or None.
        layers, input_shape: the layers and the (C, H, W) input the fields were measured for.
        heatmap_layers: the layers with heat maps (those with spatial maps).
        fill: None (boxes clipped to the image) or the [r, g, b] padding colour.
        params: the other parameters (``mean``/``std`` used for display, ``batch_size``).
    """

    patches: np.ndarray
    values: np.ndarray
    images: np.ndarray
    heatmaps: np.ndarray | None
    layers: list
    input_shape: list
    heatmap_layers: list
    fill: list | None = None
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "patches"

    @property
    def n_patches(self) -> int:
        return self.patches.shape[1]

    @property
    def size(self) -> int:
        return self.patches.shape[2]

    @property
    def crop(self) -> str:
        return "clip" if self.fill is None else "pad"

    def of(self, atlas: "Atlas", neuron: str) -> np.ndarray:
        """One neuron's patches (those with an image), best first: uint8 (n, size, size, 3)."""
        i = int(atlas.neuron_index([neuron])[0])
        return self.patches[i][self.images[i] >= 0]

    def to_section(self) -> dict:
        arrays = {"patches": self.patches, "values": self.values, "images": self.images}
        if self.heatmaps is not None:
            arrays["heatmaps"] = self.heatmaps
        meta = {"size": self.size, "n_patches": self.n_patches, "layers": list(self.layers),
                "input_shape": [int(v) for v in self.input_shape],
                "heatmap_layers": list(self.heatmap_layers), "crop": self.crop,
                "fill": self.fill, "params": dict(self.params)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "Patches":
        a, meta = section["arrays"], section["meta"]
        return cls(a["patches"], a["values"], a["images"], a.get("heatmaps"),
                   list(meta["layers"]), list(meta["input_shape"]),
                   list(meta["heatmap_layers"]), meta["fill"], dict(meta["params"]))

    def check(self, atlas: "Atlas") -> None:
        if list(self.layers) != atlas.layers:
            raise ValueError(f"these patches are of layers {self.layers}, the atlas has "
                             f"{atlas.layers}: compute them for this atlas")

    def __repr__(self) -> str:
        heat = "with" if self.heatmaps is not None else "without"
        return (f"Patches({self.patches.shape[0]} neurons x {self.n_patches} patches of "
                f"{self.size}px, {heat} heat maps)")
