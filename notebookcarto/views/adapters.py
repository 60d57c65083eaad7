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
           "confusion", "dissection_masks", "dissection_summary", "dissection_units",
           "embedding_layout", "explanation", "feature_visualizations", "graph_json", "graphs",
           "influence_pair", "neighbours", "note", "patch_images", "patches", "require",
           "result", "sag", "stream_labels", "xnn"]

# graph kinds the graph view shows, and the results that hold them
GRAPHS = {"attribution": "attribution_graphs", "cluster": "cluster_graphs"}


def note(name: str) -> str:
    """What to run for a result the atlas lacks."""
    return f"no {name!r} result in this atlas: run atlas.attach({SCHEMAS[name].call})"


def result(atlas: "Atlas", name: str):
    """The attached result of section ``name``, or None."""
    return atlas.get(name) if atlas.has(name) else None


def require(atlas: "Atlas", name: str):
    """The attached result of section ``name``; a ``KeyError`` that says which call makes it."""
    found = result(atlas, name)
    if found is None:
        raise KeyError(note(name))
    return found


def patches(atlas: "Atlas"):
    """The ``Patches`` result (patches, heatmaps, values: one row per neuron), or None."""
    return result(atlas, "patches")


def patch_images(atlas: "Atlas") -> np.ndarray | None:
    """The image id of each example patch, int32 (neurons, n_patches) (-1: none), or None
    without patches."""
    examples = patches(atlas)
    return None if examples is None else np.asarray(examples.images, np.int32)


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


def stream_labels(atlas: "Atlas") -> tuple[np.ndarray, list[str]] | None:
    """(per-neuron index into the names with -1 for none, the distinct residual stream names,
    sorted) from the ``stream`` column of ``atlas.neurons``; None without that column or with
    no neuron on a stream."""
    table = atlas.neurons
    if "stream" not in table:
        return None
    raw = table["stream"].fillna("").astype(str).to_numpy()
    names, index = np.unique(raw, return_inverse=True)
    if names.size and names[0] == "":  # "" sorts first: no stream -> -1
        names, index = names[1:], index - 1
    if not names.size:
        return None
    return index.astype(np.int32), names.tolist()


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


def _number(v, default=0.0) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def graph_json(graph: dict) -> dict:
    """The documented fields of a class graph (docs/atlas-sections.md) as plain JSON. ``shown``
    is true where missing (graphs saved before it existed show everything); ``x_all`` is kept
    where the analysis laid out all nodes."""
    nodes = []
    for node in graph.get("nodes", []):
        item = {"id": str(node["id"]), "layer": str(node.get("layer", "")),
                "count": _number(node.get("count")), "pagerank": _number(node.get("pagerank")),
                "members": [str(m) for m in node.get("members", [node["id"]])],
                "top_inputs": [str(m) for m in node.get("top_inputs", [])],
                "shown": bool(node.get("shown", True))}
        if "x" in node and "y" in node:
            item["x"], item["y"] = _number(node["x"]), _number(node["y"])
        if "x_all" in node:
            item["x_all"] = _number(node["x_all"])
        nodes.append(item)
    edges = []
    for e in graph.get("edges", []):
        edge = {"source": str(e["source"]), "target": str(e["target"]),
                "weight": _number(e.get("weight"), 1.0), "shown": bool(e.get("shown", True))}
        if "kind" in e:  # cluster graphs: "influence" or "coactivation"
            edge["kind"] = str(e["kind"])
        edges.append(edge)
    return {"class": str(graph.get("class", "")),
            "layers": [str(x) for x in graph.get("layers", [])], "nodes": nodes, "edges": edges}


def graphs(atlas: "Atlas") -> tuple[dict, list[str]]:
    """({kind: {class name: graph JSON (``graph_json``)}} of the graph results there are, notes
    for the kinds missing)."""
    found, notes = {}, []
    for kind, name in GRAPHS.items():
        graph = result(atlas, name)
        if graph is not None and graph.graphs:
            found[kind] = {str(c): graph_json(g) for c, g in graph.graphs.items()}
        else:
            notes.append(note(name))
    return found, notes


def feature_visualizations(atlas: "Atlas"):
    """The feature visualisations as (keys, labels, images uint8 (targets, H, W, 3), method),
    or None without them. Keys are the ids of neurons and graph nodes (``"layer:channel"``,
    ``"class:<k>"``, ``"cluster:<n>"`` or ``"cluster:<n>@<layer>"``)."""
    found = result(atlas, "feature_visualizations")
    if found is None or not len(found.targets):
        return None
    return ([str(k) for k in found.targets], [str(v) for v in found.labels],
            np.asarray(found.images, np.uint8), str(found.method))


# ---- dissection ------------------------------------------------------------------------------

