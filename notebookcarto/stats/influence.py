"""Summit's neuron-influence counts I (classes x later channels x earlier channels).

``InfluenceCounts`` consumes per-image influence matrices from any estimator (see
``notebookcarto.analyses.influence``) and keeps only counts, so its memory does not grow with the
number of images. The counts are kept sparse (the sorted flat indices of the non-zero entries
and their counts): per image and later channel at most ``top_inputs`` entries are non-zero, so
for Summit's setting (1,000 classes, GoogLeNet's 5,484 channels) a dense int64 I would take
about 27 GB where the non-zero entries of a pass over a few thousand images take megabytes.
``ClassCounts`` is the same sparse I read back, one class at a time (``counts[y]``) or whole
(``np.asarray(counts)``). ``InfluenceStats`` holds one reducer per layer pair and estimator of a
pass, mergeable and serialisable like the other statistics.

Summit: Hohman, Park, Robinson, Chau, "Summit: Scaling Deep Learning Interpretability by
Visualizing Activation and Attribution Summarizations", IEEE VIS 2019.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from .merging import check_disjoint, check_same, union
from .reducers import Reducer

__all__ = ["ClassCounts", "InfluenceCounts", "InfluenceStats"]

# New entries wait in a buffer and are merged into the sorted ones when the buffer outgrows them
# (or this many entries): each entry is sorted O(log n) times over a pass.
_MERGE_AT = 2 ** 22


class ClassCounts:
    """Summit's I of one layer pair, (classes, C_later, C_earlier) int64, stored sparsely.

    ``index`` holds the sorted flat (C-order) indices of the non-zero entries and ``values``
    their counts. ``counts[y]`` is class ``y``'s dense (C_later, C_earlier) matrix, built from
    that class's entries only; ``np.asarray(counts)`` (or ``dense()``) the whole dense array,
    which for many classes and wide layers can be very large: read one class at a time where
    possible. Other keys (``counts[:, j]``, ...) go through the dense array.
    """

    dtype = np.dtype(np.int64)
    ndim = 3

    def __init__(self, shape, index, values):
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"ClassCounts needs a (classes, C_later, C_earlier) shape, got "
                             f"{self.shape}")
        self.index = np.asarray(index, dtype=np.int64).reshape(-1)
        self.values = np.asarray(values, dtype=np.int64).reshape(-1)
        if self.index.shape != self.values.shape:
            raise ValueError(f"{len(self.index)} indices but {len(self.values)} values")
        per_class = self.shape[1] * self.shape[2]
        self._starts = np.searchsorted(self.index, np.arange(self.shape[0] + 1) * per_class)

    @classmethod
    def from_dense(cls, array) -> "ClassCounts":
        """The sparse form of a dense (classes, C_later, C_earlier) array."""
        array = np.asarray(array)
        flat = array.reshape(-1)
        index = np.flatnonzero(flat)
        return cls(array.shape, index, flat[index])

    @property
    def nnz(self) -> int:
        """The number of non-zero entries."""
        return len(self.index)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            y = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= y < self.shape[0]:
                raise IndexError(f"class {key} is out of range for {self.shape[0]} classes")
            out = np.zeros(self.shape[1] * self.shape[2], np.int64)
            a, b = self._starts[y], self._starts[y + 1]
            out[self.index[a:b] - y * len(out)] = self.values[a:b]
            return out.reshape(self.shape[1:])
        return self.dense()[key]

    def dense(self) -> np.ndarray:
        """The whole dense int64 array."""
        out = np.zeros(int(np.prod(self.shape)), np.int64)
        out[self.index] = self.values
        return out.reshape(self.shape)

    def __array__(self, dtype=None, copy=None):
        out = self.dense()
        return out if dtype is None else out.astype(dtype)

    def sum(self, axis=None):
        """Sums as numpy's, without the dense array for ``axis`` None or 0."""
        if axis is None:
            return int(self.values.sum())
        if axis == 0:
            per_class = self.shape[1] * self.shape[2]
            out = np.bincount(self.index % per_class, weights=self.values, minlength=per_class)
            return out.astype(np.int64).reshape(self.shape[1:])
        return self.dense().sum(axis)

    def __repr__(self) -> str:
        return f"ClassCounts(shape={self.shape}, nnz={self.nnz})"


