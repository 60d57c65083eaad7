"""How much the map changed between two snapshots: top-set Jaccard, settling, cluster turnover."""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_continuity", "membership", "set_jaccard", "settled_steps", "turnover"]


def membership(sets: np.ndarray, n_images: int) -> np.ndarray:
    """Bool (rows, n_images): which images each row's set holds (``sets`` int, -1 = none)."""
    sets = np.asarray(sets, dtype=np.int64)
    if sets.size and (sets.max() >= n_images or sets.min() < -1):
        raise ValueError(f"image ids must lie in -1..{n_images - 1}")
    out = np.zeros((sets.shape[0], n_images + 1), dtype=bool)
    out[np.arange(sets.shape[0])[:, None], sets + 1] = True
    return out[:, 1:]


def set_jaccard(before: np.ndarray, after: np.ndarray, n_images: int) -> np.ndarray:
    """Per row, the Jaccard similarity of two sets of image ids (int arrays (rows, k), -1 for
    none): |A & B| / |A | B|; NaN where both sets are empty (a neuron that fired on no image
    either time), 0 where only one is."""
    a, b = membership(before, n_images), membership(after, n_images)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the snapshots have {a.shape[0]} and {b.shape[0]} neurons")
    inter = (a & b).sum(1)
    union = (a | b).sum(1)
    out = np.full(a.shape[0], np.nan)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def settled_steps(steps: np.ndarray, jaccard: np.ndarray, alive: np.ndarray,
                  threshold: float) -> np.ndarray:
    """Per neuron, the step from which its top set stays put: the earliest snapshot such that
    every later one has a Jaccard of at least ``threshold`` with the one before. ``jaccard`` is
    (snapshots, neurons) with row i comparing snapshot i with i - 1 (row 0 is NaN); ``alive``
    (snapshots, neurons) says where a neuron fired on any probe image. A NaN Jaccard (dead both
    times) counts as unchanged. NaN for neurons not alive at the last snapshot and for those
    whose last change fails the threshold."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a Jaccard similarity in [0, 1], got {threshold!r}")
    steps = np.asarray(steps, dtype=np.float64)
    n_snap, n = jaccard.shape
    out = np.full(n, np.nan)
    if n_snap == 0:
        return out
    stable = np.isnan(jaccard) | (jaccard >= threshold)
    stable[0] = True
    # from the end: the first snapshot of the run of stable pairs that reaches the last one
    tail = np.flip(np.logical_and.accumulate(np.flip(stable, 0), 0), 0)
    first = np.argmax(tail, axis=0)  # tail[-1] is True where the last pair is stable
    ok = tail[-1] & alive[-1]
    # a run starting at row r means snapshots r-1 .. end agree, so the top set settled at r-1
    start = np.where(first > 0, first - 1, 0)
    out[ok] = steps[start[ok]]
    return out


def cluster_continuity(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """For each cluster of ``after`` (labels per neuron, -1 = none), the best Jaccard of its
    members with any cluster of ``before``: 1 when it existed as it is, 0 when it is new."""
    before, after = np.asarray(before, np.int64), np.asarray(after, np.int64)
    k_after = int(after.max()) + 1 if after.size else 0
    if k_after == 0:
        return np.zeros(0)
    k_before = int(before.max()) + 1 if before.size else 0
    if k_before == 0:
        return np.zeros(k_after)
    both = (after >= 0) & (before >= 0)
    inter = np.zeros((k_after, k_before))
    np.add.at(inter, (after[both], before[both]), 1)
    size_after = np.bincount(after[after >= 0], minlength=k_after)
    size_before = np.bincount(before[before >= 0], minlength=k_before)
    union = size_after[:, None] + size_before[None, :] - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return jac.max(1)


def turnover(before: np.ndarray, after: np.ndarray, neurons: np.ndarray) -> float:
    """Turnover of the clusters that hold any of ``neurons`` (a class's top neurons, as
    positions) in ``after``: 1 - their size-weighted best Jaccard with a cluster of ``before``.
    0: those clusters stayed as they were; 1: all are new. NaN when none of the neurons is in a
    cluster."""
    after = np.asarray(after, np.int64)
    chosen = np.unique(after[np.asarray(neurons, np.int64)])
    chosen = chosen[chosen >= 0]
    if chosen.size == 0:
        return float("nan")
    continuity = cluster_continuity(before, after)[chosen]
    sizes = np.bincount(after[after >= 0])[chosen]
    return float(1.0 - (continuity * sizes).sum() / sizes.sum())
