"""Summit's neuron-influence counts I (classes x later channels x earlier channels).

The reducer consumes per-image influence matrices from any estimator (see
``notebookcarto.analyses.influence``) and keeps only counts, so its memory does not grow with the
number of images.
"""

from __future__ import annotations

import torch

from .reducers import Reducer


class InfluenceCounts(Reducer):
    """Class-wise counts of how often an earlier channel is among a later channel's top inputs.

    For every image with label y and every later channel j, the ``k`` earlier channels i with the
    largest influence inf_{i->j} add 1 to ``counts[y, j, i]`` (REFERENCE section 1.2). Unlike the
    original, an input counts only if its influence is above ``min_influence`` (default 0): the
    original's top-k also counted ties at zero, so dead maps and dead output channels added
    arbitrary counts. ``images`` counts the images of each class seen.
    """

    _state = ("counts", "images")

    def __init__(self, later_channels: int, earlier_channels: int, num_classes: int, k: int = 5,
                 min_influence: float = 0.0, device=None):
        if k < 1:
            raise ValueError(f"k (top inputs per output channel) must be at least 1, got {k}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.k = int(k)
        self.min_influence = float(min_influence)
        self.counts = torch.zeros(num_classes, later_channels, earlier_channels, dtype=torch.long,
                                  device=device)
        self.images = torch.zeros(num_classes, dtype=torch.long, device=device)

    def update(self, influence: torch.Tensor, labels: torch.Tensor):
        """Add one batch: ``influence`` (B, C_later, C_earlier), ``labels`` (B,) int64."""
        _, c_later, c_earlier = self.counts.shape
        if influence.ndim != 3 or influence.shape[1:] != (c_later, c_earlier):
            raise ValueError(f"influence must have shape (B, {c_later}, {c_earlier}), got "
                             f"{tuple(influence.shape)}")
        if labels.shape != influence.shape[:1]:
            raise ValueError(f"expected {influence.shape[0]} labels, got shape "
                             f"{tuple(labels.shape)}")
        values, index = influence.topk(min(self.k, c_earlier), dim=2)
        chosen = (values > self.min_influence).long()
        mask = torch.zeros(influence.shape, dtype=torch.long, device=influence.device)
        mask.scatter_(2, index, chosen)
        self.counts.index_add_(0, labels, mask)
        self.images += torch.bincount(labels, minlength=self.images.shape[0])

    def merge(self, other: "InfluenceCounts"):
        self._check_mergeable(other)
        if (self.k, self.min_influence) != (other.k, other.min_influence):
            raise ValueError(f"cannot merge influence counts with different k / min_influence: "
                             f"({self.k}, {self.min_influence}) vs ({other.k}, "
                             f"{other.min_influence})")
        self.counts += other.counts
        self.images += other.images
        return self
