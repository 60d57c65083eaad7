"""Neuron clusters (NeuroCartography: Park, Hohman, Robinson, Chau, IEEE VIS 2021).

Stage 1 groups neurons whose top-image sets are similar (MinHash-LSH, ``analyses.minhash``);
stage 2 splits each candidate group by where its members fire, using one extra forward pass over a
sample of the group's top images. The result, ``Clusters``, holds a cluster id per neuron;
attached to an atlas it adds the column ``cluster`` to ``atlas.neurons``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import Capture, as_channels, model_device
from ..datasets.items import image_data
from .minhash import band_ids, check_bands, components, lsh_clusters, union_find
from .result import Result

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["Clusters", "cluster_neurons", "cluster_table", "refine_clusters", "top_sets"]


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


@dataclass
class Clusters(Result):
    """Clusters of neurons (``cluster_neurons``).

    Attributes:
        labels: int64 (neurons,), cluster id per neuron in ``neuron_ids`` order, -1 for none.
        candidates: int64 (neurons,), the stage-1 (MinHash-LSH) groups before refinement.
        neuron_ids: the neurons, ``"layer:channel"``.
        table: one row per cluster: ``size``, ``members``, ``layers``, ``shared_exemplars``
            (images in the top sets of at least half of the members, most shared first).
        params: the parameters used.
    """

    labels: np.ndarray
    candidates: np.ndarray
    neuron_ids: list
    table: pd.DataFrame
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "clusters"

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def members(self, cluster: int) -> list[str]:
        """The neuron ids of one cluster."""
        return [self.neuron_ids[i] for i in np.flatnonzero(self.labels == cluster)]

    def to_section(self) -> dict:
        return {"meta": {"params": dict(self.params), "n_clusters": self.n_clusters},
                "arrays": {"cluster": np.asarray(self.labels, np.int64),
                           "candidate": np.asarray(self.candidates, np.int64)}}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas") -> "Clusters":
        labels = section["arrays"]["cluster"]
        return cls(labels, section["arrays"]["candidate"], atlas.neuron_ids,
                   cluster_table(atlas, labels), dict(section["meta"]["params"]))

    def check(self, atlas: "Atlas") -> None:
        if list(self.neuron_ids) != atlas.neuron_ids:
            raise ValueError("these clusters are of another atlas's neurons: cluster this atlas")

    def neuron_columns(self, atlas: "Atlas") -> dict[str, np.ndarray]:
        return {"cluster": self.labels}

    def __repr__(self) -> str:
        clustered = int((self.labels >= 0).sum())
        groups = int(self.candidates.max()) + 1 if self.candidates.size else 0
        return (f"Clusters({self.n_clusters} clusters holding {clustered} of "
                f"{len(self.labels)} neurons; {groups} stage-1 groups)")


# ------------------------------------------------------------------ public entry point


def cluster_neurons(atlas: "Atlas", model: nn.Module | None = None, data=None, *,
                    rows: int = 2, bands: int = 100, refine: bool = True,
                    refine_images: int = 100, refine_rows: int = 5, refine_bands: int = 30,
                    ratio: float = 0.03, min_activation: float = 0.0, batch_size: int = 64,
                    seed: int = 0, backend: str = "auto", progress: bool = True) -> Clusters:
    """Cluster the atlas's neurons as NeuroCartography does; returns ``Clusters`` (attach it
    with ``atlas.attach(...)``: ``atlas.neurons`` gains a ``cluster`` column).

    Stage 1 (``rows`` R, ``bands`` B): MinHash of every neuron's top-image set with permutations
    shared by all neurons, banded LSH, union-find over all buckets, singletons dropped; cost
    linear in the number of neurons. ``s_curve(similarity, rows, bands)`` tells which
    similarities the choice of R and B merges.

    Stage 2 (``refine=True``; needs ``model`` and ``data``, the data set the atlas was built on
    in the same order, so that image ``i`` is the atlas's image ``i``): for each stage-1 group,
    ``refine_images`` images drawn from its members' pooled top images go once more through the
    model (only those images); each member's positions with activation > ``min_activation`` (0
    in the reference), mapped onto one common grid (nearest neighbour, so members of different
    layers compare), are MinHashed with permutations of the grid shared by all members
    (``refine_bands`` bands of ``refine_rows`` rows); a pair of members that shares a bucket in
    more than ``ratio`` times the group's number of sampled images is merged (union-find);
    groups of two or more are kept. The released code drew a new permutation per neuron, so its
    signatures were not comparable; here they are shared. Stage 2 enumerates only the pairs that
    share a bucket inside a stage-1 group.

    With small data sets, or dense activations, the reference's defaults chain most neurons
    into one cluster: raise ``rows`` (see ``s_curve``), ``ratio`` or ``min_activation``.

    Deterministic by ``seed``. ``backend``: ``"auto"``, ``"numba"`` (CPU) or ``"torch"``.
    """
    rows, bands = check_bands(rows, bands)
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
    sets = top_sets(atlas, device)
    candidates, _, _ = lsh_clusters(sets, rows, bands, seed=seed, backend=backend)
    candidates = candidates.cpu()
    labels = candidates
    if refine:
        labels = refine_clusters(atlas, model, data, candidates, refine_images=refine_images,
                                 rows=refine_rows, bands=refine_bands, ratio=ratio,
                                 min_activation=min_activation, batch_size=batch_size,
                                 seed=seed, progress=progress)
    labels = labels.numpy().astype(np.int64)
    params = dict(rows=rows, bands=bands, refine=bool(refine), refine_images=int(refine_images),
                  refine_rows=int(refine_rows), refine_bands=int(refine_bands),
                  ratio=float(ratio), min_activation=float(min_activation), seed=int(seed),
                  top_n=int(sets.shape[1]))
    return Clusters(labels, candidates.numpy().astype(np.int64), atlas.neuron_ids,
                    cluster_table(atlas, labels), params)


def cluster_table(atlas: "Atlas", labels, *, min_share: float = 0.5,
                  max_exemplars: int = 20) -> pd.DataFrame:
    """One row per cluster of ``labels`` (a cluster id per neuron, -1 for none): ``size``,
    ``members`` (neuron ids), ``layers``, ``shared_exemplars`` (image ids in the top sets of at
    least ``min_share`` of the members, most shared first, at most ``max_exemplars``) and
    ``exemplar_shares`` (their shares)."""
    labels = np.asarray(labels)
    ids = atlas.neuron_ids
    if len(labels) != len(ids):
        raise ValueError(f"{len(labels)} labels for {len(ids)} neurons")
    sets = top_sets(atlas).cpu().numpy()
    rows = []
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        idx = np.flatnonzero(labels == c)
        members = [ids[i] for i in idx]
        images, counts = np.unique(sets[idx], return_counts=True)
        share = counts / len(idx)
        order = np.lexsort((images, -counts))
        keep = order[share[order] >= min_share][:max_exemplars]
        rows.append({"cluster": c, "size": len(idx), "members": members,
                     "layers": list(dict.fromkeys(m.rpartition(":")[0] for m in members)),
                     "shared_exemplars": images[keep].tolist(),
                     "exemplar_shares": np.round(share[keep], 4).tolist()})
    columns = ["cluster", "size", "members", "layers", "shared_exemplars", "exemplar_shares"]
    return pd.DataFrame(rows, columns=columns).set_index("cluster")


# ------------------------------------------------------------------ stage 2


def _grid(shape) -> tuple[int, int]:
    """A layer's positions as a 2-D grid: (H, W), tokens (1, T), vectors (1, 1)."""
    shape = tuple(shape)
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 1:
        return 1, int(shape[0])
    return 1, 1


