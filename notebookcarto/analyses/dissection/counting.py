"""The counting of a dissection: per-unit thresholds T_k, and the tallies I and A.

A unit's *fired pixels* over a level v_k are the pixels of its maps, resampled to the mask grid,
above v_k. Each counts once towards every concept mask that holds it and towards its image's
labels and carried categories (``Concepts.batch``); over T they are M_k's pixels, and counting
them gives I and A (``Tally``). Only the (image, unit) maps whose raw maximum exceeds the level
are resampled: bilinear values are convex combinations of raw ones, so no other map can.

T is known only once every image has been seen, so counting would need a second forward pass.
``Search`` avoids it where it can: from the first batch it guesses a band of levels
[low_k, high_k] per unit that T_k should fall in (``BAND``: the levels exceeded by about twice
and half as many of that batch's values as T should be). Over the whole pass it counts the
fired pixels above high_k at once and keeps those between low_k and high_k with their values.
At the end, if every T_k lies in its band, I and A are exact: the counts above high plus the
kept pixels above T. A layer whose band missed (or whose kept pixels outgrew ``cache_limit``)
is counted in a second pass. The band is a guess about speed only; the counts never depend
on it. Under ``torch.distributed`` each rank guesses its band from its own first batch and
counts its shard; once the merged estimators give T, the ranks' counts are summed when every
rank's band holds T, else the layer is counted in a second pass by all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...stats.quantile import QuantileSketch, TopValues
from ...stats.reducers import LayerBatch, TopImages
from .batches import CHUNK_ELEMENTS, chunks, resample

__all__ = ["Band", "Counter", "Search", "Tally", "estimator", "fired", "prefixed", "spread",
           "unprefixed"]

SPARSE_DENSITY = 0.05  # share of raw positions above T up to which ``Tally`` counts pixel by pixel
# the guessed band: the levels exceeded by 2 m + 3 sqrt(m) and by m / 2 - 3 sqrt(m) of the first
# batch's values, m being how many of them T should exceed
BAND = (2.0, 0.5, 3.0)


def fired(z: torch.Tensor, level: torch.Tensor, shape, maxima: torch.Tensor):
    """Pixels of the maps z (B, C, h, w), resampled to ``shape``, above ``level`` (C,); yields
    chunks of (image, unit, pixel (flat index on the mask grid), value)."""
    width, c = int(shape[1]), z.shape[1]
    if tuple(z.shape[2:]) == tuple(shape):  # no resampling
        image, unit, y, x = (z > level.view(1, c, 1, 1)).nonzero(as_tuple=True)
        yield image, unit, y * width + x, z[image, unit, y, x]
        return
    image, unit = (maxima > level).nonzero(as_tuple=True)
    if len(image) > maxima.numel() // 2:  # most maps: resample them all
        for part in chunks(z.shape[0], c * math.prod(shape)):
            up = resample(z[part], shape)
            i, u, y, x = (up > level.view(1, c, 1, 1)).nonzero(as_tuple=True)
            yield i + part.start, u, y * width + x, up[i, u, y, x]
        return
    step = max(1, CHUNK_ELEMENTS // math.prod(shape))
    for s in range(0, len(image), step):
        i, u = image[s:s + step], unit[s:s + step]
        # the pairs as the channels of one image: channels-last resampling is fastest
        up = resample(z[i, u].unsqueeze(0), shape)[0].permute(1, 2, 0)  # (H, W, n)
        y, x, pair = (up > level[u]).nonzero(as_tuple=True)
        yield i[pair], u[pair], y * width + x, up[y, x, pair]


def spread(masks, mask_target, image, unit, pixel, channels: int):
    """Count keys (concept * channels + unit) of fired pixels, one per concept mask holding
    the pixel, and the index of the pixel behind each key."""
    which, column = masks[image, :, pixel].nonzero(as_tuple=True)
    return mask_target[image[which], column] * channels + unit[which], which


class Counter:
    """Fired pixels counted at once: (K + G, C) counts, per image rows added per batch."""

    def __init__(self, targets: int, channels: int, device):
        self.channels = channels
        self.counts = torch.zeros(targets, channels, dtype=torch.long, device=device)

    def add(self, masks, mask_target, image, unit, pixel, per_image: torch.Tensor):
        keys, _ = spread(masks, mask_target, image, unit, pixel, self.channels)
        self.counts.view(-1).add_(torch.bincount(keys, minlength=self.counts.numel()))
        per_image += torch.bincount(image * self.channels + unit, minlength=per_image.numel())

    def add_images(self, per_image: torch.Tensor, image_target: torch.Tensor):
        """Add each image's fired pixels per unit (``per_image`` (B, C)) to the rows its labels
        and carried categories name (``image_target`` (B, R), -1 for none)."""
        rows, columns = (image_target >= 0).nonzero(as_tuple=True)
        self.counts.index_add_(0, image_target[rows, columns], per_image[rows])


def _top_images(top: TopImages | None, maxima, index):
    if top is not None:  # positions are not kept
        top.update(LayerBatch(maxima, torch.zeros_like(maxima, dtype=torch.long), index))


class Tally:
    """I and A of one layer for known thresholds (and its top images when ``top_n``)."""

    def __init__(self, thresholds: torch.Tensor, targets: int, top_n: int | None = None):
        self.t = thresholds
        self.counter = Counter(targets, len(thresholds), thresholds.device)
        self.top = TopImages(len(thresholds), top_n, device=self.t.device) if top_n else None

    def update(self, z, shape, masks, mask_target, image_target, index):
        t, counter = self.t, self.counter
        c = len(t)
        maxima = z.amax((2, 3)).float()
        _top_images(self.top, maxima, index)
        if int(torch.count_nonzero(z > t.view(1, c, 1, 1))) <= SPARSE_DENSITY * z.numel():
            per_image = torch.zeros(z.shape[0] * c, dtype=torch.long, device=z.device)
            for image, unit, pixel, _ in fired(z, t, shape, maxima):
                counter.add(masks, mask_target, image, unit, pixel, per_image)
            counter.add_images(per_image.view(-1, c), image_target)
            return
        for part in chunks(z.shape[0], c * math.prod(shape)):
            on = (resample(z[part], shape) > t.view(1, -1, 1, 1)).flatten(2).float()  # (b, C, P)
            # exact integer counts in float32 (P < 2**24): (b, M, P) @ (b, P, C)
            both = torch.bmm(masks[part].float(), on.transpose(1, 2)).long()
            counter.counts.index_add_(0, mask_target[part].flatten(), both.reshape(-1, c))
            counter.add_images(on.sum(2).long(), image_target[part])

    def result(self) -> torch.Tensor:
        """(C, K + G) counts: I then A."""
        return self.counter.counts.T

    @property
    def reducers(self) -> list:
        """The state that a distributed pass merges across ranks (the counts are summed)."""
        return [self.top] if self.top is not None else []

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors of a checkpoint (``load`` reads them back into a fresh Tally)."""
        top = prefixed("top", self.top.state_dict()) if self.top is not None else {}
        return dict(top, counter=self.counter.counts)

    def load(self, state: dict[str, torch.Tensor]) -> "Tally":
        self.counter.counts = state["counter"].to(self.t.device, copy=True)
        if self.top is not None:
            self.top.load_state_dict(unprefixed(state, "top"))
        return self