class InfluenceCounts(Reducer):
    """Class-wise counts of how often an earlier channel is among a later channel's top inputs.

    For every image with label y and every later channel j, the ``top_inputs`` earlier channels i
    with the largest influence inf_{i->j} add 1 to ``counts[y, j, i]`` (Summit's I, with
    Summit's k = 5). Unlike the original, an input counts only if its influence is above
    ``min_influence`` (default 0): the original's top-k also counted ties at zero, so dead maps
    and dead output channels added arbitrary counts. ``images`` counts the images of each class
    seen.

    The counts are sparse: ``index`` (sorted flat indices into (classes, C_later, C_earlier))
    and ``values``; ``counts`` builds the dense tensor, ``class_counts()`` the sparse
    ``ClassCounts``. ``update`` adds a batch over all later channels; ``add_rows`` adds the
    rows of some later channels only (an inception branch writes a slice of its block's
    channels) and ``count_images`` counts the batch's images once.
    """

    _state = ("index", "values", "images")

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
        self.shape = (int(num_classes), int(later_channels), int(earlier_channels))
        self.index = torch.zeros(0, dtype=torch.long, device=device)
        self.values = torch.zeros(0, dtype=torch.long, device=device)
        self.images = torch.zeros(num_classes, dtype=torch.long, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._pending_n = 0

    def update(self, influence: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: ``influence`` (B, C_later, C_earlier), ``labels`` (B,) int64."""
        _, c_later, c_earlier = self.shape
        if influence.ndim != 3 or influence.shape[1:] != (c_later, c_earlier):
            raise ValueError(f"influence must have shape (B, {c_later}, {c_earlier}), got "
                             f"{tuple(influence.shape)}")
        self.add_rows(influence, labels)
        self.count_images(labels)

    def add_rows(self, influence: torch.Tensor, labels: torch.Tensor, start: int = 0) -> None:
        """Add the top inputs of later channels ``start`` .. ``start + R - 1`` of one batch:
        ``influence`` (B, R, C_earlier). Images are not counted (``count_images``)."""
        _, c_later, c_earlier = self.shape
        if (influence.ndim != 3 or influence.shape[2] != c_earlier
                or not 0 <= start <= c_later - influence.shape[1]):
            raise ValueError(f"influence rows must have shape (B, R, {c_earlier}) for later "
                             f"channels {start}..{start}+R-1 of {c_later}, got "
                             f"{tuple(influence.shape)}")
        if labels.shape != influence.shape[:1]:
            raise ValueError(f"expected {influence.shape[0]} labels, got shape "
                             f"{tuple(labels.shape)}")
        rows = influence.shape[1]
        values, inputs = influence.topk(min(self.top_inputs, c_earlier), dim=2)
        chosen = values > self.min_influence
        later = torch.arange(start, start + rows, device=influence.device)
        flat = (labels.to(influence.device)[:, None, None] * c_later + later[None, :, None]) \
            * c_earlier + inputs
        new = flat[chosen].to(self.index.device)
        self._pending.append((new, None))
        self._pending_n += new.numel()
        if self._pending_n > max(_MERGE_AT, self.index.numel()):
            self._merge_pending()

    def count_images(self, labels: torch.Tensor) -> None:
        """Count one batch's images per class."""
        self.images += torch.bincount(labels.to(self.images.device),
                                      minlength=self.images.shape[0])

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        keys = [self.index] + [k for k, _ in self._pending]
        counts = [self.values] + [torch.ones_like(k) if v is None else v
                                  for k, v in self._pending]
        self._pending, self._pending_n = [], 0
        unique, inverse = torch.unique(torch.cat(keys), sorted=True, return_inverse=True)
        values = torch.zeros(len(unique), dtype=torch.long, device=unique.device)
        self.index, self.values = unique, values.scatter_add_(0, inverse, torch.cat(counts))

    @property
    def counts(self) -> torch.Tensor:
        """The dense (classes, C_later, C_earlier) int64 counts (large for many classes and wide
        layers: ``class_counts()`` keeps them sparse)."""
        self._merge_pending()
        out = torch.zeros(int(np.prod(self.shape)), dtype=torch.long, device=self.index.device)
        out[self.index] = self.values
        return out.view(self.shape)

    def class_counts(self) -> ClassCounts:
        """The counts as a sparse ``ClassCounts`` (numpy, on the CPU)."""
        self._merge_pending()
        return ClassCounts(self.shape, self.index.cpu().numpy(), self.values.cpu().numpy())

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._merge_pending()
        return super().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        """Load ``state_dict()``'s output; a dense ``counts`` tensor (states saved before the
        counts were sparse) is read too."""
        state = dict(state)
        if "counts" in state and "index" not in state:
            dense = torch.as_tensor(state.pop("counts"))
            if tuple(dense.shape) != self.shape:
                raise ValueError(f"InfluenceCounts.counts: shape {tuple(dense.shape)} does not "
                                 f"match {self.shape}")
            flat = dense.reshape(-1)
            state["index"] = torch.nonzero(flat).reshape(-1)
            state["values"] = flat[state["index"]]
        for key in self._state:
            if key not in state:
                raise KeyError(f"InfluenceCounts state lacks {key!r}")
        images = torch.as_tensor(state["images"])
        if images.shape != self.images.shape:
            raise ValueError(f"InfluenceCounts.images: shape {tuple(images.shape)} does not "
                             f"match {tuple(self.images.shape)}")
        device = self.images.device
        self.index = torch.as_tensor(state["index"]).to(device, torch.long, copy=True)
        self.values = torch.as_tensor(state["values"]).to(device, torch.long, copy=True)
        self.images = images.to(device, torch.long, copy=True)
        self._pending, self._pending_n = [], 0
        return self

    def to(self, device):
        self._merge_pending()
        return super().to(device)

    def merge(self, other: "InfluenceCounts") -> "InfluenceCounts":
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other.shape != self.shape:
            raise ValueError(f"cannot merge InfluenceCounts of shape {other.shape} into "
                             f"{self.shape}")
        if other.images.device != self.images.device:
            raise ValueError(f"cannot merge InfluenceCounts on {self.images.device} with one on "
                             f"{other.images.device}: move one with .to(device) first")
        if (self.top_inputs, self.min_influence) != (other.top_inputs, other.min_influence):
            raise ValueError(f"cannot merge influence counts with different top_inputs / "
                             f"min_influence: ({self.top_inputs}, {self.min_influence}) vs "
                             f"({other.top_inputs}, {other.min_influence})")
        other._merge_pending()
        self._pending.append((other.index.clone(), other.values.clone()))
        self._merge_pending()
        self.images += other.images
        return self


def _key(estimator: str, earlier: str, later: str) -> str:
    return f"{estimator}/{later}|{earlier}"


def bottleneck_pairs(config: dict) -> set[tuple[str, str]]:
    """The (earlier, bottleneck) and (bottleneck, later) pairs a pass added for the bottlenecks
    of branched (inception) joins, beyond the pairs asked for."""
    asked = {tuple(p) for p in config.get("requested", config["pairs"])}
    added = set()
    for key, necks in (config.get("bottlenecks") or {}).items():
        later, _, earlier = key.partition("|")
        for neck in necks:
            added |= {(earlier, neck["layer"]), (neck["layer"], later)}
    return added - asked


class InfluenceStats:
    """Influence counts of several layer pairs, for one or more estimators, over one data set.

    ``counts(earlier, later)`` -> (classes, C_later, C_earlier) int64 tensor, Summit's I
    (``class_counts`` keeps it sparse).
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
        """Zero counts for every pair and estimator of ``config``, on ``device`` (the
        bottleneck pairs that branched joins add, for the conv estimator only)."""
        channels = config["channels"]
        added = bottleneck_pairs(config)
        reducers = {_key(est, e, l): InfluenceCounts(
                        channels[l], channels[e], config["num_classes"],
                        top_inputs=config["top_inputs"], min_influence=config["min_influence"],
                        device=device)
                    for est in config["estimators"] for e, l in config["pairs"]
                    if est == "conv" or (e, l) not in added}
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
        """Summit's I for one pair: a dense (classes, C_later, C_earlier) int64 tensor (see
        ``class_counts`` for the sparse form)."""
        return self.reducer(earlier, later, estimator).counts

    def class_counts(self, earlier: str, later: str,
                     estimator: str | None = None) -> ClassCounts:
        """Summit's I for one pair as a sparse ``ClassCounts`` (numpy, read per class)."""
        return self.reducer(earlier, later, estimator).class_counts()

    def merge(self, other: "InfluenceStats") -> "InfluenceStats":
        """Add another pass's counts (over different images) into these."""
        check_same(self.config, other.config,
                   ("pairs", "estimators", "top_inputs", "min_influence", "stride", "fold_bn",
                    "num_classes", "channels", "joins", "skip_tokens"), "influence counts")
        if self.config.get("bottlenecks") != other.config.get("bottlenecks"):
            raise ValueError("cannot merge influence counts whose passes found different "
                             "bottlenecks (config 'bottlenecks' differ)")
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
        tensors = state["tensors"]
        for key, reducer in stats.reducers.items():
            names = [n for n in (*reducer._state, "counts") if f"{key}/{n}" in tensors]
            reducer.load_state_dict({name: tensors[f"{key}/{name}"] for name in names})
        return stats

    def __repr__(self) -> str:
        return (f"InfluenceStats({len(self.pairs)} pairs, estimators {self.estimators}, "
                f"{self.n_images} images, {self.num_classes} classes)")


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config))
