"""MinHash and banded LSH over sets of integer ids (NeuroCartography, Park et al., IEEE VIS 2021),
linear in the sets.

Sets are rows of an integer array (N, M), padded with -1. Every hash function is a random
permutation of the ids that occur in any set, *shared by all sets*: the released NeuroCartography
code drew new hash functions for every neuron, which makes signatures incomparable; here the
permutations are drawn once per call, so two sets with Jaccard similarity J have the same minimum
under one hash function with probability exactly J, and share a bucket of B bands of R rows with
probability 1 - (1 - J^R)^B (``s_curve``).

Two back ends give the same signatures and buckets: compiled loops (numba, on CPU) and torch
(any device; used on CUDA). No step compares all pairs of sets: the cost is O(N M R B), plus
O(U R B) to draw the permutations of the U ids that occur.

``lsh_clusters`` is the reference's stage 1 (union-find over all buckets). ``candidate_pairs``
lists the pairs that share a bucket instead, so that each can be checked (``pair_jaccard``, exact
and linear in the pairs) and grouped without chaining (``clustering.leiden_groups``);
``choose_bands`` picks R and B for a threshold, ``background_jaccard`` samples the similarity
of random pairs that a threshold must rise above.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from .backend import choose_backend

_TABLE_BUDGET = 1 << 25  # elements of a permutation table (or gathered block) held at once


# ------------------------------------------------------------------ S-curve


def check_bands(rows, bands, what: str = "") -> tuple[int, int]:
    """Validate LSH rows R and bands B (integers >= 1)."""
    for name, v in (("rows", rows), ("bands", bands)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what}{name} must be an integer >= 1, got {v!r} (NeuroCartography "
                             "used rows=2, bands=100)")
    return int(rows), int(bands)


def s_curve(similarity=None, rows: int = 2, bands: int = 100) -> np.ndarray:
    """Probability that two sets of Jaccard similarity ``similarity`` share at least one bucket
    of banded LSH with ``bands`` bands of ``rows`` rows: 1 - (1 - s^R)^B. ``similarity``
    defaults to 101 points on [0, 1]."""
    rows, bands = check_bands(rows, bands)
    s = np.linspace(0.0, 1.0, 101) if similarity is None else np.asarray(similarity, float)
    return 1.0 - (1.0 - s ** rows) ** bands


def s_curve_threshold(rows: int = 2, bands: int = 100) -> float:
    """Approximate similarity where the S-curve rises most steeply: (1/B)^(1/R)."""
    rows, bands = check_bands(rows, bands)
    return (1.0 / bands) ** (1.0 / rows)


def s_curve_figure(rows: int = 2, bands: int = 100, *, observed: pd.DataFrame | None = None,
                   bins: int = 20, compare=()):
    """Plotly figure of the S-curve for ``rows`` and ``bands`` (and any ``(rows, bands)`` in
    ``compare``), with the threshold (1/B)^(1/R) marked. ``observed`` (columns ``jaccard`` and
    ``collides``, e.g. from ``collision_table``) adds the measured collision rate per similarity
    bin, with binomial error bars."""
    import plotly.graph_objects as go

    s = np.linspace(0.0, 1.0, 201)
    fig = go.Figure()
    for r, b in [(rows, bands), *compare]:
        fig.add_scatter(x=s, y=s_curve(s, r, b), mode="lines", name=f"R={r}, B={b}")
    t = s_curve_threshold(rows, bands)
    fig.add_vline(x=t, line_dash="dot", annotation_text=f"(1/B)^(1/R) = {t:.2f}")
    if observed is not None and len(observed):
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(observed["jaccard"], edges) - 1, 0, bins - 1)
        table = (pd.DataFrame({"bin": which, "hit": observed["collides"].astype(float),
                               "j": observed["jaccard"]})
                 .groupby("bin").agg(j=("j", "mean"), rate=("hit", "mean"), n=("hit", "size")))
        err = np.sqrt(table["rate"] * (1 - table["rate"]) / table["n"])
        fig.add_scatter(x=table["j"], y=table["rate"], mode="markers", name="measured",
                        error_y=dict(type="data", array=err), text=table["n"],
                        hovertemplate="J=%{x:.2f}: %{y:.3f} of %{text} pairs")
    fig.update_layout(xaxis_title="Jaccard similarity of two top-image sets",
                      yaxis_title="probability of sharing a bucket",
                      title=f"LSH S-curve: {bands} bands of {rows} rows", template="plotly_white")
    return fig


# ------------------------------------------------------------------ inputs


def as_sets(sets, device=None) -> torch.Tensor:
    """Sets as an int64 tensor (N, M) of ids >= 0, padded with -1."""
    t = torch.as_tensor(sets)
    if t.ndim != 2 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"sets must be an integer array (N, M) of ids padded with -1, got "
                         f"{t.dtype} of shape {tuple(t.shape)}")
    if t.numel() and int(t.min()) < -1:
        raise ValueError("sets hold ids below -1: ids must be >= 0, with -1 for padding")
    return t.to(device=device, dtype=torch.long)


def _compact(sets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Ids renumbered 0..U-1 in increasing order (-1 stays), and U."""
    shifted = sets + 1  # padding -> 0
    top = int(shifted.max()) if shifted.numel() else 0
    if top <= 8 * shifted.numel() + (1 << 20):  # a lookup table (torch.unique is slow on CPU)
        present = torch.bincount(shifted.flatten(), minlength=top + 1) > 0
        present[0] = False
        lookup = torch.cumsum(present, 0) - 1  # lookup[0] = -1
        return lookup[shifted], int(present.sum())
    valid = sets >= 0
    ids, values = torch.unique(sets[valid], return_inverse=True)
    out = torch.full_like(sets, -1)
    out[valid] = values
    return out, ids.numel()