def prefixed(prefix: str, state: dict) -> dict:
    """``state`` with its keys under ``prefix/`` (``unprefixed`` takes them back out)."""
    return {f"{prefix}/{k}": v for k, v in state.items()}


def unprefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + "/")}


class Band:
    """The fired pixels between two levels, with their values: one key per concept mask
    holding the pixel (concept * C + unit) and one per pixel for its image's labels and
    categories (offset + image id * C + unit)."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, targets: int):
        self.low, self.high = low, high
        self.channels, self.targets = len(low), targets
        self.offset = targets * self.channels
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.images: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids, image targets)
        self.size = 0

    def add(self, masks, mask_target, index, image, unit, pixel, value):
        keys, which = spread(masks, mask_target, image, unit, pixel, self.channels)
        self.keys += [keys, self.offset + index[image] * self.channels + unit]
        self.values += [value[which].float(), value.float()]
        self.size += len(keys) + len(unit)

    def state(self) -> dict[str, torch.Tensor]:
        """The band as a few tensors (its images' targets padded with -1 to one width)."""
        device = self.low.device
        ids = [index for index, _ in self.images]
        width = max((target.shape[1] for _, target in self.images), default=0)
        targets = [F.pad(target, (0, width - target.shape[1]), value=-1)
                   for _, target in self.images]
        return {"low": self.low, "high": self.high,
                "keys": torch.cat(self.keys) if self.keys else torch.zeros(0, dtype=torch.long,
                                                                           device=device),
                "values": torch.cat(self.values) if self.values else torch.zeros(0,
                                                                                 device=device),
                "ids": torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long, device=device),
                "targets": (torch.cat(targets) if targets
                            else torch.zeros(0, 0, dtype=torch.long, device=device))}

    @classmethod
    def load(cls, state: dict[str, torch.Tensor], targets: int, device) -> "Band":
        state = {k: v.to(device, copy=True) for k, v in state.items()}
        band = cls(state["low"], state["high"], targets)
        if len(state["keys"]):
            band.keys, band.values = [state["keys"]], [state["values"]]
            band.size = len(state["keys"])
        if len(state["ids"]):
            band.images = [(state["ids"], state["targets"])]
        return band

    def holds(self, t: torch.Tensor) -> bool:
        """Whether every unit's T lies in its band (low <= T <= high): then the pixels above T
        are those above high, counted at once, and the kept ones above T."""
        return bool(((self.low <= t) & (t <= self.high)).all())

    def counts(self, t: torch.Tensor) -> torch.Tensor:
        """(K + G, C) counts of the kept pixels above ``t``."""
        c = self.channels
        counts = torch.zeros(self.targets, c, dtype=torch.long, device=t.device)
        if not self.keys:
            return counts
        keys, values = torch.cat(self.keys), torch.cat(self.values)
        keys = keys[values > t[keys % c]]
        masked = keys < self.offset
        counts.view(-1).add_(torch.bincount(keys[masked], minlength=self.offset))
        pairs, per_pair = torch.unique(keys[~masked] - self.offset, return_counts=True)
        if len(pairs):
            ids = torch.cat([index for index, _ in self.images])
            width = max(target.shape[1] for _, target in self.images)
            table = torch.full((int(ids.max()) + 1, width), -1, dtype=torch.long,
                               device=t.device)
            for index, target in self.images:
                table[index, :target.shape[1]] = target
            columns = table[pairs // c]  # (pairs, R)
            row, column = (columns >= 0).nonzero(as_tuple=True)
            counts.view(-1).index_add_(0, columns[row, column] * c + pairs[row] % c,
                                       per_pair[row])
        return counts


class Search:
    """Pass 1 for one layer: the quantile estimator, the top images and, while its band holds
    at most ``cache_limit`` pixels, the counts (see the module docstring)."""

    def __init__(self, estimate, method: str, quantile: float, targets: int, top_n: int,
                 cache_limit: int):
        self.estimate, self.method, self.quantile = estimate, method, quantile
        self.targets, self.cache_limit = targets, cache_limit
        self.top = TopImages(estimate.channels, top_n, device=estimate.device)
        self.band: Band | None = None
        self.counter: Counter | None = None
        self.guessed = False

    def update(self, z, shape, masks, mask_target, image_target, index):
        maxima = z.amax((2, 3)).float()
        _top_images(self.top, maxima, index)
        estimate, tail = self.estimate, None
        if self.method == "original":
            estimate.update(z, dim=1)
        elif isinstance(estimate, TopValues) and estimate.floor is not None:
            tail = estimate.floor  # 2020: the resampled values above it, added in _count
        else:
            for part in chunks(z.shape[0], z.shape[1] * math.prod(shape)):
                estimate.update(resample(z[part], shape), dim=1)
        if not self.guessed:
            self.guessed = True
            if self.cache_limit > 0:
                low, high = self._guess(z, shape)
                self.band = Band(low, high, self.targets)
                self.counter = Counter(self.targets, len(low), z.device)
        if self.band is not None or tail is not None:
            self._count(z, shape, masks, mask_target, image_target, index, maxima, tail)

    def _guess(self, z, shape):
        """The band's levels from this batch's values (BAND): wide enough for the batch's
        sampling noise and for batches that differ in content."""
        values = z if self.method == "original" else resample(z, shape)
        values = values.transpose(0, 1).flatten(1).float()  # (C, n)
        n = values.shape[1]
        m = self.quantile * n
        noise = BAND[2] * math.sqrt(m)
        deepest = min(n, max(1, math.ceil(BAND[0] * m + noise)))
        ordered = values.topk(deepest, dim=1).values
        low = ordered[:, -1]
        rank = math.floor(BAND[1] * m - noise)
        high = ordered[:, rank - 1] if rank >= 1 else torch.full_like(low, math.inf)
        return low, high

    def _count(self, z, shape, masks, mask_target, image_target, index, maxima, tail):
        """Count and keep the fired pixels over the band; with ``tail`` (2020 method, exact
        estimator) also add the resampled values above it to the estimator, from the same
        resampled maps."""
        band, counter = self.band, self.counter
        c = z.shape[1]
        if band is None:
            level = tail
        elif tail is None:
            level = band.low
        else:
            level = torch.minimum(tail, band.low)
        per_image = torch.zeros(z.shape[0] * c, dtype=torch.long, device=z.device)
        units, values = [level.new_zeros(0, dtype=torch.long)], [level.new_zeros(0)]
        for image, unit, pixel, value in fired(z, level, shape, maxima):
            if tail is not None:
                keep = value > tail[unit]
                units.append(unit[keep])
                values.append(value[keep])
            if band is None:
                continue
            over = value > band.high[unit]
            counter.add(masks, mask_target, image[over], unit[over], pixel[over], per_image)
            inside = ~over & (value > band.low[unit])
            band.add(masks, mask_target, index, image[inside], unit[inside], pixel[inside],
                     value[inside])
        if tail is not None:
            self.estimate.add(torch.cat(units), torch.cat(values), z.shape[0] * math.prod(shape))
        if band is None:
            return
        counter.add_images(per_image.view(-1, c), image_target)
        band.images.append((index, image_target))
        if band.size > self.cache_limit:
            self.band = self.counter = None  # too many: counted in a second pass

    def thresholds(self) -> torch.Tensor | None:
        """T per unit, or None when the exact estimator saw more positions than planned (or
        the estimator was dropped: ranks that planned it differently)."""
        estimate, q = self.estimate, 1.0 - self.quantile
        if estimate is None:
            return None
        if isinstance(estimate, TopValues) and TopValues.needed(estimate.count, q) > estimate.t:
            return None
        return estimate.quantile(q)

    def counts(self, t: torch.Tensor) -> torch.Tensor | None:
        """(C, K + G) counts for thresholds ``t``, or None when the band missed some T (zeros
        when this process saw no image: a rank with an empty shard)."""
        if not self.guessed:
            return torch.zeros(len(t), self.targets, dtype=torch.long, device=t.device)
        if self.band is None or not self.band.holds(t):
            return None
        return (self.counter.counts + self.band.counts(t)).T

    @property
    def reducers(self) -> list:
        """The state that a distributed pass merges across ranks (the counts are summed)."""
        return [r for r in (self.estimate, self.top) if r is not None]

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors of a checkpoint (``load`` reads them back into a fresh Search)."""
        out = dict(prefixed("estimate", self.estimate.state_dict()),
                   **prefixed("top", self.top.state_dict()), guessed=torch.tensor(self.guessed))
        if self.band is not None:
            out.update(prefixed("band", self.band.state()), counter=self.counter.counts)
        return out

    def load(self, state: dict[str, torch.Tensor]) -> "Search":
        device = self.estimate.device
        self.guessed = bool(state["guessed"])
        self.estimate.load_state_dict({k: v.to(device) for k, v in
                                       unprefixed(state, "estimate").items()})
        self.top.load_state_dict(unprefixed(state, "top"))
        if "counter" in state:
            self.band = Band.load(unprefixed(state, "band"), self.targets, device)
            self.counter = Counter(self.targets, self.estimate.channels, device)
            self.counter.counts = state["counter"].to(device, copy=True)
        return self


def estimator(kind: str, channels: int, n_values: int, q: float, *, k: int, seed: int,
              exact_limit: int, device):
    """The exact top values when they fit (``kind`` "exact", or "auto" within
    ``exact_limit`` values), else a KLL-style sketch."""
    t = TopValues.needed(n_values, q)
    if kind == "exact" or (kind == "auto" and t * channels <= exact_limit):
        return TopValues(channels, t, device=device)
    return QuantileSketch(channels, k=k, device=device, seed=seed)
