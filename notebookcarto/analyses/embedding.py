"""Neuron embedding (NeuroCartography: Park, Hohman, Robinson, Chau, IEEE VIS 2021): skip-gram
with negative sampling over co-activation "sentences", then a 2-D projection with UMAP.

A sentence is the set of neurons (all layers) whose top-image set holds one image. Neurons that
often share top images get close vectors. The result, ``Embedding``, keeps snapshots after chosen
epochs too, for the interface's epoch slider.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .backend import torch_threads_kept
from .clustering import top_sets
from .result import Result

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["Embedding", "embed_neurons", "epoch_pairs", "project_2d", "sentences",
           "sentences_from_sets", "sgns_step", "train_sgns"]


def sentences(atlas: "Atlas", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-activation sentences: for each image held by two or more top sets, the neurons
    holding it. Returns ``(members, lengths)``: neuron indices (``atlas.neuron_ids`` order)
    grouped sentence by sentence, and the length of each sentence."""
    sets = top_sets(atlas, device)
    return sentences_from_sets(sets)


def sentences_from_sets(sets) -> tuple[torch.Tensor, torch.Tensor]:
    """``sentences`` for any (neurons, N) array of image ids padded with -1."""
    sets = torch.as_tensor(sets)
    neuron = torch.arange(sets.shape[0], device=sets.device).repeat_interleave(sets.shape[1])
    image = sets.reshape(-1).long()
    keep = image >= 0
    neuron, image = neuron[keep], image[keep]
    order = torch.argsort(image, stable=True)
    neuron, image = neuron[order], image[order]
    _, lengths = torch.unique_consecutive(image, return_counts=True)
    long_enough = torch.repeat_interleave(lengths >= 2, lengths)
    return neuron[long_enough], lengths[lengths >= 2]


def epoch_pairs(members: torch.Tensor, lengths: torch.Tensor, generator) -> torch.Tensor:
    """One epoch's training pairs: every sentence shuffled, its consecutive neurons paired;
    all pairs then in a random order. Returns (pairs, 2) int64."""
    device = members.device
    sentence = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    keys = torch.rand(members.numel(), generator=generator, device=device)
    order = torch.argsort(keys)
    order = order[torch.argsort(sentence[order], stable=True)]  # shuffled within sentences
    shuffled, sent = members[order], sentence[order]
    same = sent[1:] == sent[:-1]
    pairs = torch.stack([shuffled[:-1][same], shuffled[1:][same]], 1)
    return pairs[torch.randperm(pairs.shape[0], generator=generator, device=device)]


def sgns_step(vectors: torch.Tensor, u: torch.Tensor, v: torch.Tensor, z: torch.Tensor,
              lr: float) -> torch.Tensor:
    """One batched SGD step of skip-gram with negative sampling on a single embedding table.

    Loss per pair: -log s(e_u . e_v) - sum_z log s(-e_u . e_z), with s the logistic function.
    Gradients: e_u: -(1 - s(e_u.e_v)) e_v + sum_z s(e_u.e_z) e_z; e_v: -(1 - s(e_u.e_v)) e_u;
    e_z: s(e_u.e_z) e_u. (The released code used e_z . e_z in the negative term; the correct
    term is e_z . e_u, used here.) Updates of a batch are summed per neuron. Returns the mean
    loss of the batch (before the step)."""
    eu, ev, ez = vectors[u], vectors[v], vectors[z]  # (b, D), (b, D), (b, k, D)
    pos = (eu * ev).sum(-1)
    neg = torch.bmm(ez, eu.unsqueeze(2)).squeeze(2)  # e_z . e_u
    g_pos = torch.sigmoid(pos) - 1  # d loss / d pos
    g_neg = torch.sigmoid(neg)  # d loss / d neg
    grad_u = g_pos[:, None] * ev + torch.bmm(g_neg.unsqueeze(1), ez).squeeze(1)
    grad_v = g_pos[:, None] * eu
    grad_z = g_neg[..., None] * eu[:, None, :]
    index = torch.cat([u, v, z.reshape(-1)])
    grads = torch.cat([grad_u, grad_v, grad_z.reshape(-1, vectors.shape[1])])
    vectors.index_add_(0, index, grads, alpha=-lr)
    loss = torch.nn.functional.softplus(-pos) + torch.nn.functional.softplus(neg).sum(-1)
    return loss.mean()


