"""Summit's neuron-influence counts I (classes x later channels x earlier channels).

``InfluenceCounts`` consumes per-image influence matrices from any estimator (see
``notebookcarto.analyses.influence``) and keeps only counts, so its memory does not grow with the
number of images. ``InfluenceStats`` holds one such reducer per layer pair and estimator of a
pass, mergeable and serialisable like the other statistics.

Summit: Hohman, Park, Robinson, Chau, "Summit: Scaling Deep Learning Interpretability by
Visualizing Activation and Attribution Summarizations", IEEE VIS 2019.
"""

from __future__ import annotations

import json

import torch

from .merging import check_disjoint, check_same, union
from .reducers import Reducer

__all__ = ["InfluenceCounts", "InfluenceStats"]


class InfluenceCounts(Reducer):
    """Class-wise counts of how often an earlier channel is among a later channel's top inputs.

    For every image with label y and every later channel j, the ``top_inputs`` earlier channels i
    with the largest influence inf_{i->j} add 1 to ``counts[y, j, i]`` (Summit's I, with
    Summit's k = 5). Unlike the original, an input counts only if its influence is above
    ``min_influence`` (default 0): the original's top-k also counted ties at zero, so dead maps
    and dead output channels added arbitrary counts. ``images`` counts the images of each class
    seen.
    """

    _state = ("counts", "images")

    def __init__(self, later_channels: int, earlier_channels: int, num_classes: int, *,
                 top_inputs: int = 5, min_influence: float = 0.0,
                 device: torch.device | str | None = None):
        if top_inputs < 1:
            raise ValueError(f"top_inputs (top earlier channels counted per later channel) must "
                             f"be at least 1, got {top_inputs}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.top_inputs = int(top_inputs)
        self.min_influence = float(min_influence)
        self.counts = torch.zeros(num_classes, later_channels, earlier_channels, dtype=torch.long,
                                  device=device)
        self.images = torch.zeros(num_classes, dtype=torch.long, device=device)

    def update(self, influence: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: ``influence`` (B, C_later, C_earlier), ``labels`` (B,) int64."""
        _, c_later, c_earlier = self.counts.shape
        if influence.ndim != 3 or influence.shape[1:] != (c_later, c_earlier):
            raise ValueError(f"influence must have shape (B, {c_later}, {c_earlier}), got "
                             f"{tuple(influence.shape)}")
        if labels.shape != influence.shape[:1]:
            raise ValueError(f"expected {influence.shape[0]} labels, got shape "
                             f"{tuple(labels.shape)}")
        values, index = influence.topk(min(self.top_inputs, c_earlier), dim=2)
        chosen = (values > self.min_influence).long()
        mask = torch.zeros(influence.shape, dtype=torch.long, device=influence.device)
        mask.scatter_(2, index, chosen)
        self.counts.index_add_(0, labels, mask)
        self.images += torch.bincount(labels, minlength=self.images.shape[0])

    def merge(self, other: "InfluenceCounts") -> "InfluenceCounts":
        self._check_mergeable(other)
        if (self.top_inputs, self.min_influence) != (other.top_inputs, other.min_influence):
            raise ValueError(f"cannot merge influence counts with different top_inputs / "
                             f"min_influence: ({self.top_inputs}, {self.min_influence}) vs "
                             f"({other.top_inputs}, {other.min_influence})")
        self.counts += other.counts
        self.images += other.images
        return self


def _key(estimator: str, earlier: str, later: str) -> str:
    return f"{estimator}/{later}|{earlier}"


class InfluenceStats:
    """Influence counts of several layer pairs, for one or more estimators, over one data set.

    ``counts(earlier, later)`` -> (classes, C_later, C_earlier) int64 tensor, Summit's I.
    ``reducers`` maps ``"estimator/later|earlier"`` to an ``InfluenceCounts``. ``config`` holds
    the pairs, estimators, parameters (``top_inputs``, ``min_influence``, ...), channel counts,
    the joining conv (and folded BatchNorm) of each pair for the conv estimator, and the number
    of images. Mergeable (``merge``) and serialisable (``state_dict`` / ``from_state_dict``).
    """

    def __init__(self, config: dict, reducers: dict[str, InfluenceCounts]):
        self.config = config
        self.reducers = reducers

    @classmethod
    def empty(cls, config: dict, *,
              device: torch.device | str | None = None) -> "InfluenceStats":
        """Zero counts for every pair and estimator of ``config``, on ``device``."""
        channels = config["channels"]
        reducers = {_key(est, e, l): InfluenceCounts(
                        channels[l], channels[e], config["num_classes"],
                        top_inputs=config["top_inputs"], min_influence=config["min_influence"],
                        device=device)
                    for est in config["estimators"] for e, l in config["pairs"]}
        return cls(config, reducers)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [tuple(p) for p in self.config["pairs"]]

    @property
    def estimators(self) -> list[str]:
        return list(self.config["estimators"])

    @property
    def n_images(self) -> int:
        return self.config["n_images"]

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def reducer(self, earlier: str, later: str, estimator: str | None = None) -> InfluenceCounts:
        """The ``InfluenceCounts`` of one pair and estimator (default: the first estimator)."""
        estimator = estimator or self.estimators[0]
        key = _key(estimator, earlier, later)
        if key not in self.reducers:
            raise KeyError(f"no influence counts for ({earlier!r}, {later!r}) with estimator "
                           f"{estimator!r}: have pairs {self.pairs} and estimators "
                           f"{self.estimators}")
        return self.reducers[key]

    def counts(self, earlier: str, later: str, estimator: str | None = None) -> torch.Tensor:
        """Summit's I for one pair: (classes, C_later, C_earlier) int64 counts."""
        return self.reducer(earlier, later, estimator).counts

    def merge(self, other: "InfluenceStats") -> "InfluenceStats":
        """Add another pass's counts (over different images) into these."""
        check_same(self.config, other.config,
                   ("pairs", "estimators", "top_inputs", "min_influence", "stride", "fold_bn",
                    "num_classes", "channels", "joins", "skip_tokens"), "influence counts")
        check_disjoint(self.config["image_ranges"], other.config["image_ranges"],
                       "influence counts")
        for key, reducer in self.reducers.items():
            reducer.merge(other.reducers[key])
        self.config["n_images"] += other.n_images
        self.config["image_ranges"] = union(self.config["image_ranges"]
                                            + other.config["image_ranges"])
        return self

    def state_dict(self) -> dict:
        """``{"config": json-ready dict, "tensors": {"estimator/later|earlier/key": tensor}}``."""
        tensors = {f"{key}/{name}": value for key, reducer in self.reducers.items()
                   for name, value in reducer.state_dict().items()}
        return {"config": _jsonable(self.config), "tensors": tensors}

    @classmethod
    def from_state_dict(cls, state: dict, *,
                        device: torch.device | str | None = None) -> "InfluenceStats":
        """Rebuild the statistics from ``state_dict()``'s output, on ``device``."""
        config = _jsonable(state["config"])
        if "top_inputs" not in config and "k" in config:  # states saved before the rename
            config["top_inputs"] = config.pop("k")
        stats = cls.empty(config, device=device)
        for key, reducer in stats.reducers.items():
            reducer.load_state_dict({name: state["tensors"][f"{key}/{name}"]
                                     for name in reducer._state})
        return stats

    def __repr__(self) -> str:
        return (f"InfluenceStats({len(self.pairs)} pairs, estimators {self.estimators}, "
                f"{self.n_images} images, {self.num_classes} classes)")


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config))
