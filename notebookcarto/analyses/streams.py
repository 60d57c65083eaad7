"""Residual streams: the same channel carried through the blocks of a residual stage.

In a ResNet (or a transformer), a block adds its output to its input, so channel c after one
block of a stage is largely channel c after the block before it: the identity shortcut carries
it. Neurons on one stream share their top images far more than two random neurons do, which
clustering by top images would otherwise report as a "concept" found in several layers.

``residual_streams`` finds streams from the data alone, without looking at the model: two
consecutive atlas layers with the same channels and map shape belong to one stage when the top
sets of equal channels overlap far more than those of different channels (mean Jaccard of the
diagonal at least ``min_ratio`` times that of the off-diagonal pairs, and at least
``min_jaccard``). A stream is one channel index through the layers of a stage of two or more
layers. A plain CNN whose channels are unrelated from layer to layer has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .minhash import pair_jaccard

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["Streams", "residual_streams", "stage_links", "stream_ids", "stream_names",
           "stream_units"]


@dataclass
class Streams:
    """Residual streams of an atlas's neurons (``residual_streams``).

    Attributes:
        ids: int64 (neurons,), stream id per neuron in ``neuron_ids`` order, -1 for a neuron of
            a layer on no stream.
        stages: the stages, each a list of two or more consecutive layers.
        names: the name of each stream, ``"<first layer>..<last layer>:<channel>"``.
        links: per pair of consecutive layers tested, (earlier, later, diagonal mean Jaccard,
            off-diagonal mean Jaccard, linked).
    """

    ids: np.ndarray
    stages: list
    names: list
    links: list

    def name(self, stream: int) -> str:
        """The name of a stream id ("" for -1)."""
        return self.names[stream] if stream >= 0 else ""

    def __repr__(self) -> str:
        return (f"Streams({len(self.names)} streams in {len(self.stages)} stages, "
                f"{int((self.ids >= 0).sum())} of {len(self.ids)} neurons)")


def stage_links(atlas: "Atlas", sets, *, min_ratio: float = 3.0, min_jaccard: float = 0.05,
                off_pairs: int = 4096, seed: int = 0) -> list[tuple]:
    """For each pair of consecutive atlas layers with equal channel counts and map shapes:
    ``(earlier, later, diagonal, off_diagonal, linked)``, the mean Jaccard of the top sets
    (``sets``, rows in ``neuron_ids`` order) of equal channels, of (up to ``off_pairs``
    sampled) different channels, and whether they pass the test."""
    sets = np.asarray(sets)
    offsets = atlas.layer_offsets
    rng = np.random.default_rng(seed)
    links = []
    for earlier, later in zip(atlas.layers[:-1], atlas.layers[1:]):
        channels = atlas.stats.layers[earlier].channels
        if (channels != atlas.stats.layers[later].channels or channels < 2
                or atlas.stats.shapes[earlier] != atlas.stats.shapes[later]):
            continue
        a, b = offsets[earlier], offsets[later]
        c = np.arange(channels)
        diagonal = pair_jaccard(sets, a + c, b + c).mean()
        if channels * (channels - 1) <= off_pairs:
            x, y = np.nonzero(~np.eye(channels, dtype=bool))
        else:
            x = rng.integers(0, channels, off_pairs)
            y = (x + rng.integers(1, channels, off_pairs)) % channels
        off = pair_jaccard(sets, a + x, b + y).mean()
        linked = bool(diagonal >= min_jaccard and diagonal >= min_ratio * off)
        links.append((earlier, later, float(diagonal), float(off), linked))
    return links


def residual_streams(atlas: "Atlas", sets=None, *, min_ratio: float = 3.0,
                     min_jaccard: float = 0.05, seed: int = 0) -> Streams:
    """The residual streams of the atlas's neurons, found from their top-image sets (``sets``:
    rows in ``neuron_ids`` order, padded with -1; default the atlas's top sets). See the module
    docstring for the test (``min_ratio``, ``min_jaccard``)."""
    if sets is None:
        from .clustering import top_sets

        sets = top_sets(atlas).cpu().numpy()
    links = stage_links(atlas, sets, min_ratio=min_ratio, min_jaccard=min_jaccard, seed=seed)
    linked = {(e, l) for e, l, _, _, ok in links if ok}
    stages, current = [], [atlas.layers[0]] if atlas.layers else []
    for earlier, later in zip(atlas.layers[:-1], atlas.layers[1:]):
        if (earlier, later) in linked:
            current.append(later)
        else:
            stages.append(current)
            current = [later]
    if current:
        stages.append(current)
    stages = [s for s in stages if len(s) >= 2]
    return Streams(stream_ids(atlas, stages), stages, stream_names(atlas, stages), links)


def stream_ids(atlas: "Atlas", stages) -> np.ndarray:
    """int64 (neurons,): the stream of each neuron, numbered stage by stage and channel by
    channel (the order of ``stream_names``), -1 for neurons of layers in no stage."""
    ids = np.full(len(atlas.neuron_ids), -1, dtype=np.int64)
    offsets, first = atlas.layer_offsets, 0
    for stage in stages:
        channels = atlas.stats.layers[stage[0]].channels
        for layer in stage:
            ids[offsets[layer]:offsets[layer] + channels] = first + np.arange(channels)
        first += channels
    return ids


def stream_names(atlas: "Atlas", stages) -> list[str]:
    """The name of every stream of ``stages``: ``"<first layer>..<last layer>:<channel>"``."""
    return [f"{stage[0]}..{stage[-1]}:{c}" for stage in stages
            for c in range(atlas.stats.layers[stage[0]].channels)]


def stream_units(ids) -> tuple[np.ndarray, np.ndarray]:
    """Each residual stream as one unit: ``(unit, members)``, int64 arrays, the unit of every
    neuron (``ids``: a stream id per neuron, -1 for none) and the neuron that stands for each
    unit: a stream's last member (on the stage's last layer, the one the next stage reads), or
    the neuron itself when it is on no stream."""
    ids = np.asarray(ids, np.int64)
    key = np.where(ids >= 0, ids, -1 - np.arange(len(ids)))  # off-stream: a key of its own
    _, unit = np.unique(key, return_inverse=True)
    last = np.full(unit.max() + 1 if unit.size else 0, -1, np.int64)
    np.maximum.at(last, unit, np.arange(len(ids)))
    return unit.astype(np.int64), last
