"""The views' one reader of analysis results.

Views draw; they compute nothing. Every analysis result reaches them through these functions, by
section name (``atlas.get("clusters")``), so the views import nothing from the analyses. A result
that is not attached gives None, and ``note`` says which call makes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..atlas.sections import SCHEMAS

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["GRAPHS", "class_layouts", "class_similarity", "cluster_labels", "concept_labels",
           "embedding_layout", "graphs", "neighbours", "note", "patches", "result"]

# graph kinds the graph view shows, and the results that hold them
GRAPHS = {"attribution": "attribution_graphs", "cluster": "cluster_graphs"}


def note(name: str) -> str:
    """What to run for a result the atlas lacks."""
    return f"no {name!r} result in this atlas: run atlas.attach({SCHEMAS[name].call})"


def result(atlas: "Atlas", name: str):
    """The attached result of section ``name``, or None."""
    return atlas.get(name) if atlas.has(name) else None


def patches(atlas: "Atlas"):
    """The ``Patches`` result (patches, heatmaps, values: one row per neuron), or None."""
    return result(atlas, "patches")


def cluster_labels(atlas: "Atlas") -> np.ndarray | None:
    """The cluster id of every neuron (-1: none), or None without clusters."""
    clusters = result(atlas, "clusters")
    return None if clusters is None else np.asarray(clusters.labels, dtype=np.int64)


def concept_labels(atlas: "Atlas") -> tuple[np.ndarray | None, list[str], str]:
    """(per-neuron concept index with -1 for none, concept names, where they come from): the
    dissection's label of each detector, else the concept most of a neuron's top images hold."""
    dissection = result(atlas, "dissection")
    if dissection is not None:
        raw = np.asarray(dissection.neuron_columns(atlas)["concept"]).astype(str)
        names = sorted(set(raw[raw != ""].tolist()))
        lookup = {name: i for i, name in enumerate(names)}
        labels = np.array([lookup.get(v, -1) for v in raw], np.int32)
        return labels, names, "dissection: concept with the best IoU"
    exemplar = result(atlas, "exemplar_concepts")
    if exemplar is not None and exemplar.shares.shape[1]:
        shares = exemplar.shares.to_numpy(np.float64)
        labels = np.where(shares.max(1) > 0, shares.argmax(1), -1).astype(np.int32)
        return labels, [str(c) for c in exemplar.shares.columns], \
            "exemplar concepts: the concept most of the top images hold"
    return None, [], ""


def embedding_layout(atlas: "Atlas"):
    """(xy (neurons, 2), snapshot xy (S, neurons, 2), snapshot labels) of the neuron embedding,
    or None without one."""
    embedding = result(atlas, "embedding")
    if embedding is None:
        return None
    labels = [f"epoch {e}" for e in embedding.epochs]
    return (np.asarray(embedding.xy, np.float32), np.asarray(embedding.snapshot_xy, np.float32),
            labels)


def neighbours(atlas: "Atlas", n: int, limit: int) -> np.ndarray | None:
    """(neurons, n) nearest neighbours in the embedding, for atlases of at most ``limit``
    neurons; None otherwise or without an embedding."""
    embedding = result(atlas, "embedding")
    if embedding is None or n < 1 or len(atlas.neuron_ids) > limit:
        return None
    return embedding.neighbours(n)


def class_layouts(atlas: "Atlas"):
    """(xy (layers, classes, 2), layer names) of Summit's class embedding, or None."""
    embedding = result(atlas, "class_embedding")
    if embedding is None:
        return None
    return np.asarray(embedding.xy, np.float32), [str(n) for n in embedding.layers]


def class_similarity(atlas: "Atlas") -> np.ndarray | None:
    """(classes, classes) class similarity of the class embedding, or None."""
    embedding = result(atlas, "class_embedding")
    return None if embedding is None else np.asarray(embedding.similarity, np.float32)


def graphs(atlas: "Atlas") -> tuple[dict, list[str]]:
    """({kind: {class name: graph JSON}} of the graph results there are, notes for the kinds
    missing)."""
    found, notes = {}, []
    for kind, name in GRAPHS.items():
        graph = result(atlas, name)
        if graph is not None and graph.graphs:
            found[kind] = graph.graphs
        else:
            notes.append(note(name))
    return found, notes