def _position_tables(shapes: dict, num_hashes: int, seed: int, device) -> tuple[dict, tuple]:
    """Per layer, (positions, hashes): the smallest rank, under each permutation of the common
    grid, of the common cells that map onto each of the layer's positions (nearest-neighbour
    upsampling). The MinHash of a layer's position set is then the MinHash of its upsampled
    set on the common grid, so members of different layers are comparable."""
    common = (max(_grid(s)[0] for s in shapes.values()), max(_grid(s)[1] for s in shapes.values()))
    cells = common[0] * common[1]
    g = torch.Generator().manual_seed(int(seed) + 7919)
    perms = torch.stack([torch.randperm(cells, generator=g) for _ in range(num_hashes)], 1)
    ci, cj = torch.meshgrid(torch.arange(common[0]), torch.arange(common[1]), indexing="ij")
    tables = {}
    for name, shape in shapes.items():
        h, w = _grid(shape)
        source = ((ci * h) // common[0] * w + (cj * w) // common[1]).flatten()
        table = torch.full((h * w, num_hashes), cells, dtype=torch.long)
        table.scatter_reduce_(0, source[:, None].expand(-1, num_hashes), perms, reduce="amin")
        tables[name] = table.to(device)
    return tables, common


def refine_clusters(atlas: "Atlas", model: nn.Module, data, candidates, *,
                    refine_images: int = 100, rows: int = 5, bands: int = 30,
                    ratio: float = 0.03, min_activation: float = 0.0, batch_size: int = 64,
                    seed: int = 0, progress: bool = True) -> torch.Tensor:
    """Stage 2: split stage-1 groups (``candidates``, -1 for none) by where members fire.
    Returns the refined labels (int64 tensor, numbered by smallest member, -1 for none).
    See ``cluster_neurons``."""
    rows, bands = check_bands(rows, bands, "refine_")
    candidates = torch.as_tensor(candidates, dtype=torch.long).cpu()
    n = candidates.numel()
    if not bool((candidates >= 0).any()):
        return torch.full((n,), -1, dtype=torch.long)
    stats = atlas.stats
    names = list(stats.layers)
    layer_of = torch.repeat_interleave(torch.arange(len(names)),
                                       torch.tensor([stats.layers[k].channels for k in names]))
    first = np.concatenate([[0], np.cumsum([stats.layers[k].channels for k in names])])
    sets = top_sets(atlas).cpu()
    data = image_data(data, model=model)
    if len(data) < stats.n_images:
        raise ValueError(f"the data set has {len(data)} images but the atlas saw "
                         f"{stats.n_images}: pass the data set the atlas was built on")

    # Which images each group looks at, and the (image, group member) pairs to hash.
    gen = torch.Generator().manual_seed(int(seed))
    group_ids = torch.unique(candidates[candidates >= 0])
    trip_image, trip_neuron, trip_slot, slot_size = [], [], [], []
    slot = 0
    for g in group_ids.tolist():
        members = torch.nonzero(candidates == g).squeeze(1)
        pooled = torch.unique(sets[members])
        chosen = pooled[torch.randperm(pooled.numel(), generator=gen)[:refine_images]]
        k = chosen.numel()
        trip_image.append(chosen.repeat_interleave(members.numel()))
        trip_neuron.append(members.repeat(k))
        trip_slot.append((slot + torch.arange(k)).repeat_interleave(members.numel()))
        slot_size.append(k)
        slot += k
    image = torch.cat(trip_image)
    neuron = torch.cat(trip_neuron)
    slots = torch.cat(trip_slot)
    group_k = torch.zeros(int(group_ids.max()) + 1)
    group_k[group_ids] = torch.tensor(slot_size, dtype=torch.float32)

    device = model_device(model)
    used_layers = torch.unique(layer_of[neuron]).tolist()
    shapes = {names[k]: stats.shapes[names[k]] for k in used_layers}
    tables, _ = _position_tables(shapes, rows * bands, seed, device)
    skip = stats.config.get("skip_tokens", 0)
    sig = torch.empty(image.numel(), rows * bands, dtype=torch.long)
    empty = torch.zeros(image.numel(), dtype=torch.bool)

    order = torch.argsort(image, stable=True)
    unique_images = torch.unique(image)
    outputs = {}

    def keep(name, z):
        outputs[name] = as_channels(z, skip_tokens=skip)

    bar = tqdm(total=unique_images.numel(), desc="cluster refinement", disable=not progress)
    with Capture(model, [names[k] for k in used_layers], on_output=keep,
                 copy=True), torch.inference_mode():
        for b0 in range(0, unique_images.numel(), batch_size):
            batch = unique_images[b0:b0 + batch_size]
            x = data.images(batch.tolist()).to(device)
            model(x)
            lo = torch.searchsorted(image[order], batch[0])
            hi = torch.searchsorted(image[order], batch[-1], right=True)
            which = order[lo:hi]
            for k in used_layers:
                sel = which[layer_of[neuron[which]] == k]
                if not sel.numel():
                    continue
                pos = torch.searchsorted(batch, image[sel]).to(device)
                channel = (neuron[sel] - int(first[k])).to(device)
                active = outputs[names[k]][pos, channel] > min_activation  # (q, positions)
                s, e = _position_minhash(active, tables[names[k]])
                sig[sel], empty[sel] = s.cpu(), e.cpu()
            bar.update(batch.numel())
    bar.close()

    cells = int(max(t.max() for t in tables.values())) + 1
    counts = _pair_counts(sig, empty, slots, neuron, rows, bands, n, cells)
    if counts is None:
        return torch.full((n,), -1, dtype=torch.long)
    i, j, c = counts
    merge = c > ratio * group_k[candidates[i]]
    parent = union_find(torch.arange(n), i[merge], j[merge])
    return components(parent)


def _position_minhash(active: torch.Tensor, table: torch.Tensor):
    """MinHash of each row's set of active positions: (q, hashes) int64 and a bool (q,) that
    is True for rows with no active position."""
    q = active.shape[0]
    rows, cols = torch.nonzero(active, as_tuple=True)
    lengths = torch.bincount(rows, minlength=q)
    offsets = torch.cumsum(lengths, 0) - lengths
    weight = -table.to(torch.float64 if table.max() >= 2 ** 24 else torch.float32)
    best = torch.nn.functional.embedding_bag(cols, weight, offsets, mode="max")
    return (-best).long(), lengths == 0


def _pair_counts(sig, empty, slots, neuron, rows, bands, n, base):
    """For each pair of neurons, the number of sampled images (slots) in which they share a
    bucket in at least one band. Pairs are enumerated only inside buckets."""
    keep = ~empty
    sig, slots, neuron = sig[keep], slots[keep], neuron[keep]
    if not slots.numel():
        return None
    keys = band_ids(sig, rows, bands, base)
    pairs = []
    for b in range(bands):
        key = keys[:, b]
        order = torch.argsort(key, stable=True)
        order = order[torch.argsort(slots[order], stable=True)]  # by (slot, key)
        ks, ss = key[order], slots[order]
        start = torch.ones(order.numel(), dtype=torch.bool)
        start[1:] = (ks[1:] != ks[:-1]) | (ss[1:] != ss[:-1])
        run = torch.cumsum(start.long(), 0) - 1
        run_start = torch.nonzero(start).squeeze(1)
        rank = torch.arange(order.numel()) - run_start[run]  # position inside its bucket
        if not int(rank.max()):
            continue
        # every element pairs with each earlier element of its bucket
        second = torch.repeat_interleave(torch.arange(order.numel()), rank)
        offset = torch.arange(second.numel()) - torch.repeat_interleave(
            torch.cumsum(rank, 0) - rank, rank)
        first = run_start[run[second]] + offset
        a, c = neuron[order[first]], neuron[order[second]]
        distinct = a != c
        pairs.append(torch.stack([ss[second], torch.minimum(a, c), torch.maximum(a, c)],
                                 1)[distinct])
    if not pairs:
        return None
    pairs = torch.cat(pairs)
    if (int(slots.max()) + 1) * n * n < 2 ** 62:  # one number per (slot, pair): faster
        code = torch.unique((pairs[:, 0] * n + pairs[:, 1]) * n + pairs[:, 2])
        pair, count = torch.unique(code % (n * n), return_counts=True)
        return pair // n, pair % n, count
    unique = torch.unique(pairs, dim=0)  # one count per (image slot, pair)
    pair, count = torch.unique(unique[:, 1:], dim=0, return_counts=True)
    return pair[:, 0], pair[:, 1], count
