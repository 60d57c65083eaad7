"""Neuron clusters (NeuroCartography: Park, Hohman, Robinson, Chau, IEEE VIS 2021), made to hold
on real networks.

Stage 1 groups neurons whose top-image sets are similar; stage 2 (``analyses.refine``) splits
each group by where its members fire, with one extra forward pass over a sample of the group's
top images. The result, ``Clusters``, holds a cluster id per neuron and the residual stream of
each neuron (``analyses.streams``); attached to an atlas it adds the columns ``cluster`` and
``stream`` to ``atlas.neurons``.

Why stage 1 is not the reference's: over a few thousand images the top-100 sets of unrelated
neurons overlap far more than over ImageNet's 1.2M, so the reference's S-curve threshold
(about 0.1 Jaccard for R = 2, B = 100) sits under the background overlap, and union-find over
all buckets chains almost every neuron into one cluster (331 of ResNet-20's 336 on the CIFAR-10
test set). Here the threshold comes from the data (above the Jaccard of random neuron pairs),
LSH only proposes candidate pairs, each is checked exactly, and the pairs above the threshold
are grouped by Leiden (constant Potts model: a group must be dense, one weak link never merges
two groups). Still linear in the neurons and the candidate pairs. ``method="union-find"``
reproduces the reference's stage 1.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..capture import model_device
from .backend import choose_backend
from .minhash import (background_jaccard, candidate_pairs, check_bands, choose_bands,
                      lsh_clusters, minhash_signatures, pair_jaccard)
from .refine import refine_clusters, refine_data
from .result import Result
from .streams import residual_streams, stream_names, stream_units

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["METHODS", "STREAMS", "Clusters", "cluster_neurons", "cluster_table",
           "exemplar_sets", "fence_threshold", "leiden_groups", "refine_clusters", "top_sets"]

METHODS = ("leiden", "union-find")
STREAMS = ("across", "collapse", "include")


# ------------------------------------------------------------------ inputs


def top_sets(atlas: "Atlas", device=None) -> torch.Tensor:
    """The top-image sets of all neurons as an int64 tensor (neurons, N), rows in
    ``atlas.neuron_ids`` order, with clear errors when the statistics cannot give them."""
    stats = getattr(atlas, "stats", None)
    if stats is None or not stats.layers or not stats.n_images:
        raise ValueError("this atlas holds no statistics yet: run the statistics pass first "
                         "(atlas = Atlas.build(model, loader, layers)) and cluster that atlas")
    index = torch.cat([layer.top.index for layer in stats.layers.values()])
    top_n = index.shape[1]
    if top_n > stats.n_images or bool((index < 0).any()):
        raise ValueError(f"top-N ({top_n}) is larger than the data set ({stats.n_images} "
                         f"images): every neuron needs {top_n} top images. Rebuild the atlas "
                         f"with top_n <= {stats.n_images} (Atlas.build(..., top_n=...)) or "
                         "use more images")
    return index.to(device) if device is not None else index


def exemplar_sets(atlas: "Atlas", min_activation: float = 0.0) -> torch.Tensor:
    """``top_sets`` without the images on which a neuron does not fire (spatial max <=
    ``min_activation``), padded with -1. A neuron that fires on fewer than N images has its
    top-N filled up with images in id order (ties at zero), which says nothing about it and
    makes all such neurons look alike."""
    sets = top_sets(atlas).cpu()
    values = torch.cat([layer.top.values for layer in atlas.stats.layers.values()]).cpu()
    return torch.where(values > min_activation, sets, torch.full_like(sets, -1))


@dataclass
class Clusters(Result):
    """Clusters of neurons (``cluster_neurons``).

    Attributes:
        labels: int64 (neurons,), cluster id per neuron in ``neuron_ids`` order, -1 for none.
        candidates: int64 (neurons,), the stage-1 groups before refinement.
        neuron_ids: the neurons, ``"layer:channel"``.
        table: one row per cluster (``cluster_table``): ``size``, ``members``, ``layers``,
            the residual streams of the members (``streams``, ``stream``, ``stream_share``)
            and ``shared_exemplars``.
        params: the parameters used, with the threshold and LSH bands chosen from the data.
        stream: int64 (neurons,), the residual stream of each neuron (-1: none), or None.
        stages: the stages of the streams (lists of layers; ``analyses.streams``).
    """

    labels: np.ndarray
    candidates: np.ndarray
    neuron_ids: list
    table: pd.DataFrame
    params: dict = field(default_factory=dict)
    stream: np.ndarray | None = None
    stages: list = field(default_factory=list)

    section: ClassVar[str] = "clusters"

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def members(self, cluster: int) -> list[str]:
        """The neuron ids of one cluster."""
        return [self.neuron_ids[i] for i in np.flatnonzero(self.labels == cluster)]

    def _stream_ids(self) -> np.ndarray:
        if self.stream is None:
            return np.full(len(self.labels), -1, dtype=np.int64)
        return np.asarray(self.stream, np.int64)

    def to_section(self) -> dict:
        return {"meta": {"params": dict(self.params), "n_clusters": self.n_clusters,
                         "stages": [list(s) for s in self.stages]},
                "arrays": {"cluster": np.asarray(self.labels, np.int64),
                           "candidate": np.asarray(self.candidates, np.int64),
                           "stream": self._stream_ids()}}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas") -> "Clusters":
        arrays, meta = section["arrays"], section["meta"]
        labels = arrays["cluster"]
        streams = arrays.get("stream")
        stages = [list(s) for s in meta.get("stages", [])]
        return cls(labels, arrays["candidate"], atlas.neuron_ids,
                   cluster_table(atlas, labels, streams=streams, stages=stages),
                   dict(meta["params"]), streams, stages)

    def check(self, atlas: "Atlas") -> None:
        if list(self.neuron_ids) != atlas.neuron_ids:
            raise ValueError("these clusters are of another atlas's neurons: cluster this atlas")
        missing = [layer for stage in self.stages for layer in stage if layer not in atlas.layers]
        if missing:
            raise ValueError(f"the clusters' residual stages name layers {missing} that the "
                             "atlas lacks")

    def neuron_columns(self, atlas: "Atlas") -> dict[str, np.ndarray]:
        """``cluster`` and ``stream``, the name of each neuron's residual stream ("" for
        none), e.g. ``"layer1.0..layer1.2:5"``."""
        names = np.array(stream_names(atlas, self.stages) + [""], dtype=object)  # -1 -> ""
        return {"cluster": self.labels, "stream": names[self._stream_ids()]}

    def __repr__(self) -> str:
        clustered = int((self.labels >= 0).sum())
        groups = int(self.candidates.max()) + 1 if self.candidates.size else 0
        largest = int(np.bincount(self.labels[self.labels >= 0]).max()) if clustered else 0
        return (f"Clusters({self.n_clusters} clusters holding {clustered} of "
                f"{len(self.labels)} neurons, largest {largest}; {groups} stage-1 groups)")


# ------------------------------------------------------------------ public entry point


def cluster_neurons(atlas: "Atlas", model: nn.Module | None = None, data=None, *,
                    threshold: float | str = "auto", fence: float = 6.0,
                    method: str = "leiden", resolution: float | None = None,
                    streams: str = "across", rows: int | None = None,
                    bands: int | None = None, recall: float = 0.9, min_exemplars: int = 10,
                    refine: bool = True, refine_images: int = 100, refine_rows: int = 5,
                    refine_bands: int = 30, ratio: float = 0.03, min_activation: float = 0.0,
                    max_share: float = 0.25, batch_size: int = 64, seed: int = 0,
                    backend: str = "auto", progress: bool = True) -> Clusters:
    """Cluster the atlas's neurons by their top images; returns ``Clusters`` (attach it with
    ``atlas.attach(...)``: ``atlas.neurons`` gains the columns ``cluster`` and ``stream``, the
    name of each neuron's residual stream).

    Exemplars: a neuron's top images on which it fires (spatial max > ``min_activation``);
    neurons with fewer than ``min_exemplars`` of them are left out (label -1).

    Stage 1, ``method="leiden"`` (default):

    1. ``threshold``: a Jaccard similarity of two exemplar sets. ``"auto"`` puts it above the
       background: Tukey's fence Q3 + ``fence`` x IQR over the exact Jaccard of 20,000 random
       neuron pairs (not on one residual stream), taken on the odds J / (1 - J) so that it
       stays below 1 (``fence_threshold``). Quartiles are not moved by the truly similar
       pairs, even when they are a quarter of all pairs; ``fence=6`` is twice Tukey's far
       fence, because among the n^2 / 2 pairs of a network chance pairs must stay rare, not
       just unusual. Never less than 0.1 (the reference's S-curve threshold); a warning when
       it is above 0.5 (random neurons share so many exemplars that few pairs stand out:
       too few images for ``top_n``, or an untrained network).
    2. Candidate pairs: MinHash signatures with permutations shared by all neurons, banded LSH
       with ``bands`` bands of ``rows`` rows, chosen by default so that a pair at the threshold
       is proposed with probability ``recall`` (``minhash.choose_bands``); no all-pairs step.
    3. Each candidate pair's exact Jaccard; pairs at or above the threshold become weighted
       edges. ``streams`` says what to do with residual streams (``analyses.streams``: in a
       ResNet the same channel after each block of a stage is largely one quantity, carried
       by the identity shortcut): ``"across"`` (default) drops the pairs of one stream, so
       clusters are concepts shared across streams, not a stream repeated through its blocks;
       ``"collapse"`` clusters each stream as one unit (its neuron on the stage's last layer
       stands for it) and gives all its neurons the unit's cluster; ``"include"`` keeps
       stream pairs like any others.
    4. Leiden (igraph) with the constant Potts model at ``resolution`` (default: the
       threshold): a group is kept only where its members' mean pairwise similarity exceeds
       the resolution, so one weak link never merges two groups (union-find would). Groups of
       two or more are the stage-1 candidates.

    ``method="union-find"`` is the reference's stage 1 (``rows`` R, ``bands`` B; defaults 2
    and 100): union-find over all buckets of all bands; ``threshold``, ``fence``,
    ``resolution`` and ``streams`` do not apply (streams are still reported).

    Stage 2 (``refine=True``; needs ``model`` and ``data``, the data set the atlas was built on
    in the same order): each stage-1 group is split by where its members fire
    (``analyses.refine.refine_clusters``: ``refine_images`` images per group, MinHash of the
    active positions with ``refine_bands`` bands of ``refine_rows`` rows on a grid shared by all
    members, pairs sharing a bucket on more than ``ratio`` of the images merged). Memory grows
    with the largest group, not with a layer.

    A warning says when one cluster holds more than ``max_share`` of all neurons (a sign that
    the threshold is too low for the data). ``params`` of the result record the threshold, R, B
    and the number of candidate pairs and edges. Deterministic by ``seed``. ``backend``:
    ``"auto"``, ``"numba"`` (CPU) or ``"torch"``, for the MinHash signatures.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if streams not in STREAMS:
        raise ValueError(f"streams must be one of {STREAMS}, got {streams!r}")
    if method == "union-find":
        rows, bands = check_bands(2 if rows is None else rows, 100 if bands is None else bands)
    else:
        if rows is not None or bands is not None:
            rows, bands = check_bands(2 if rows is None else rows,
                                      100 if bands is None else bands)
        if not (threshold == "auto" or (isinstance(threshold, (int, float))
                                        and not isinstance(threshold, bool)
                                        and 0 < threshold < 1)):
            raise ValueError(f"threshold must be 'auto' or a Jaccard similarity in (0, 1), got "
                             f"{threshold!r}")
        if not fence >= 0:
            raise ValueError(f"fence must be a number >= 0 (Tukey's k), got {fence!r}")
    if refine:
        check_bands(refine_rows, refine_bands, "refine_")
        if model is None or data is None:
            raise ValueError("stage 2 (refine=True) runs the model once more over sampled top "
                             "images: pass model=... and data=... (the data set the atlas "
                             "was built on), or refine=False for stage 1 only")
        if (isinstance(refine_images, bool) or not isinstance(refine_images, (int, np.integer))
                or refine_images < 1):
            raise ValueError(f"refine_images must be an integer >= 1, got {refine_images!r}")
        if not 0 <= ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {ratio!r}")
    device = model_device(model) if model is not None else None
    choose_backend(backend, device)  # a bad backend is answered before any work
    sets = exemplar_sets(atlas, min_activation)
    if refine:
        data = refine_data(atlas, model, data)
    top_n = int(sets.shape[1])
    valid = (sets >= 0).sum(1) >= min(max(int(min_exemplars), 1), top_n)
    streams_found = residual_streams(atlas, sets.numpy(), seed=seed)
    stream = streams_found.ids
    params = dict(method=method, streams=streams, min_exemplars=int(min_exemplars),
                  refine=bool(refine), refine_images=int(refine_images),
                  refine_rows=int(refine_rows), refine_bands=int(refine_bands),
                  ratio=float(ratio), min_activation=float(min_activation), seed=int(seed),
                  top_n=top_n)
    if method == "union-find":
        candidates, _, _ = lsh_clusters(sets.to(device) if device else sets, rows, bands,
                                        seed=seed, backend=backend)
        candidates = candidates.cpu()
        candidates[~valid] = -1
        candidates = _renumber(candidates)
        params.update(rows=rows, bands=bands)
    elif streams == "collapse":
        unit, representative = map(torch.from_numpy, stream_units(stream))
        found, found_params = leiden_groups(
            sets[representative], valid[representative], threshold=threshold, fence=fence,
            rows=rows, bands=bands, recall=recall, resolution=resolution, seed=seed,
            backend=backend, device=device)
        candidates = _renumber(torch.where(valid, found[unit], -1))
        params.update(found_params)
    else:
        candidates, found_params = leiden_groups(
            sets, valid, stream if streams == "across" else None, threshold=threshold,
            fence=fence, rows=rows, bands=bands, recall=recall,
            resolution=resolution, seed=seed, backend=backend, device=device)
        params.update(found_params)
    labels = candidates
    if refine:
        labels = refine_clusters(atlas, model, data, candidates, refine_images=refine_images,
                                 rows=refine_rows, bands=refine_bands, ratio=ratio,
                                 min_activation=min_activation, batch_size=batch_size,
                                 seed=seed, progress=progress)
    labels = labels.numpy().astype(np.int64)
    _warn_if_one_cluster_dominates(labels, max_share, method)
    return Clusters(labels, candidates.numpy().astype(np.int64), atlas.neuron_ids,
                    cluster_table(atlas, labels, streams=stream, stages=streams_found.stages),
                    params, stream, streams_found.stages)