def _hash_seeds(seed: int, hashes: range) -> np.ndarray:
    """One 64-bit seed per hash function, a function of (seed, h) only."""
    return np.array([(int(seed) * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03 * (h + 1))
                     % 2 ** 64 for h in hashes], dtype=np.uint64)


def _permutation_table(universe: int, seed: int, h0: int, h1: int, dtype=np.int64) -> np.ndarray:
    """(universe, h1 - h0): the rank of each id under shared random permutations h0..h1-1
    (Fisher-Yates, compiled). Permutation h depends only on (seed, h, universe)."""
    seeds = _hash_seeds(seed, range(h0, h1))
    out = np.empty((len(seeds), universe), dtype=dtype)
    _kernels()["permutations"](seeds, out)
    return np.ascontiguousarray(out.T)


# ------------------------------------------------------------------ signatures


def minhash_signatures(sets, num_hashes: int, *, seed: int = 0, device=None,
                       backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """MinHash signatures of every set with ``num_hashes`` permutations shared by all sets.

    Returns ``(signatures, valid)``: int32 (N, num_hashes), the smallest rank of a member under
    each permutation, and bool (N,), False for empty sets (their signature is meaningless).
    Ranks are positions in a random permutation of the ids present in ``sets``: signatures of
    one call are comparable with each other (not across calls with other sets).
    """
    if isinstance(num_hashes, bool) or not isinstance(num_hashes, (int, np.integer)) \
            or num_hashes < 1:
        raise ValueError(f"num_hashes must be an integer >= 1, got {num_hashes!r}")
    sets = as_sets(sets, device)
    device = sets.device
    backend = choose_backend(backend, device)
    valid = (sets >= 0).any(1)
    if backend == "numba":
        return _signatures_numba(sets.numpy(), num_hashes, seed), valid
    compact, universe = _compact(sets)
    if universe == 0:
        return torch.zeros(sets.shape[0], num_hashes, dtype=torch.int32, device=device), valid
    return _signatures_torch(compact, universe, num_hashes, seed), valid


def _signatures_torch(compact, universe, num_hashes, seed) -> torch.Tensor:
    # embedding_bag's max over each row (a bag) of -rank is minus the smallest rank; padding
    # points at an extra row that padding_idx leaves out.
    step = max(1, min(num_hashes, _TABLE_BUDGET // universe))
    dtype = torch.float32 if universe <= 2 ** 24 else torch.float64  # ranks stay exact
    device = compact.device
    index = torch.where(compact >= 0, compact, universe)
    out = torch.empty(compact.shape[0], num_hashes, dtype=torch.int32, device=device)
    rows = max(1, _TABLE_BUDGET // max(1, compact.shape[1] * step))
    for h0 in range(0, num_hashes, step):
        h1 = min(h0 + step, num_hashes)
        table = torch.from_numpy(_permutation_table(universe, seed, h0, h1))
        weight = torch.cat([-table.to(device, dtype), torch.zeros(1, table.shape[1],
                                                                  dtype=dtype, device=device)])
        for r0 in range(0, index.shape[0], rows):
            best = torch.nn.functional.embedding_bag(index[r0:r0 + rows], weight, mode="max",
                                                     padding_idx=universe)
            out[r0:r0 + rows, h0:h1] = (-best).int()
    return out


def _signatures_numba(sets: np.ndarray, num_hashes, seed) -> torch.Tensor:
    kernels = _kernels()
    n = sets.shape[0]
    out = np.empty((n, num_hashes), dtype=np.int32)
    top = int(sets.max()) if sets.size else -1
    if top < 0:
        out[:] = 0
        return torch.from_numpy(out)
    if top <= 8 * sets.size + (1 << 20):  # ids -> 0..U-1 in increasing order, by lookup
        present = np.bincount((sets + 1).ravel(), minlength=top + 2)[1:] > 0
        lookup = (np.cumsum(present) - 1).astype(np.int32)
        universe = int(present.sum())
    else:  # sparse ids: renumber them first
        compact, universe = _compact(torch.from_numpy(sets))
        sets, lookup = compact.numpy(), np.arange(universe, dtype=np.int32)
    dtype = np.uint16 if universe <= np.iinfo(np.uint16).max else np.int32
    step = max(1, min(num_hashes, _TABLE_BUDGET // universe))
    threads = max(1, min(torch.get_num_threads(), os.cpu_count() or 1, n // 256 or 1))
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        for h0 in range(0, num_hashes, step):
            table = _permutation_table(universe, seed, h0, min(h0 + step, num_hashes), dtype)
            jobs = [pool.submit(kernels["signatures"], sets[a:b], lookup, table, out[a:b], h0)
                    for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
            for job in jobs:
                job.result()
    return torch.from_numpy(out)


# ------------------------------------------------------------------ banding and union-find


def band_ids(signatures: torch.Tensor, rows: int, bands: int, base: int) -> torch.Tensor:
    """(N, bands) int64: one id per band such that two rows have equal ids in a band exactly when
    their R values there are equal. ``base`` bounds the signature values (0 <= value < base)."""
    n = signatures.shape[0]
    sig = signatures[:, : rows * bands].reshape(n, bands, rows).long()
    if base ** rows < 2 ** 62:  # an exact positional number
        weights = torch.tensor([base ** (rows - 1 - r) for r in range(rows)],
                               dtype=torch.long, device=sig.device)
        return (sig * weights).sum(-1)
    out = torch.empty(n, bands, dtype=torch.long, device=sig.device)
    for b in range(bands):
        out[:, b] = torch.unique(sig[:, b], dim=0, return_inverse=True)[1]
    return out


def union_find(parent: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Merge the sets of each edge (u[k], v[k]) into ``parent`` (every entry a root, with
    parent[x] <= x) and return the new parent array (roots: the smallest member of each set).
    Vectorised: roots hook onto the smallest root they touch, then pointers jump to roots."""
    while u.numel():
        ru, rv = parent[u], parent[v]
        keep = ru != rv
        u, v, ru, rv = u[keep], v[keep], ru[keep], rv[keep]
        if not u.numel():
            break
        lo, hi = torch.minimum(ru, rv), torch.maximum(ru, rv)
        parent = parent.scatter_reduce(0, hi, lo, reduce="amin")
        while True:
            jumped = parent[parent]
            if torch.equal(jumped, parent):
                break
            parent = jumped
    return parent


def components(roots: torch.Tensor, valid: torch.Tensor | None = None,
               min_size: int = 2) -> torch.Tensor:
    """Cluster labels 0..k-1 from root indices (``union_find``: each row's root is the smallest
    row of its set), numbered by smallest member; members of sets smaller than ``min_size``, and
    invalid rows, get -1."""
    n = roots.numel()
    ok = torch.ones(n, dtype=torch.bool, device=roots.device) if valid is None else valid
    counts = torch.bincount(roots[ok], minlength=n)
    big = counts >= min_size
    new = torch.cumsum(big.long(), 0) - 1
    labels = torch.where(big[roots], new[roots], torch.full_like(roots, -1))
    labels[~ok] = -1
    return labels


def lsh_roots(signatures: torch.Tensor, valid: torch.Tensor, rows: int = 2, bands: int = 100,
              *, backend: str = "auto") -> torch.Tensor:
    """Union-find over all buckets of all bands: rows sharing the R values of any band end in
    one set. Returns the root (smallest member index) of every row; invalid rows are alone."""
    rows, bands = check_bands(rows, bands)
    if signatures.shape[1] < rows * bands:
        raise ValueError(f"signatures have {signatures.shape[1]} hashes, fewer than "
                         f"rows * bands = {rows * bands}")
    device = signatures.device
    backend = choose_backend(backend, device)
    n = signatures.shape[0]
    if backend == "numba":
        parent = np.arange(n, dtype=np.int64)
        # hash-major: one band's values of all rows lie together
        sig = np.ascontiguousarray(signatures[:, : rows * bands].cpu().numpy().T)
        _kernels()["band_union"](sig, rows, bands, valid.cpu().numpy(), parent)
        return torch.from_numpy(parent).to(device)
    parent = torch.arange(n, device=device)
    base = int(signatures.max()) + 1 if n else 1
    idx = torch.nonzero(valid).squeeze(1)
    step = max(1, _TABLE_BUDGET // max(1, idx.numel()))
    for b0 in range(0, bands, step):
        nb = min(step, bands - b0)
        ids = band_ids(signatures[idx, b0 * rows:(b0 + nb) * rows], rows, nb, base).T  # (nb, n)
        ids, order = torch.sort(ids, dim=1, stable=True)
        same = ids[:, 1:] == ids[:, :-1]  # a bucket chains its members: linking neighbours
        u, v = order[:, 1:][same], order[:, :-1][same]  # in sorted order is enough
        parent = union_find(parent, idx[u], idx[v])
    return parent


def lsh_clusters(sets, rows: int = 2, bands: int = 100, *, seed: int = 0, device=None,
                 backend: str = "auto", min_size: int = 2):
    """Stage 1 of NeuroCartography: MinHash signatures with ``rows * bands`` shared permutations,
    banded LSH, union-find over all buckets, components smaller than ``min_size`` dropped.

    Returns ``(labels, signatures, valid)``: labels int64 (N,) numbered by smallest member, -1
    for none. Cost is linear in the number of sets (no all-pairs step).
    """
    rows, bands = check_bands(rows, bands)
    signatures, valid = minhash_signatures(sets, rows * bands, seed=seed, device=device,
                                           backend=backend)
    roots = lsh_roots(signatures, valid, rows, bands, backend=backend)
    return components(roots, valid, min_size), signatures, valid


def lsh_collides(signatures: torch.Tensor, i, j, rows: int = 2, bands: int = 100) -> np.ndarray:
    """For given pairs (i[k], j[k]), whether they share a bucket in at least one band (the event
    whose probability the S-curve gives)."""
    rows, bands = check_bands(rows, bands)
    i = torch.as_tensor(np.array(i, dtype=np.int64), device=signatures.device)
    j = torch.as_tensor(np.array(j, dtype=np.int64), device=signatures.device)
    out = torch.empty(i.numel(), dtype=torch.bool, device=signatures.device)
    step = max(1, _TABLE_BUDGET // (rows * bands))
    for k in range(0, i.numel(), step):
        a = signatures[i[k:k + step], : rows * bands].reshape(-1, bands, rows)
        b = signatures[j[k:k + step], : rows * bands].reshape(-1, bands, rows)
        out[k:k + step] = (a == b).all(-1).any(-1)
    return out.cpu().numpy()


# ------------------------------------------------------------------ candidate pairs


def choose_bands(threshold: float, recall: float = 0.9,
                 max_hashes: int = 512) -> tuple[int, int]:
    """Rows R and bands B for banded LSH such that two sets of Jaccard similarity
    ``threshold`` share a bucket with probability at least ``recall`` (``s_curve``), with the
    largest R (the fewest background pairs) for which R * B <= ``max_hashes``."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not 0 < recall < 1:
        raise ValueError(f"recall must be in (0, 1), got {recall!r}")
    for rows in range(8, 0, -1):
        miss = 1.0 - threshold ** rows
        bands = 1 if miss <= 0 else int(np.ceil(np.log1p(-recall) / np.log(miss)))
        if rows * bands <= max_hashes or rows == 1:
            return rows, max(1, min(bands, max_hashes // rows))
    raise AssertionError("unreachable")


def _bucket_pairs(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (a, b), a < b as row indices, of rows with equal ``key``: each row pairs with
    every earlier row of its bucket."""
    order = torch.argsort(key, stable=True)
    ks = key[order]
    start = torch.ones(order.numel(), dtype=torch.bool, device=key.device)
    start[1:] = ks[1:] != ks[:-1]
    run = torch.cumsum(start.long(), 0) - 1
    run_start = torch.nonzero(start).squeeze(1)
    rank = torch.arange(order.numel(), device=key.device) - run_start[run]
    if not order.numel() or not int(rank.max()):
        empty = torch.zeros(0, dtype=torch.long, device=key.device)
        return empty, empty
    second = torch.repeat_interleave(torch.arange(order.numel(), device=key.device), rank)
    offset = torch.arange(second.numel(), device=key.device) - torch.repeat_interleave(
        torch.cumsum(rank, 0) - rank, rank)
    first = run_start[run[second]] + offset
    a, b = order[first], order[second]
    return torch.minimum(a, b), torch.maximum(a, b)


def candidate_pairs(signatures: torch.Tensor, valid: torch.Tensor, rows: int,
                    bands: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs (i, j), i < j, of valid rows that share a bucket in at least one of ``bands``
    bands of ``rows`` rows: banded LSH without union-find, so the pairs can be checked one by
    one. Cost and memory are linear in the rows and in the candidate pairs."""
    rows, bands = check_bands(rows, bands)
    if signatures.shape[1] < rows * bands:
        raise ValueError(f"signatures have {signatures.shape[1]} hashes, fewer than "
                         f"rows * bands = {rows * bands}")
    idx = torch.nonzero(valid).squeeze(1)
    n = signatures.shape[0]
    found = torch.zeros(0, dtype=torch.long, device=signatures.device)
    if idx.numel() < 2:
        return found, found
    base = int(signatures.max()) + 1
    for b in range(bands):
        key = band_ids(signatures[idx, b * rows:(b + 1) * rows], rows, 1, base)[:, 0]
        a, c = _bucket_pairs(key)
        if a.numel():
            found = torch.unique(torch.cat([found, idx[a] * n + idx[c]]))
    return found // n, found % n


def pair_jaccard(sets, i, j, *, chunk: int = 1 << 16) -> np.ndarray:
    """Exact Jaccard similarity of the sets of given pairs (i[k], j[k]) (rows of an integer
    array padded with -1; ids within a row distinct), float64. Cost linear in the pairs times
    the set size (a sorted search, no all-pairs step)."""
    s = np.sort(as_sets(sets, "cpu").numpy(), axis=1)
    i = np.asarray(i, dtype=np.int64).reshape(-1)
    j = np.asarray(j, dtype=np.int64).reshape(-1)
    if i.shape != j.shape:
        raise ValueError(f"got {i.size} first and {j.size} second members of pairs")
    if not i.size:
        return np.zeros(0)
    size = (s >= 0).sum(1)
    base = int(s.max()) + 2
    flat = (np.arange(s.shape[0], dtype=np.int64)[:, None] * base + (s + 1)).ravel()
    out = np.empty(i.size)
    step = max(1, chunk // max(1, s.shape[1]))
    for k in range(0, i.size, step):
        a, b = i[k:k + step], j[k:k + step]
        query = b[:, None] * base + (s[a] + 1)
        pos = np.minimum(np.searchsorted(flat, query), flat.size - 1)
        shared = ((flat[pos] == query) & (s[a] >= 0)).sum(1)
        union = size[a] + size[b] - shared
        out[k:k + step] = np.where(union > 0, shared / np.maximum(union, 1), 0.0)
    return out


def background_jaccard(sets, n_pairs: int = 20_000, *, valid=None, exclude=None,
                       seed: int = 0) -> np.ndarray:
    """Exact Jaccard similarities of ``n_pairs`` random pairs of distinct valid sets (the
    background a threshold must rise above). ``exclude`` (an id per set, -1 for none) leaves
    out pairs with the same id, e.g. neurons of one residual stream."""
    sets = as_sets(sets, "cpu")
    n = sets.shape[0]
    ok = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    a = idx[rng.integers(0, idx.size, n_pairs)]
    b = idx[rng.integers(0, idx.size, n_pairs)]
    keep = a != b
    if exclude is not None:
        group = np.asarray(exclude)
        keep &= (group[a] < 0) | (group[a] != group[b])
    return pair_jaccard(sets, a[keep], b[keep])


# ------------------------------------------------------------------ exact reference


def exact_jaccard_pairs(sets, min_jaccard: float = 0.0, *, chunk: int = 2048) -> pd.DataFrame:
    """All pairs i < j of sets with Jaccard similarity > 0 and >= ``min_jaccard``, computed
    exactly by comparing every pair (a sparse product; for tests and benchmarks on small
    inputs). Columns ``i``, ``j``, ``intersection``, ``jaccard``."""
    from scipy import sparse

    compact, universe = _compact(as_sets(sets, "cpu"))
    c = compact.numpy()
    n = c.shape[0]
    r, col = np.nonzero(c >= 0)
    incidence = sparse.csr_matrix((np.ones(r.size, np.float32), (r, c[r, col])),
                                  shape=(n, max(universe, 1)))
    incidence.sum_duplicates()
    incidence.data[:] = 1.0
    size = np.asarray(incidence.sum(1), dtype=np.float64).ravel()
    parts = []
    transposed = incidence.T.tocsc()
    for a in range(0, n, chunk):
        inter = (incidence[a:a + chunk] @ transposed).tocoo()
        i, j = inter.row + a, inter.col
        keep = j > i
        i, j, k = i[keep], j[keep], inter.data[keep].astype(np.float64)
        jac = k / (size[i] + size[j] - k)
        keep = jac >= min_jaccard
        parts.append(pd.DataFrame({"i": i[keep].astype(np.int64), "j": j[keep].astype(np.int64),
                                   "intersection": k[keep].astype(np.int64),
                                   "jaccard": jac[keep].astype(np.float64)}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["i", "j", "intersection", "jaccard"])
    return out.sort_values(["i", "j"], kind="stable").reset_index(drop=True)


def collision_table(signatures: torch.Tensor, pairs: pd.DataFrame, rows: int = 2,
                    bands: int = 100) -> pd.DataFrame:
    """``pairs`` (columns ``i``, ``j``, ``jaccard``) with ``collides`` (shared a bucket) and
    ``expected`` (the S-curve at their similarity) added."""
    out = pairs.copy()
    out["collides"] = lsh_collides(signatures, pairs["i"], pairs["j"], rows, bands)
    out["expected"] = s_curve(pairs["jaccard"].to_numpy(), rows, bands)
    return out


# ------------------------------------------------------------------ synthetic data


def synthetic_top_sets(n: int, *, set_size: int = 100, universe: int = 50_000,
                       group_size: int = 5, grouped: float = 0.5, replace=(0.0, 0.6),
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic top-image sets with planted overlap, for tests and benchmarks.

    A share ``grouped`` of the ``n`` sets come in groups of ``group_size``: each member is the
    group's base set (``set_size`` distinct ids out of ``universe``) with a fraction drawn
    uniformly from ``replace`` of its ids swapped for random others. The rest are random sets.
    Returns ``(sets, group)``: int64 (n, set_size) and int64 (n,), -1 for ungrouped sets.
    """
    if set_size > universe:
        raise ValueError(f"set_size ({set_size}) cannot exceed universe ({universe})")
    rng = np.random.default_rng(seed)
    n_groups = int(n * grouped) // group_size
    group = np.full(n, -1, dtype=np.int64)
    group[: n_groups * group_size] = np.repeat(np.arange(n_groups), group_size)
    sets = _distinct_rows(rng, rng.integers(0, universe, (n, set_size)), universe)
    members = group >= 0
    if n_groups:
        base = sets[np.flatnonzero(members)[::group_size]][group[members]]
        frac = rng.uniform(*replace, size=members.sum())
        swap = rng.random(base.shape) < frac[:, None]
        base[swap] = rng.integers(0, universe, swap.sum())
        sets[members] = _distinct_rows(rng, base, universe)
    order = rng.permutation(n)  # groups are not contiguous
    return sets[order], group[order]


def _distinct_rows(rng, rows: np.ndarray, universe: int) -> np.ndarray:
    rows = rows.copy()
    while True:
        order = np.argsort(rows, axis=1, kind="stable")
        s = np.take_along_axis(rows, order, 1)
        dup = np.zeros_like(rows, dtype=bool)
        np.put_along_axis(dup, order[:, 1:], s[:, 1:] == s[:, :-1], 1)
        if not dup.any():
            return rows
        rows[dup] = rng.integers(0, universe, dup.sum())


# ------------------------------------------------------------------ compiled loops


def _signatures_loop(sets, lookup, table, out, h0):
    # out[a, h0 + k] = smallest rank under permutation k of the ids in row a (-1: padding)
    n, m = sets.shape
    h = table.shape[1]
    top = table.dtype.type(np.iinfo(table.dtype).max)
    row = np.empty(h, dtype=table.dtype)
    for a in range(n):
        for k in range(h):
            row[k] = top
        for b in range(m):
            x = sets[a, b]
            if x < 0:
                continue
            t = table[lookup[x]]
            for k in range(h):
                if t[k] < row[k]:
                    row[k] = t[k]
        for k in range(h):
            out[a, h0 + k] = row[k]


def _permutations_loop(seeds, out):
    # one Fisher-Yates shuffle per row, driven by splitmix64 from that row's seed
    h, n = out.shape
    for k in range(h):
        state = np.uint64(seeds[k])
        row = out[k]
        for i in range(n):
            row[i] = i
        for i in range(n - 1, 0, -1):
            state += np.uint64(0x9E3779B97F4A7C15)
            z = state
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            j = np.int64(z % np.uint64(i + 1))
            row[i], row[j] = row[j], row[i]


def _band_union_loop(sig, rows, bands, valid, parent):
    n = sig.shape[1]
    size = 2
    while size < 2 * n:
        size *= 2
    mask = size - 1
    owner = np.empty(size, dtype=np.int64)
    for band in range(bands):
        owner[:] = -1
        c0 = band * rows
        for a in range(n):
            if not valid[a]:
                continue
            h = np.uint64(band + 1)
            for r in range(rows):
                h = (h ^ np.uint64(sig[c0 + r, a])) * np.uint64(0x9E3779B97F4A7C15)
                h ^= h >> np.uint64(31)
            slot = np.int64(h & np.uint64(mask))
            while True:
                o = owner[slot]
                if o < 0:
                    owner[slot] = a
                    break
                same = True
                for r in range(rows):
                    if sig[c0 + r, o] != sig[c0 + r, a]:
                        same = False
                        break
                if same:  # union by smaller root, with path halving
                    ra = a
                    while parent[ra] != ra:
                        parent[ra] = parent[parent[ra]]
                        ra = parent[ra]
                    ro = o
                    while parent[ro] != ro:
                        parent[ro] = parent[parent[ro]]
                        ro = parent[ro]
                    if ra < ro:
                        parent[ro] = ra
                    elif ro < ra:
                        parent[ra] = ro
                    break
                slot = (slot + 1) & mask
    for a in range(n):  # roots are smaller than their members: one pass resolves them
        parent[a] = parent[parent[a]]


@functools.lru_cache(maxsize=1)
def _kernels() -> dict:
    """The compiled loops (numba, compiled once and cached on disk)."""
    import numba

    jit = numba.njit(cache=True, nogil=True)
    return {"signatures": jit(_signatures_loop), "band_union": jit(_band_union_loop),
            "permutations": jit(_permutations_loop)}


__all__ = ["as_sets", "background_jaccard", "band_ids", "candidate_pairs", "check_bands",
           "choose_bands", "collision_table", "components", "exact_jaccard_pairs",
           "lsh_clusters", "lsh_collides", "lsh_roots", "minhash_signatures", "pair_jaccard",
           "s_curve", "s_curve_figure", "s_curve_threshold", "synthetic_top_sets",
           "union_find"]
