"""Streaming, mergeable reducers over per-image spatial maxima.

Every reducer keeps a fixed-size state on the model's device (memory independent of the number of
images) and offers ``update``, ``merge``, ``state_dict`` and ``load_state_dict``. Layer reducers
consume a ``LayerBatch``: for B images and C channels, the spatial maximum a_c(x) of each channel,
its argmax position, the images' ids and (optionally) their labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..datasets.items import MAX_ID

__all__ = ["AUTO_TAU_CHANNELS", "ClassAccuracy", "ClassAggregation", "ClassMeans", "LayerBatch",
           "NeuronMoments", "Reducer", "TopImages", "check_tau", "layer_tau", "spatial_max",
           "top_spatial_max"]

# tau="auto": the mass of this many channels at the uniform share 1 / C
AUTO_TAU_CHANNELS = 8
# positions per map from which top_spatial_max finds argmaxes only where they can enter a top
SPARSE_ARGMAX = 64


def check_tau(tau) -> float | str:
    """``tau`` as given, when it is ``"auto"`` or a number in (0, 1]; else ``ValueError``."""
    if isinstance(tau, str):
        if tau != "auto":
            raise ValueError(f"tau must be 'auto' or a number in (0, 1], got {tau!r}")
        return tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], or 'auto', got {tau!r}")
    return float(tau)


def layer_tau(tau, channels: int) -> float:
    """Summit's tau for a layer of ``channels`` channels.

    A number is used as it is (Summit: 0.01 in the published data, 0.03 in later notebooks).
    ``"auto"`` is ``min(1, AUTO_TAU_CHANNELS / channels)``, the mass of 8 channels at the uniform
    share: a fixed tau means a different thing on every width. Summit's layers had about 600
    channels, where 0.03 holds the mass of 18 uniform channels and an image adds several of its
    strongest; on a 16-channel layer one channel already holds more than 0.03 (1/16 = 0.0625 on
    average), so every image adds only its argmax and A becomes an argmax histogram. With
    ``"auto"`` the mean prefix is a few channels (3 to 6 on ResNet-20's 16 to 64 channels) on
    any width, and about 0.013 on a 600-channel layer, between Summit's two values."""
    tau = check_tau(tau)
    if tau == "auto":
        return min(1.0, AUTO_TAU_CHANNELS / max(int(channels), 1))
    return tau


@dataclass
class LayerBatch:
    """One batch of one layer, reduced to spatial maxima."""

    values: torch.Tensor  # (B, C) float32: spatial maximum per image and channel
    positions: torch.Tensor  # (B, C) int64: flat argmax position
    index: torch.Tensor  # (B,) int64: image ids, increasing within a pass
    labels: torch.Tensor | None = None  # (B,) int64 class labels


def spatial_max(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial maximum and flat argmax (first occurrence) of a (B, C, P) tensor, as float32."""
    values, positions = z.max(dim=2)
    return values.float(), positions


def top_spatial_max(z: torch.Tensor, kept: torch.Tensor | None, n: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``spatial_max`` for a pass that keeps the top ``n`` images per channel: the argmax only
    where the maximum may enter that top, -1 elsewhere. ``kept`` (C, n) holds the n largest
    maxima per channel of the pass so far (None at its start); returned with this batch's
    added. A value below the n-th of them cannot enter the top.

    On the CPU, for maps of at least ``SPARSE_ARGMAX`` positions: there a maximum with its
    position costs about 15 times a plain maximum, and few values can enter a top. Smaller maps
    and other devices find every position (and ``kept`` stays None)."""
    if z.device.type != "cpu" or z.shape[2] < SPARSE_ARGMAX:
        return (*spatial_max(z), None)
    values = z.amax(2).float()
    if kept is None:
        kept = values.new_full((values.shape[1], n), -torch.inf)
    kept = torch.cat([kept, values.T], 1).topk(n, dim=1).values
    reach = values >= kept[:, -1]
    positions = torch.full(values.shape, -1, dtype=torch.long)
    if z.is_contiguous():  # rows picked from a (B * C, P) view: cheaper than a 2-d index
        flat = reach.view(-1).nonzero().squeeze(1)
        positions.view(-1)[flat] = z.view(-1, z.shape[2]).index_select(0, flat).argmax(1)
    else:
        rows, cols = reach.nonzero(as_tuple=True)
        positions[rows, cols] = z[rows, cols].argmax(1)
    return values, positions, kept


class Reducer:
    """Base class: state is a dict of tensors named in ``_state``; ``_summed`` names the state
    that merges by addition when the rest is fixed (counts, sums), which a distributed pass
    all-reduces instead of gathering (``stats.collective``)."""

    _state: tuple[str, ...] = ()
    _summed: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self._state}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        for key in self._state:
            if key not in state:
                raise KeyError(f"{type(self).__name__} state lacks {key!r}")
            mine = getattr(self, key)
            value = torch.as_tensor(state[key])
            if value.shape != mine.shape:
                raise ValueError(f"{type(self).__name__}.{key}: shape {tuple(value.shape)} does not "
                                 f"match {tuple(mine.shape)}")
            # a copy: the state is updated in place later, which must not change the caller's
            setattr(self, key, value.to(device=mine.device, dtype=mine.dtype, copy=True))
        return self

    def to(self, device):
        for key in self._state:
            setattr(self, key, getattr(self, key).to(device))
        return self

    @property
    def device(self) -> torch.device:
        return getattr(self, self._state[0]).device

    def _check_mergeable(self, other):
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for key in self._state:
            a, b = getattr(self, key), getattr(other, key)
            if a.device != b.device:
                raise ValueError(f"cannot merge {type(self).__name__} on {a.device} with one on "
                                 f"{b.device}: move one with .to(device) first")
            if a.shape != b.shape:
                raise ValueError(f"cannot merge {type(self).__name__}: {key} has shape "
                                 f"{tuple(a.shape)} here and {tuple(b.shape)} there")


class TopImages(Reducer):
    """Per channel, the ``n`` images with the highest spatial maximum, with value and position.

    Ties are broken by the smaller image id. Slots not filled yet (fewer than ``n`` images seen)
    hold index -1 and value -inf.
    """

    _state = ("values", "index", "positions")

    def __init__(self, channels: int, n: int = 100, device=None):
        if n < 1:
            raise ValueError(f"top-N must be at least 1, got {n}")
        self.n = n
        self.values = torch.full((channels, n), -torch.inf, device=device)
        self.index = torch.full((channels, n), -1, dtype=torch.long, device=device)
        self.positions = torch.full((channels, n), -1, dtype=torch.long, device=device)

    def update(self, batch: LayerBatch):
        channels = self.values.shape[0]
        index = batch.index.unsqueeze(0).expand(channels, -1)
        self._keep(torch.cat([self.values, batch.values.T], 1),
                   torch.cat([self.index, index], 1),
                   torch.cat([self.positions, batch.positions.T], 1))

    def merge(self, other: "TopImages"):
        self._check_mergeable(other)
        self._keep(torch.cat([self.values, other.values], 1),
                   torch.cat([self.index, other.index], 1),
                   torch.cat([self.positions, other.positions], 1))
        return self

    def _keep(self, values, index, positions):
        # One top-k over an int64 key ordered by value, then by smaller id: the float's bits
        # made monotone (negatives flipped; -0.0 made 0.0) above the id's complement. Empty
        # slots (-inf, id -1) come last. Ids are at most MAX_ID (``ImageData.batches`` checks).
        bits = (values + 0.0).view(torch.int32)
        bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()
        order = (bits * 2 ** 32 + (MAX_ID - index)).topk(self.n, dim=1).indices
        self.values, self.index, self.positions = (
            t.gather(1, order) for t in (values, index, positions))


class ClassAggregation(Reducer):
    """Summit's activation aggregation matrix A (classes x channels; Hohman et al., IEEE VIS 2019).

    Per image: p_c = a_c / sum(a) over the (non-negative) spatial maxima; the shortest prefix of
    channels sorted by p whose cumulative sum reaches ``tau`` adds 1 to A[label, c]. Channels in
    ``exclude`` (always-on outliers) are left out before normalising. Negative maxima count as 0.
    """

    _state = ("counts", "keep")
    _summed = ("counts",)

    def __init__(self, channels: int, num_classes: int, tau: float = 0.03, exclude=(),
                 device=None):
        if isinstance(tau, str) or not 0 < tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {tau!r} (layer_tau resolves 'auto')")
        self.tau = float(tau)
        self.counts = torch.zeros(num_classes, channels, dtype=torch.long, device=device)
        self.keep = torch.ones(channels, device=device)
        if len(exclude):
            self.keep[torch.as_tensor(list(exclude), dtype=torch.long)] = 0

    def update(self, batch: LayerBatch):
        a = batch.values.clamp(min=0) * self.keep
        total = a.sum(1, keepdim=True)
        p = a / total.clamp(min=torch.finfo(a.dtype).tiny)
        # The k-th largest share has at least k - 1 shares of 1 / C on average before it, so
        # the prefix is at most ceil(tau * C) long (one more for rounding): a top-k, not a sort.
        k = min(p.shape[1], math.ceil(self.tau * p.shape[1]) + 1)
        p_top, order = p.topk(k, dim=1)
        before = p_top.cumsum(1) - p_top
        chosen = (before < self.tau) & (p_top > 0)
        cells = batch.labels.unsqueeze(1) * p.shape[1] + order
        self.counts.view(-1).index_add_(0, cells.view(-1), chosen.view(-1).long())

    def merge(self, other: "ClassAggregation"):
        self._check_mergeable(other)
        if not torch.equal(self.keep, other.keep):
            raise ValueError("cannot merge class aggregations with different excluded channels")
        self.counts += other.counts
        return self


class NeuronMoments(Reducer):
    """Per channel, over images: mean, standard deviation and max of the spatial maximum, and
    the firing frequency (share of images whose spatial maximum is > 0).

    Mean and variance are kept as (count, mean, sum of squared deviations) and combined with
    Chan, Golub and LeVeque's pairwise update, for batches and for merges alike, in float64:
    no cancellation of ``E[x^2] - E[x]^2`` when the mean is large against the spread.
    """

    _state = ("count", "mean", "m2", "maximum", "fired")

    def __init__(self, channels: int, device=None):
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.mean = torch.zeros(channels, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(channels, dtype=torch.float64, device=device)
        self.maximum = torch.full((channels,), -torch.inf, device=device)
        self.fired = torch.zeros(channels, dtype=torch.long, device=device)

    def update(self, batch: LayerBatch):
        v = batch.values.double()
        mean = v.mean(0)
        self._combine(v.shape[0], mean, ((v - mean) ** 2).sum(0))
        self.maximum = torch.maximum(self.maximum, batch.values.amax(0))
        self.fired += (batch.values > 0).sum(0)

    def merge(self, other: "NeuronMoments"):
        self._check_mergeable(other)
        self._combine(other.count, other.mean, other.m2)
        self.maximum = torch.maximum(self.maximum, other.maximum)
        self.fired += other.fired
        return self

    def _combine(self, n_b, mean_b, m2_b):
        n_a = self.count.double()
        n = (n_a + n_b).clamp(min=1)  # two empty states stay empty
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (n_a * n_b / n)
        self.count = self.count + n_b

    def load_state_dict(self, state):
        if "total" in state and "mean" not in state:  # atlas format 1 kept sums of x and x^2
            count = torch.as_tensor(state["count"])
            n = count.clamp(min=1).double()
            mean = torch.as_tensor(state["total"]).double() / n
            m2 = (torch.as_tensor(state["total_sq"]).double() - n * mean ** 2).clamp(min=0)
            state = dict(state, mean=mean, m2=m2 * (count > 0))
        return super().load_state_dict(state)

    @property
    def std(self) -> torch.Tensor:
        """Population standard deviation (0 for no images)."""
        return (self.m2 / self.count.clamp(min=1)).clamp(min=0).sqrt()

    @property
    def frequency(self) -> torch.Tensor:
        return self.fired / self.count.clamp(min=1)


class ClassMeans(Reducer):
    """Per class, the mean spatial maximum of every channel."""

    _state = ("total", "count")
    _summed = ("total", "count")

    def __init__(self, channels: int, num_classes: int, device=None):
        self.total = torch.zeros(num_classes, channels, dtype=torch.float64, device=device)
        self.count = torch.zeros(num_classes, dtype=torch.long, device=device)

    def update(self, batch: LayerBatch):
        self.total.index_add_(0, batch.labels, batch.values.double())
        self.count += torch.bincount(batch.labels, minlength=self.count.shape[0])

    def merge(self, other: "ClassMeans"):
        self._check_mergeable(other)
        self.total += other.total
        self.count += other.count
        return self

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1).unsqueeze(1)


class ClassAccuracy(Reducer):
    """Per class: images, correct predictions, a confusion matrix and a histogram of the
    probability the model gives the true class (``bins`` equal bins over [0, 1])."""

    _state = ("confusion", "histogram")
    _summed = ("confusion", "histogram")

    def __init__(self, num_classes: int, bins: int = 10, device=None):
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.histogram = torch.zeros(num_classes, bins, dtype=torch.long, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor):
        k, bins = self.histogram.shape
        probs = logits.float().softmax(1)
        predicted = probs.argmax(1)
        self.confusion.view(-1).index_add_(0, labels * k + predicted,
                                           torch.ones_like(labels))
        p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        bin_ = (p_true * bins).long().clamp(max=bins - 1)
        self.histogram.view(-1).index_add_(0, labels * bins + bin_, torch.ones_like(labels))

    def merge(self, other: "ClassAccuracy"):
        self._check_mergeable(other)
        self.confusion += other.confusion
        self.histogram += other.histogram
        return self

    @property
    def count(self) -> torch.Tensor:
        return self.confusion.sum(1)

    @property
    def accuracy(self) -> torch.Tensor:
        """Per-class accuracy (NaN for a class without images)."""
        return self.confusion.diagonal() / self.count.double()
