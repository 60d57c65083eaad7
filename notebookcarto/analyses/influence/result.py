"""Influence: Summit's influence counts I of layer pairs, as an atlas result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ...stats.influence import ClassCounts
from ..result import Result

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["Influence"]


@dataclass
class Influence(Result):
    """Summit's influence counts (``count_influence``).

    Attributes:
        counts: {(earlier, later): int64 (classes, C_later, C_earlier)}: how often, over the
            images of a class, channel i of the earlier layer was among the ``top_inputs``
            inputs of channel j of the later layer. ``count_influence`` gives sparse
            ``ClassCounts`` (read a class with ``counts[pair][y]``; ``np.asarray`` builds the
            dense array); numpy arrays are accepted too.
        estimator: "conv" or "gradient" (see ``notebookcarto.analyses.influence``).
        top_inputs: inputs counted per later channel and image (Summit's k).
        params: the other parameters of the pass (stride, min_influence, fold_bn, ...).
    """

    counts: dict
    estimator: str
    top_inputs: int
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "influence"

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self.counts)

    def of(self, earlier: str, later: str) -> np.ndarray:
        """The counts of one pair: (classes, C_later, C_earlier)."""
        if (earlier, later) not in self.counts:
            raise KeyError(f"no influence counts for ({earlier!r}, {later!r}): the pairs are "
                           f"{self.pairs}")
        return self.counts[(earlier, later)]

    def to_section(self) -> dict:
        # the schema (atlas/sections.py) stores each pair's dense (classes, C_later,
        # C_earlier) array
        meta = {"pairs": [[e, l] for e, l in self.counts], "estimator": self.estimator,
                "top_inputs": int(self.top_inputs), "params": dict(self.params)}
        arrays = {f"counts/{l}|{e}": np.asarray(c, dtype=np.int64)
                  for (e, l), c in self.counts.items()}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "Influence":
        meta, arrays = section["meta"], section["arrays"]
        counts = {(str(e), str(l)): ClassCounts.from_dense(arrays[f"counts/{l}|{e}"])
                  for e, l in meta["pairs"]}
        return cls(counts, str(meta["estimator"]), int(meta["top_inputs"]),
                   dict(meta["params"]))

    def check(self, atlas: "Atlas") -> None:
        for (e, l), c in self.counts.items():
            for name, width in ((l, c.shape[1]), (e, c.shape[2])):
                if name in atlas.stats.layers and atlas.stats.layers[name].channels != width:
                    raise ValueError(f"the influence counts of ({e!r}, {l!r}) have {width} "
                                     f"channels for {name!r}, the atlas "
                                     f"{atlas.stats.layers[name].channels}: count influence "
                                     "for this atlas")

    def __repr__(self) -> str:
        return (f"Influence({len(self.counts)} pairs, estimator {self.estimator!r}, "
                f"top_inputs={self.top_inputs})")