def auto_batch_size(batch_size, n: int) -> int:
    """``batch_size``, or for None half the number of neurons ``n``, between 32 and 4096."""
    return int(min(4096, max(32, n // 2))) if batch_size is None else batch_size


@contextlib.contextmanager
def _deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # index_add_ on CUDA
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def train_sgns(members: torch.Tensor, lengths: torch.Tensor, n: int, *, dim: int = 30,
               negatives: int = 10, lr: float = 0.01, epochs: int = 5, batch_size=None,
               snapshot_epochs=None, seed: int = 0, device=None, progress: bool = True):
    """Train neuron vectors on sentences (``sentences``). Vectors start uniform in [-0.5, 0.5];
    each epoch shuffles every sentence, pairs consecutive neurons and takes SGD steps of
    ``batch_size`` pairs, each pair with ``negatives`` neurons drawn uniformly (other than its
    first neuron). The updates of a batch are summed, so a batch should not hit one neuron too
    often: ``batch_size=None`` takes half the number of neurons, between 32 and 4096 (each
    neuron then gets about six updates per step at any model size). Deterministic by ``seed``
    on a given device.

    Returns ``(vectors, snapshots, history)``: float32 (n, dim); {epoch: copy of the vectors
    after that epoch} for the epochs in ``snapshot_epochs`` (default: every epoch); mean loss
    and pair count per epoch.
    """
    if n < 2:
        raise ValueError(f"the embedding needs at least 2 neurons, got {n}")
    batch_size = auto_batch_size(batch_size, n)
    for name, value in (("dim", dim), ("negatives", negatives), ("epochs", epochs),
                        ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    wanted = list(range(1, epochs + 1)) if snapshot_epochs is None else sorted(
        {int(e) for e in snapshot_epochs})
    if any(not 1 <= e <= epochs for e in wanted):
        raise ValueError(f"snapshot_epochs must lie in 1..{epochs}, got {snapshot_epochs}")
    device = torch.device(device) if device is not None else members.device
    members, lengths = members.to(device), lengths.to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    vectors = torch.rand(n, dim, generator=gen, device=device) - 0.5
    snapshots, history = {}, []
    with _deterministic(), torch.no_grad():
        for epoch in tqdm(range(1, epochs + 1), desc="embedding", disable=not progress):
            pairs = epoch_pairs(members, lengths, gen)
            total = torch.zeros((), device=device)
            for b0 in range(0, pairs.shape[0], batch_size):
                u, v = pairs[b0:b0 + batch_size].unbind(1)
                z = torch.randint(0, n - 1, (u.numel(), negatives), generator=gen,
                                  device=device)
                z = z + (z >= u[:, None]).long()  # skip the pair's own first neuron
                total += sgns_step(vectors, u, v, z, lr) * u.numel()
            history.append({"epoch": epoch, "pairs": int(pairs.shape[0]),
                            "loss": float(total) / max(1, pairs.shape[0])})
            if epoch in wanted:
                snapshots[epoch] = vectors.clone()
    return vectors, snapshots, history


def project_2d(vectors, *, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
               seed: int = 0, init="spectral") -> np.ndarray:
    """2-D UMAP of the rows of ``vectors`` (fixed seed; float32 (n, 2)). ``init`` may be a
    previous (n, 2) layout, so that successive projections move little."""
    x = np.asarray(torch.as_tensor(vectors).detach().cpu(), dtype=np.float32)
    n = x.shape[0]
    if n < 4:  # too few points for UMAP's neighbour graph: the first two principal axes
        centred = x - x.mean(0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, 2), np.float32)
        k = min(2, u.shape[1])
        out[:, :k] = u[:, :k] * s[:k]
        return out
    import umap

    if not isinstance(init, str):
        init = np.asarray(init, dtype=np.float64)
    elif n <= 16:
        init = "random"  # spectral initialisation needs a larger graph
    with warnings.catch_warnings(), torch_threads_kept():
        warnings.simplefilter("ignore")  # UMAP warns that a seed disables parallelism
        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, n - 1)),
                            min_dist=min_dist, metric=metric, random_state=seed, init=init)
        return reducer.fit_transform(x).astype(np.float32)


