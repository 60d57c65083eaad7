"""Which real images each target is matched to (VITAL) and measured against.

- a class: ``n`` images of the class, drawn at random (VITAL draws 50 training images);
- a neuron: the source images of its top exemplars, best first (the atlas's top images);
- a cluster: its members' top images, those in most members' top sets first.

Each is a list of image ids into the data the atlas was built on; ``references={key: images}``
may give the images (a tensor) or ids of any target instead.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np
import torch

from .targets import Target

if TYPE_CHECKING:
    from ..atlas import Atlas
    from ..datasets.items import ImageData

__all__ = ["class_members", "reference_ids", "target_seed"]


def target_seed(seed: int, key: str) -> int:
    """The seed of one target's generator: from the run's seed and the target's key only, so
    a target gets the same draws alone and in any batch."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(key.encode())]).generate_state(1)[0])


def class_members(data: "ImageData", labels=None, progress: bool = False) -> np.ndarray:
    """The label of every image (int64 (N,)): ``labels`` if given, else one pass over the
    data."""
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if data is not None and data.dataset is not None and len(labels) != len(data):
            raise ValueError(f"labels holds {len(labels)} labels for {len(data)} images")
        return labels
    if data is None:
        raise ValueError("class targets need real images of the class: pass data= (with "
                         "labels) or references={'class:<k>': images}")
    out = [b.labels.cpu() for b in data.batches(labels="required", progress=progress,
                                                desc="reading labels for class references")]
    return torch.cat(out).numpy().astype(np.int64)


def reference_ids(target: Target, n: int, *, seed: int, atlas: "Atlas | None" = None,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """Up to ``n`` image ids for ``target`` (int64); raises when none can be found."""
    if target.kind == "class":
        k = target.channels[0]
        pool = np.flatnonzero(labels == k)
        if pool.size == 0:
            raise ValueError(f"no image of class {k} ({target.label!r}) in the data: VITAL "
                             "matches a class to its real images")
        rng = np.random.default_rng(target_seed(seed, target.key))
        return rng.permutation(pool)[:n].astype(np.int64)
    if atlas is None:
        raise ValueError(f"target {target.key!r}: its references are its top exemplars, which "
                         "the atlas holds: pass atlas= (and the data it was built on), or "
                         f"references={{{target.key!r}: images}}")
    if target.layer not in atlas.layers:
        raise ValueError(f"target {target.key!r}: layer {target.layer!r} is not in the atlas "
                         f"(layers {atlas.layers}), so it has no top exemplars there: pass "
                         f"references={{{target.key!r}: images}}")
    top = atlas.stats.layers[target.layer].top.index.cpu().numpy()
    rows = top[list(target.channels)]  # (members, top_n), -1: empty slot
    if len(target.channels) == 1:
        ids = rows[0][rows[0] >= 0]
    else:
        ids = _shared_first(rows)
    if ids.size == 0:
        raise ValueError(f"target {target.key!r} has no top exemplars in the atlas")
    return ids[:n].astype(np.int64)


def _shared_first(rows: np.ndarray) -> np.ndarray:
    """Image ids of several top lists, those in most lists first, then by best rank."""
    count: dict[int, int] = {}
    best: dict[int, int] = {}
    for row in rows:
        for rank, image in enumerate(row):
            if image < 0:
                continue
            count[int(image)] = count.get(int(image), 0) + 1
            best[int(image)] = min(best.get(int(image), rank), rank)
    order = sorted(count, key=lambda i: (-count[i], best[i], i))
    return np.asarray(order, dtype=np.int64)