def _renumber(labels: torch.Tensor, min_size: int = 2) -> torch.Tensor:
    """Labels renumbered 0..k-1 by smallest member, groups under ``min_size`` set to -1."""
    labels = torch.as_tensor(labels, dtype=torch.long).clone()
    ok = labels >= 0
    if not bool(ok.any()):
        return torch.full_like(labels, -1)
    sizes = torch.bincount(labels[ok])
    labels[ok & (sizes[labels.clamp(min=0)] < min_size)] = -1
    out = torch.full_like(labels, -1)
    seen = {}
    for i in torch.nonzero(labels >= 0).squeeze(1).tolist():
        out[i] = seen.setdefault(int(labels[i]), len(seen))
    return out


def _warn_if_one_cluster_dominates(labels: np.ndarray, max_share: float, method: str) -> None:
    clustered = labels[labels >= 0]
    if not clustered.size or not labels.size:
        return
    largest = int(np.bincount(clustered).max())
    if largest > max_share * labels.size:
        hint = ("use method='leiden' (the default), which does not chain" if method ==
                "union-find" else "raise threshold= or resolution=")
        warnings.warn(f"one cluster holds {largest} of {labels.size} neurons "
                      f"({largest / labels.size:.0%}, more than max_share={max_share}): the "
                      "clusters say little; " + hint, stacklevel=3)


