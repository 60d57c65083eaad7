"""A dissection in the Atlas: per-neuron columns, cluster names and the summary chart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .result import Dissection


def attach_dissection(atlas, result: Dissection) -> dict:
    """Store ``result`` as the atlas section "dissection" and return it.

    Arrays (one value per neuron, in ``atlas.neuron_ids`` order; units of layers that were not
    dissected get "" and NaN): ``concept`` and ``category`` (the best concept of detectors, ""
    for other units), ``iou`` (best IoU), ``best_concept`` (the best concept of every unit),
    ``threshold``. Meta: ``params``, ``concepts``, ``categories`` (the category of each
    concept), ``category_names``, ``layers``, ``summary`` (per layer: units, detectors, unique
    concepts, per category) and ``neuron_columns``. When the atlas has a "clusters" section,
    clusters are named with ``label_clusters``.
    """
    ids = atlas.neuron_ids
    position = {n: i for i, n in enumerate(ids)}
    concept = np.full(len(ids), "", dtype=object)
    category = np.full(len(ids), "", dtype=object)
    best = np.full(len(ids), "", dtype=object)
    iou = np.full(len(ids), np.nan)
    threshold = np.full(len(ids), np.nan, dtype=np.float32)
    units = result.units()
    for layer in result.layers:
        if layer not in atlas.layers:
            raise KeyError(f"dissected layer {layer!r} is not in the atlas (layers "
                           f"{atlas.layers}): dissect the atlas's layers")
        expected = atlas.stats.layers[layer].channels
        if len(result.thresholds[layer]) != expected:
            raise ValueError(f"layer {layer!r}: the atlas has {expected} channels, the "
                             f"dissection {len(result.thresholds[layer])}")
    rows = np.array([position[n] for n in units.index])
    detector = units["detector"].to_numpy()
    concept[rows] = np.where(detector, units["concept"], "")
    category[rows] = np.where(detector, units["category"], "")
    best[rows] = units["concept"].to_numpy()
    iou[rows] = units["iou"].to_numpy()
    threshold[rows] = units["threshold"].to_numpy()
    section = {
        "meta": {"params": dict(result.params), "concepts": list(result.concepts),
                 "categories": list(result.concept_categories),
                 "category_names": list(result.categories), "layers": list(result.layers),
                 "summary": result.summary_records(),
                 "neuron_columns": ["concept", "category", "iou"]},
        "arrays": {"concept": concept.astype(str), "category": category.astype(str),
                   "iou": iou, "best_concept": best.astype(str), "threshold": threshold},
    }
    atlas.sections["dissection"] = section
    if "clusters" in atlas.sections:
        label_clusters(atlas)
    return section


def label_clusters(atlas) -> dict:
    """Name each cluster (atlas section "clusters") after its members' dissection labels: the
    concept most of its detector members carry (ties: the larger summed IoU). Stores
    ``meta["cluster_concepts"]`` = {cluster id (str): {"concept", "category", "count",
    "members"}} ("" when no member is a detector) and the array ``cluster_concept`` (each
    neuron's cluster name, "" for none) in the "dissection" section, and returns the dict."""
    if "dissection" not in atlas.sections:
        raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
    if "clusters" not in atlas.sections:
        raise KeyError("the atlas has no 'clusters' section: cluster the neurons first")
    section = atlas.sections["dissection"]
    arrays = section["arrays"]
    cluster = np.asarray(atlas.sections["clusters"]["arrays"]["cluster"]).astype(np.int64)
    concept = np.asarray(arrays["concept"]).astype(str)
    category = np.asarray(arrays["category"]).astype(str)
    iou = np.nan_to_num(np.asarray(arrays["iou"], dtype=np.float64))
    if len(cluster) != len(concept):
        raise ValueError(f"the clusters section has {len(cluster)} neurons, the dissection "
                         f"{len(concept)}")
    names: dict[str, dict] = {}
    per_neuron = np.full(len(cluster), "", dtype=object)
    for cid in np.unique(cluster[cluster >= 0]):
        members = np.flatnonzero(cluster == cid)
        labelled = members[concept[members] != ""]
        entry = {"concept": "", "category": "", "count": 0, "members": int(len(members))}
        if len(labelled):
            stats = {}
            for m in labelled:
                n, s = stats.get(concept[m], (0, 0.0))
                stats[concept[m]] = (n + 1, s + iou[m])
            top = max(stats, key=lambda c: (stats[c][0], stats[c][1]))
            first = labelled[concept[labelled] == top][0]
            entry.update(concept=top, category=str(category[first]), count=stats[top][0])
        names[str(int(cid))] = entry
        per_neuron[members] = entry["concept"]
    section["meta"]["cluster_concepts"] = names
    arrays["cluster_concept"] = per_neuron.astype(str)
    return names


def summary_figure(source, value: str = "detectors"):
    """A plotly bar chart of the per-layer summary, stacked by category.

    ``source``: a ``Dissection``, an Atlas with a "dissection" section, or a ``summary()``
    DataFrame. ``value``: "detectors" or "unique_concepts".
    """
    import plotly.graph_objects as go

    if value not in ("detectors", "unique_concepts"):
        raise ValueError(f"value must be 'detectors' or 'unique_concepts', got {value!r}")
    if isinstance(source, Dissection):
        table, threshold = source.summary(), source.iou_threshold
    elif isinstance(source, pd.DataFrame):
        table, threshold = source, None
    elif hasattr(source, "sections"):
        if "dissection" not in source.sections:
            raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
        meta = source.sections["dissection"]["meta"]
        table = _summary_table(meta["summary"])
        threshold = meta["params"].get("iou_threshold")
    else:
        raise TypeError(f"expected a Dissection, an Atlas or a summary DataFrame, got "
                        f"{type(source).__name__}")
    suffix = "_detectors" if value == "detectors" else "_unique"
    categories = [c[: -len(suffix)] for c in table.columns if c.endswith(suffix)]
    fig = go.Figure([go.Bar(name=g, x=list(table.index), y=table[f"{g}{suffix}"].tolist())
                     for g in categories])
    what = "detectors" if value == "detectors" else "unique concepts of detectors"
    title = f"Network dissection: {what} per layer"
    if threshold is not None:
        title += f" (IoU > {threshold:g})"
    fig.update_layout(barmode="stack", title=title, xaxis_title="layer",
                      yaxis_title=value.replace("_", " "), legend_title="category")
    return fig


def _summary_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: r[k] for k in ("layer", "units", "detectors", "unique_concepts")}
        for g, v in r["per_category"].items():
            row[f"{g}_detectors"], row[f"{g}_unique"] = v["detectors"], v["unique_concepts"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


