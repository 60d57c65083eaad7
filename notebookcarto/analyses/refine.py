"""Stage 2 of neuron clustering (NeuroCartography, Park et al., IEEE VIS 2021): split each
candidate group by where its members fire.

For each group, a sample of its members' pooled top images goes once more through the model;
each member's set of active positions on each image, mapped onto one common grid, is MinHashed
with permutations of the grid shared by all members, and two members that share a bucket in
more than ``ratio`` of the group's images are merged (union-find inside the group). The released
code drew a new permutation per neuron, so its signatures were not comparable; here they are
shared.

Memory: the pair counts of a group are one dense (members x members) matrix, so memory grows
with the size of the largest group, never with the size of a layer or the number of pairs that
share a bucket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import Capture, as_channels, model_device
from ..datasets.items import image_data
from .minhash import band_ids, check_bands, components, union_find

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["group_pair_counts", "refine_clusters", "refine_data"]

_BUDGET = 1 << 24  # booleans compared at once by group_pair_counts


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


def group_pair_counts(keys: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """For one group: ``keys`` int64 (images, members, bands), one bucket id per band of each
    member's signature on each image, and ``empty`` bool (images, members), members with no
    active position there. Returns int64 (members, members): for each pair, the number of
    images on which the two share a bucket in at least one band (0 on the diagonal and for
    empty members). Dense: memory is the group's size squared, compared in chunks of images."""
    k, m, bands = keys.shape
    counts = torch.zeros(m, m, dtype=torch.long, device=keys.device)
    step = max(1, _BUDGET // max(1, m * m * bands))
    for s in range(0, k, step):
        kk, ee = keys[s:s + step], empty[s:s + step]
        shared = (kk[:, :, None, :] == kk[:, None, :, :]).any(-1)
        shared &= ~ee[:, :, None] & ~ee[:, None, :]
        counts += shared.sum(0)
    counts.fill_diagonal_(0)
    return counts


def refine_data(atlas: "Atlas", model: nn.Module, data):
    """``data`` as ``ImageData``, checked to hold every image the atlas saw (stage 2 revisits
    exemplars by image id)."""
    data = image_data(data, model=model)
    if len(data) < atlas.stats.n_images:
        raise ValueError(f"the data set has {len(data)} images but the atlas saw "
                         f"{atlas.stats.n_images}: pass the data set the atlas was built on")
    return data


def refine_clusters(atlas: "Atlas", model: nn.Module, data, candidates, *,
                    refine_images: int = 100, rows: int = 5, bands: int = 30,
                    ratio: float = 0.03, min_activation: float = 0.0, batch_size: int = 64,
                    seed: int = 0, progress: bool = True) -> torch.Tensor:
    """Stage 2: split stage-1 groups (``candidates``, -1 for none) by where members fire.
    Returns the refined labels (int64 tensor, numbered by smallest member, -1 for none).

    ``data`` is the data set the atlas was built on, in the same order. Per group,
    ``refine_images`` images drawn from the members' pooled top images run through the model
    (each image once for all groups); each member's positions with activation >
    ``min_activation`` are MinHashed (``bands`` bands of ``rows`` rows, permutations of a
    common grid shared by all members); pairs sharing a bucket on more than ``ratio`` times the
    group's number of images are merged. See ``cluster_neurons``."""
    from .clustering import top_sets

    rows, bands = check_bands(rows, bands, "refine_")
    candidates = torch.as_tensor(candidates, dtype=torch.long).cpu()
    n = candidates.numel()
    if not bool((candidates >= 0).any()):
        return torch.full((n,), -1, dtype=torch.long)
    stats = atlas.stats
    names = list(stats.layers)
    widths = [stats.layers[k].channels for k in names]
    layer_of = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(widths))
    first = np.concatenate([[0], np.cumsum(widths)])
    sets = top_sets(atlas).cpu()
    data = refine_data(atlas, model, data)

    # The (image, member) pairs to hash, group after group: group g owns trips start..stop.
    gen = torch.Generator().manual_seed(int(seed))
    groups = []  # (members, k images, first trip)
    trip_image, trip_neuron, start = [], [], 0
    for g in torch.unique(candidates[candidates >= 0]).tolist():
        members = torch.nonzero(candidates == g).squeeze(1)
        pooled = torch.unique(sets[members])
        pooled = pooled[pooled >= 0]
        chosen = pooled[torch.randperm(pooled.numel(), generator=gen)[:refine_images]]
        trip_image.append(chosen.repeat_interleave(members.numel()))
        trip_neuron.append(members.repeat(chosen.numel()))
        groups.append((members, chosen.numel(), start))
        start += chosen.numel() * members.numel()
    image, neuron = torch.cat(trip_image), torch.cat(trip_neuron)

    device = model_device(model)
    used_layers = torch.unique(layer_of[neuron]).tolist()
    shapes = {names[k]: stats.shapes[names[k]] for k in used_layers}
    tables, common = _position_tables(shapes, rows * bands, seed, device)
    skip = stats.config.get("skip_tokens", 0)
    sig = torch.empty(image.numel(), rows * bands, dtype=torch.int32)
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
            model(data.images(batch.tolist()).to(device))
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
                sig[sel], empty[sel] = s.int().cpu(), e.cpu()
            outputs.clear()
            bar.update(batch.numel())
    bar.close()

    cells = common[0] * common[1] + 1
    parent = torch.arange(n)
    for members, k, s in groups:
        m = members.numel()
        part = sig[s:s + k * m].long()
        keys = band_ids(part, rows, bands, cells).reshape(k, m, bands)
        counts = group_pair_counts(keys, empty[s:s + k * m].reshape(k, m))
        i, j = torch.nonzero(torch.triu(counts > ratio * k, 1), as_tuple=True)
        parent = union_find(parent, members[i], members[j])
    return components(parent)