# ------------------------------------------------------------------ stage 1


@contextlib.contextmanager
def _igraph_seed(seed: int):
    """igraph's random numbers from ``random.Random(seed)`` inside the block, then Python's
    ``random`` module again (igraph's default)."""
    import igraph

    igraph.set_random_number_generator(random.Random(int(seed)))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def fence_threshold(background, fence: float = 6.0) -> float:
    """The Jaccard similarity that stands above a ``background`` sample of similarities:
    Tukey's fence Q3 + ``fence`` x IQR, taken on the odds J / (1 - J) and mapped back, so it
    stays below 1 however much random pairs overlap. For two sets of one size the odds are half
    the ratio of shared to unshared members; under a low background they are about J itself,
    and the fence about the plain one. 0 for an empty sample."""
    background = np.asarray(background, np.float64)
    if not background.size:
        return 0.0
    q1, q3 = np.quantile(np.clip(background, 0.0, 1.0 - 1e-9), [0.25, 0.75])
    odds1, odds3 = q1 / (1.0 - q1), q3 / (1.0 - q3)  # quantiles commute with monotone maps
    odds = odds3 + fence * (odds3 - odds1)
    return float(odds / (1.0 + odds))


def leiden_groups(sets: torch.Tensor, valid: torch.Tensor, stream=None, *,
                  threshold: float | str = "auto", fence: float = 6.0,
                  rows: int | None = None, bands: int | None = None, recall: float = 0.9,
                  resolution: float | None = None, seed: int = 0, backend: str = "auto",
                  device=None, background_pairs: int = 20_000) -> tuple[torch.Tensor, dict]:
    """Stage 1 of ``cluster_neurons`` for any sets (rows padded with -1): candidate pairs by
    banded LSH, exact Jaccard, edges at or above the threshold (not between rows of one
    ``stream`` id, when given), Leiden (constant Potts model). Returns the group labels (int64
    tensor, numbered by smallest member, -1 for none) and the parameters found."""
    import igraph

    n = sets.shape[0]
    stream_ids = None if stream is None else np.asarray(stream, np.int64)
    if threshold == "auto":
        sample = background_jaccard(sets, background_pairs, valid=valid.numpy(),
                                    exclude=stream_ids, seed=seed)
        base = fence_threshold(sample, fence)
        threshold = max(0.1, base)
        if base > 0.5:
            median, upper = np.quantile(sample, [0.5, 0.75])
            warnings.warn(f"random neuron pairs share much of their exemplars (Jaccard: median "
                          f"{median:.2f}, upper quartile {upper:.2f}), so only pairs above "
                          f"{threshold:.2f} stand out and the clusters will be few: use more "
                          "images or a smaller top_n for this atlas (or is the network "
                          "untrained?), or pass threshold=...", stacklevel=3)
    else:
        base = None
    threshold = float(threshold)
    if rows is None or bands is None:
        rows, bands = choose_bands(min(threshold, 0.999), recall)
    resolution = threshold if resolution is None else float(resolution)
    signatures, has = minhash_signatures(sets.to(device) if device else sets, rows * bands,
                                         seed=seed, backend=backend)
    ok = valid.to(has.device) & has
    i, j = candidate_pairs(signatures, ok, rows, bands)
    i, j = i.cpu().numpy(), j.cpu().numpy()
    if stream_ids is not None:
        other = (stream_ids[i] < 0) | (stream_ids[i] != stream_ids[j])
        i, j = i[other], j[other]
    jac = pair_jaccard(sets, i, j)
    edge = jac >= threshold
    params = dict(threshold=threshold, background_fence=base, rows=int(rows),
                  bands=int(bands), resolution=resolution, candidate_pairs=int(i.size),
                  edges=int(edge.sum()))
    if not edge.any():
        return torch.full((n,), -1, dtype=torch.long), params
    graph = igraph.Graph(n=n, edges=np.stack([i[edge], j[edge]], 1).tolist())
    with _igraph_seed(seed):
        part = graph.community_leiden(objective_function="CPM", weights=jac[edge].tolist(),
                                      resolution=resolution, n_iterations=-1)
    return _renumber(torch.tensor(part.membership, dtype=torch.long)), params