@dataclass
class Embedding(Result):
    """A neuron embedding (``embed_neurons``): ``vectors`` (neurons, D), ``xy`` (neurons, 2),
    ``snapshot_vectors`` (S, neurons, D) and ``snapshot_xy`` (S, neurons, 2) after the epochs in
    ``epochs``, all float32 numpy arrays in ``neuron_ids`` order; ``history``: loss per epoch."""

    vectors: np.ndarray
    xy: np.ndarray
    snapshot_vectors: np.ndarray
    snapshot_xy: np.ndarray
    epochs: list
    neuron_ids: list
    params: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    section: ClassVar[str] = "embedding"

    def cosine(self) -> np.ndarray:
        """(neurons, neurons) cosine similarity of the final vectors."""
        unit = self.vectors / np.maximum(np.linalg.norm(self.vectors, axis=1, keepdims=True),
                                         1e-12)
        return unit @ unit.T

    def nearest(self, neuron: str, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` neurons with the most similar vectors (cosine), most similar first."""
        if neuron not in self.neuron_ids:
            raise KeyError(f"unknown neuron {neuron!r}: ids are 'layer:channel' as in "
                           "atlas.neuron_ids")
        i = self.neuron_ids.index(neuron)
        unit = self.vectors / np.maximum(np.linalg.norm(self.vectors, axis=1, keepdims=True),
                                         1e-12)
        sim = unit @ unit[i]
        sim[i] = -np.inf
        best = np.argsort(-sim, kind="stable")[:n]
        return [(self.neuron_ids[j], float(sim[j])) for j in best]

    def neighbours(self, n: int = 10) -> np.ndarray:
        """uint32 (neurons, n): each neuron's ``n`` nearest other neurons by cosine similarity of
        the vectors, nearest first (a neuron's own index pads rows when there are fewer)."""
        from sklearn.neighbors import NearestNeighbors

        count = len(self.vectors)
        n = min(int(n), count - 1)
        if n < 1:
            return np.zeros((count, 0), dtype=np.uint32)
        model = NearestNeighbors(n_neighbors=n + 1, metric="cosine", algorithm="brute")
        _, idx = model.fit(self.vectors).kneighbors(self.vectors)
        out = np.empty((count, n), dtype=np.uint32)
        for i, row in enumerate(idx):
            row = row[row != i][:n]
            out[i, :len(row)] = row
            out[i, len(row):] = i
        return out

    def to_section(self) -> dict:
        return {"meta": {"params": dict(self.params), "epochs": [int(e) for e in self.epochs],
                         "history": list(self.history)},
                "arrays": {"vectors": self.vectors, "xy": self.xy,
                           "snapshot_vectors": self.snapshot_vectors,
                           "snapshot_xy": self.snapshot_xy}}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas") -> "Embedding":
        a, meta = section["arrays"], section["meta"]
        return cls(a["vectors"], a["xy"], a["snapshot_vectors"], a["snapshot_xy"],
                   list(meta["epochs"]), atlas.neuron_ids, dict(meta["params"]),
                   list(meta["history"]))

    def check(self, atlas: "Atlas") -> None:
        if list(self.neuron_ids) != atlas.neuron_ids:
            raise ValueError("this embedding is of another atlas's neurons: embed this atlas")
        if len(self.epochs) != len(self.snapshot_xy):
            raise ValueError(f"{len(self.epochs)} snapshot epochs for {len(self.snapshot_xy)} "
                             "snapshots")

    def __repr__(self) -> str:
        return (f"Embedding({len(self.neuron_ids)} neurons, dim {self.vectors.shape[1]}, "
                f"{len(self.epochs)} snapshots)")


def embed_neurons(atlas: "Atlas", *, dim: int = 30, negatives: int = 10, lr: float = 0.01,
                  epochs: int = 5, batch_size: int | None = None, snapshot_epochs=None,
                  seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                  metric: str = "cosine", device=None, progress: bool = True) -> Embedding:
    """Embed the atlas's neurons (skip-gram with negative sampling over co-activation
    sentences, as NeuroCartography does) and project them to 2-D with UMAP; returns an
    ``Embedding`` (attach it with ``atlas.attach(...)``).

    Defaults are the reference's: ``dim`` 30, ``negatives`` 10 (uniform), ``lr`` 0.01,
    ``epochs`` 5; training runs in batches of ``batch_size`` pairs (see ``train_sgns``) on
    ``device`` (default: where the atlas's statistics are). The negative term uses e_z . e_u
    (the released code had e_z . e_z). Snapshots after ``snapshot_epochs`` (default every
    epoch) are kept and projected too, each UMAP initialised with the previous layout so points
    move little between epochs; the final layout is the last snapshot's when that is the final
    epoch.
    """
    members, lengths = sentences(atlas)
    if not lengths.numel():
        raise ValueError("no image is shared by two top sets, so there is nothing to learn: "
                         "build the atlas with a larger top_n or more neurons")
    n = len(atlas.neuron_ids)
    batch_size = auto_batch_size(batch_size, n)
    vectors, snaps, history = train_sgns(members, lengths, n, dim=dim, negatives=negatives,
                                         lr=lr, epochs=epochs, batch_size=batch_size,
                                         snapshot_epochs=snapshot_epochs, seed=seed,
                                         device=device, progress=progress)
    umap_args = dict(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed)
    epochs_kept = sorted(snaps)
    snap_xy, layout = [], "spectral"
    for e in epochs_kept:
        layout = project_2d(snaps[e], init=layout, **umap_args)
        snap_xy.append(layout)
    if epochs_kept and epochs_kept[-1] == epochs:
        xy = snap_xy[-1]
    else:
        xy = project_2d(vectors, init=layout, **umap_args)
    d = vectors.shape[1]
    return Embedding(
        vectors=vectors.cpu().numpy().astype(np.float32), xy=xy,
        snapshot_vectors=(np.stack([snaps[e].cpu().numpy() for e in epochs_kept])
                          .astype(np.float32) if epochs_kept else np.zeros((0, n, d), np.float32)),
        snapshot_xy=(np.stack(snap_xy).astype(np.float32) if snap_xy
                     else np.zeros((0, n, 2), np.float32)),
        epochs=epochs_kept, neuron_ids=atlas.neuron_ids,
        params=dict(dim=dim, negatives=negatives, lr=lr, epochs=epochs, batch_size=batch_size,
                    seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                    sentences=int(lengths.numel())),
        history=history)