def dissection_units(atlas: "Atlas") -> dict | None:
    """Network Dissection's label of every neuron, or None without a dissection: ``concept``
    and ``category`` (int32 indices into ``concepts`` / ``categories``, -1 where the unit
    overlaps no concept or its layer was not dissected), ``iou`` (float32, NaN where not
    dissected), ``detector`` (uint8, IoU above the threshold), ``threshold`` and ``layers``
    (the dissected ones)."""
    dissection = result(atlas, "dissection")
    if dissection is None:
        return None
    units = dissection.units()
    n = len(atlas.neuron_ids)
    rows = atlas.neuron_index(list(units.index))
    concepts, categories = list(dissection.concepts), list(dissection.categories)
    lookup = {name: i for i, name in enumerate(concepts)}
    groups = {name: i for i, name in enumerate(categories)}
    concept = np.full(n, -1, np.int32)
    category = np.full(n, -1, np.int32)
    iou = np.full(n, np.nan, np.float32)
    detector = np.zeros(n, np.uint8)
    concept[rows] = [lookup.get(c, -1) for c in units["concept"]]
    category[rows] = [groups.get(c, -1) for c in units["category"]]
    iou[rows] = units["iou"].to_numpy(np.float32)
    detector[rows] = units["detector"].to_numpy(np.uint8)
    return {"concept": concept, "category": category, "iou": iou, "detector": detector,
            "concepts": [str(c) for c in concepts], "categories": [str(c) for c in categories],
            "threshold": float(dissection.iou_threshold), "layers": list(dissection.layers)}


def dissection_summary(atlas: "Atlas") -> list[dict] | None:
    """The dissection's summary, one JSON-ready row per layer (units, detectors,
    unique_concepts, and per category ``<category>_detectors`` / ``<category>_unique``), or
    None without a dissection."""
    dissection = result(atlas, "dissection")
    if dissection is None:
        return None
    table = dissection.summary()
    return [{"layer": str(layer), **{str(k): int(v) for k, v in row.items()}}
            for layer, row in table.iterrows()]


def dissection_masks(atlas: "Atlas"):
    """The dissection gallery as (overlays (units, n, H, W, 3) uint8, image ids (units, n)
    int64 with -1 for none, neuron indices (units,)) of the units it holds, or None."""
    gallery = result(atlas, "dissection_gallery")
    if gallery is None:
        return None
    images, ids, neurons = [], [], []
    offsets = atlas.layer_offsets
    for layer in gallery.layers:
        if layer not in offsets:
            continue
        block = np.asarray(gallery.images[layer], np.uint8)
        images.append(block)
        ids.append(np.asarray(gallery.image_ids[layer], np.int64))
        neurons.append(offsets[layer] + np.arange(len(block)))
    if not images:
        return None
    return np.concatenate(images), np.concatenate(ids), np.concatenate(neurons)


# ---- explanations of single predictions -------------------------------------------------------

def explanation(atlas: "Atlas") -> dict | None:
    """The ``Explanation`` as plain arrays, one row per explained image, or None without one
    (or with no image): ``image_ids``, ``targets``, ``labels`` (-1: unknown), ``predictions``
    (int32 (n,)), ``probabilities`` (float32 (n,)), ``images`` (uint8 (n, H, W, 3)),
    ``methods`` and ``mask_methods`` (names), ``heatmaps`` (one float32 (n, h, w) per method,
    higher = more salient), ``fractions`` (float32 (k,)), ``deletion`` / ``insertion``
    (float32 (methods, n, k)), ``deletion_auc`` / ``insertion_auc`` (float32 (methods, n)),
    and ``units`` (None without them): ``layer``, ``neurons`` (int32 (n, u) indices in
    ``atlas.neuron_ids``, -1 for none), ``contributions``, ``coverage`` (float32 (n, u), NaN:
    no mask), ``maps`` (float32 (n, u, h, w); None for layers without positions),
    ``labels`` and ``cluster_labels`` (lists of strings, "" for none) and ``coverage_of`` (the
    method whose mask the coverage measures);
    ``patch_rows`` (int32 (neurons, n_patches), or None without patches): the row of each
    example patch's image in these arrays, -1 where that image was not explained;
    ``sag`` and ``xnn`` (``sag(atlas)``, ``xnn(atlas)``; None without them)."""
    found = result(atlas, "explanation")
    if found is None or not len(found):
        return None
    methods = [str(m) for m in found.methods]
    out = {"image_ids": np.asarray(found.image_ids, np.int32),
           "targets": np.asarray(found.targets, np.int32),
           "labels": np.asarray(found.labels, np.int32),
           "predictions": np.asarray(found.predictions, np.int32),
           "probabilities": np.asarray(found.probabilities, np.float32),
           "images": np.asarray(found.images, np.uint8), "methods": methods,
           "mask_methods": [str(m) for m in found.mask_methods],
           "heatmaps": [np.asarray(found.saliency[m], np.float32) for m in methods],
           "fractions": np.asarray(found.fractions, np.float32), "units": None,
           "patch_rows": None, "sag": sag(atlas), "xnn": xnn(atlas)}
    examples = patches(atlas)
    if examples is not None:
        # each patch's image id -> its row here, by a search in the sorted explained ids
        ids, images = np.asarray(found.image_ids), np.asarray(examples.images)
        order = np.argsort(ids)
        at = np.minimum(np.searchsorted(ids[order], images), len(ids) - 1)
        out["patch_rows"] = np.where(ids[order][at] == images, order[at], -1).astype(np.int32)
    for name in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
        out[name] = np.stack([np.asarray(getattr(found, name)[m], np.float32) for m in methods])
    units = found.units
    if units is not None:
        lookup = {nid: i for i, nid in enumerate(atlas.neuron_ids)}
        neurons = np.array([[lookup.get(str(v), -1) for v in row] for row in units.neurons],
                           np.int32).reshape(units.channels.shape)
        neurons[np.asarray(units.channels) < 0] = -1
        maps = np.asarray(units.maps, np.float32)
        out["units"] = {"layer": str(units.layer), "neurons": neurons,
                        "contributions": np.asarray(units.contributions, np.float32),
                        "coverage": np.asarray(units.coverage, np.float32),
                        "maps": maps if maps.ndim == 4 else None,
                        "labels": [[str(v) for v in row] for row in units.labels],
                        "cluster_labels": [[str(v) for v in row] for row in units.cluster_labels],
                        "coverage_of": str(found.coverage_of or "")}
    return out