def cluster_table(atlas: "Atlas", labels, *, streams=None, stages=(), min_share: float = 0.5,
                  max_exemplars: int = 20) -> pd.DataFrame:
    """One row per cluster of ``labels`` (a cluster id per neuron, -1 for none): ``size``,
    ``members`` (neuron ids), ``layers``; the members' residual streams (``streams``: a stream
    id per neuron, -1 for none; ``stages`` as in ``analyses.streams``): ``n_streams`` (distinct
    streams, a member on none counting as its own), ``stream`` (the most common stream's name,
    "" when no two members share one) and ``stream_share`` (share of the members on it, 1/size
    when none share); ``shared_exemplars`` (image ids in the top sets of at least
    ``min_share`` of the members, most shared first, at most ``max_exemplars``) and
    ``exemplar_shares`` (their shares)."""
    labels = np.asarray(labels)
    ids = atlas.neuron_ids
    if len(labels) != len(ids):
        raise ValueError(f"{len(labels)} labels for {len(ids)} neurons")
    stream = (np.full(len(ids), -1, np.int64) if streams is None
              else np.asarray(streams, np.int64))
    names = stream_names(atlas, stages)
    sets = top_sets(atlas).cpu().numpy()
    rows = []
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        idx = np.flatnonzero(labels == c)
        members = [ids[i] for i in idx]
        images, counts = np.unique(sets[idx], return_counts=True)
        share = counts / len(idx)
        order = np.lexsort((images, -counts))
        keep = order[share[order] >= min_share][:max_exemplars]
        on = stream[idx]
        # a member on no stream is a stream of its own
        keys = np.where(on >= 0, on, -1 - np.arange(len(idx)))
        values, n_on = np.unique(keys, return_counts=True)
        top = int(np.argmax(n_on))
        rows.append({"cluster": c, "size": len(idx), "members": members,
                     "layers": list(dict.fromkeys(m.rpartition(":")[0] for m in members)),
                     "n_streams": len(values),
                     "stream": names[values[top]] if n_on[top] > 1 else "",
                     "stream_share": round(float(n_on[top] / len(idx)), 4),
                     "shared_exemplars": images[keep].tolist(),
                     "exemplar_shares": np.round(share[keep], 4).tolist()})
    columns = ["cluster", "size", "members", "layers", "n_streams", "stream", "stream_share",
               "shared_exemplars", "exemplar_shares"]
    return pd.DataFrame(rows, columns=columns).set_index("cluster")
