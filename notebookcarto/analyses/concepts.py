"""Which labelled concepts a neuron's exemplars (its top images) contain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from .result import Result

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["ExemplarConcepts", "describe_concepts", "exemplar_concepts"]


@dataclass
class ExemplarConcepts(Result):
    """``shares``: (neurons x concepts) DataFrame, the share of each neuron's top images that
    contain each concept; ``base_rates``: the share of all images holding each concept."""

    shares: pd.DataFrame
    base_rates: pd.Series

    section: ClassVar[str] = "exemplar_concepts"

    def describe(self, neuron: str, *, n: int = 3, min_share: float = 0.5) -> list:
        """``describe_concepts`` of one neuron: its most over-represented concepts."""
        return describe_concepts(self.shares.loc[neuron], self.base_rates, n=n,
                                 min_share=min_share)

    def to_section(self) -> dict:
        return {"meta": {"concepts": [str(c) for c in self.shares.columns]},
                "arrays": {"shares": self.shares.to_numpy(np.float64),
                           "base_rates": self.base_rates.to_numpy(np.float64)}}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas") -> "ExemplarConcepts":
        names = list(section["meta"]["concepts"])
        shares = pd.DataFrame(section["arrays"]["shares"], columns=names,
                              index=pd.Index(atlas.neuron_ids, name="neuron"))
        return cls(shares, pd.Series(section["arrays"]["base_rates"], index=names))

    def check(self, atlas: "Atlas") -> None:
        if list(self.shares.index) != atlas.neuron_ids:
            raise ValueError("these exemplar concepts are of another atlas's neurons")


def exemplar_concepts(atlas: "Atlas", concept_table: np.ndarray,
                      concept_names) -> ExemplarConcepts:
    """Share of each neuron's top images that contain each concept, as ``ExemplarConcepts``.

    ``concept_table`` is the (images, concepts) boolean table of image-level concept labels of
    the data set the atlas was built on (image ids index its rows); empty top-N slots are
    ignored. The base rates are the table's column means.
    """
    table = np.asarray(concept_table, dtype=bool)
    if table.ndim != 2 or table.shape[1] != len(concept_names):
        raise ValueError(f"concept_table must be (images, {len(concept_names)}) booleans, "
                         f"got shape {table.shape}")
    if table.shape[0] < atlas.stats.n_images:
        raise ValueError(f"concept_table has {table.shape[0]} rows but the atlas saw "
                         f"{atlas.stats.n_images} images: pass the table of the same data set")
    rows = []
    for layer in atlas.stats.layers.values():
        index = layer.top.index.cpu().numpy()
        valid = index >= 0
        present = table[np.where(valid, index, 0)] & valid[..., None]
        rows.append(present.sum(1) / np.maximum(valid.sum(1), 1)[:, None])
    names = [str(c) for c in concept_names]
    shares = pd.DataFrame(np.concatenate(rows), index=pd.Index(atlas.neuron_ids, name="neuron"),
                          columns=names)
    return ExemplarConcepts(shares, pd.Series(table.mean(0), index=names))


def describe_concepts(shares: pd.Series, base_rates: pd.Series, *, n: int = 3,
                      min_share: float = 0.5) -> list[tuple[str, float]]:
    """The ``n`` concepts most over-represented in one neuron's exemplars (share over base
    rate), among those present in at least ``min_share`` of them: ``[(concept, share), ...]``."""
    lift = shares / base_rates.clip(lower=1e-9)
    keep = (shares >= min_share) & (lift > 1)
    best = lift[keep].sort_values(ascending=False, kind="stable").head(n)
    return [(name, float(shares[name])) for name in best.index]