def sag(atlas: "Atlas") -> dict | None:
    """The ``SAG`` as plain arrays, or None without one: ``image_ids`` (int32 (s,)),
    ``probabilities`` (float32 (s,), the target's on the whole image), ``grid``, and per node
    ``node_image`` (int32 (N,) rows of those), ``node_patches`` (uint8 (N, grid * grid), 1:
    shown), ``node_probability`` (float32 (N,)), ``positions`` (float32 (N, 2), x and y in
    [0, 1]); ``edges`` (int32 (E, 3): parent, child, the patch the child lacks)."""
    found = result(atlas, "sag")
    if found is None:
        return None
    edges = np.stack([found.edge_parent, found.edge_child, found.edge_patch], 1)
    return {"image_ids": np.asarray(found.image_ids, np.int32),
            "probabilities": np.asarray(found.probabilities, np.float32),
            "grid": int(found.grid), "node_image": np.asarray(found.node_image, np.int32),
            "node_patches": np.asarray(found.node_patches, np.uint8),
            "node_probability": np.asarray(found.node_probability, np.float32),
            "positions": np.asarray(found.positions, np.float32).reshape(-1, 2),
            "edges": edges.astype(np.int32).reshape(-1, 3)}


def xnn(atlas: "Atlas") -> dict | None:
    """The ``XNN`` as plain arrays, or None without one: ``layer``, ``classes`` (int32 (m,)),
    ``image_ids`` (int32 (n,)) and ``images`` (uint8 (n, H, W, 3)) of the shown images,
    ``heatmaps`` (float32 (m, n, k, h, w)), ``neurons`` (int32 (m, k, t) indices in
    ``atlas.neuron_ids``, -1 for one the atlas lacks), ``weights`` (float32 (m, k, t)),
    ``labels`` (nested lists (m, k, t) of strings, "" for none) and ``r2`` (float32 (m,), the
    faithfulness R^2)."""
    found = result(atlas, "xnn")
    if found is None:
        return None
    lookup = {nid: i for i, nid in enumerate(atlas.neuron_ids)}
    neurons = np.asarray(found.neurons)
    return {"layer": str(found.layer), "classes": np.asarray(found.classes, np.int32),
            "image_ids": np.asarray(found.image_ids, np.int32),
            "images": np.asarray(found.images, np.uint8),
            "heatmaps": np.asarray(found.heatmaps, np.float32),
            "neurons": np.array([lookup.get(str(v), -1) for v in neurons.reshape(-1)],
                                np.int32).reshape(neurons.shape),
            "weights": np.asarray(found.neuron_weights, np.float32),
            "labels": np.asarray(found.neuron_labels).astype(str).tolist(),
            "r2": np.asarray(found.faithfulness_r2, np.float32)}


# ---- statistics for figures --------------------------------------------------------------------

def influence_pair(atlas: "Atlas", layer: str) -> tuple[str, np.ndarray]:
    """(the layer feeding ``layer``, Summit's I for that pair: (classes, C_layer, C_earlier)).
    ``KeyError`` without influence counts or without a pair that ends at ``layer``."""
    influence = require(atlas, "influence")
    earlier = [e for e, later in influence.pairs if later == layer]
    if not earlier:
        ends = sorted({later for _, later in influence.pairs})
        raise KeyError(f"no influence counts end at layer {layer!r}: they end at {ends}")
    return earlier[0], np.asarray(influence.of(earlier[0], layer))


def confusion(atlas: "Atlas") -> np.ndarray:
    """(classes, classes) int64 confusion counts (rows true, columns predicted); ``ValueError``
    when the pass recorded no accuracy (no labels or no logits)."""
    accuracy = atlas.stats.accuracy
    if accuracy is None:
        raise ValueError("this atlas has no confusion matrix: build it from a loader with labels "
                         "and a model whose output holds class logits")
    return accuracy.confusion.detach().cpu().numpy().astype(np.int64)
