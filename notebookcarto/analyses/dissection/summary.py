"""A dissection's summary chart, and names for neuron clusters from their members' labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .result import Dissection

__all__ = ["cluster_concepts", "summary_figure"]


def cluster_concepts(neurons: pd.DataFrame) -> pd.DataFrame:
    """Name each cluster after its members' dissection labels: the concept most of its detector
    members carry (ties: the larger summed IoU).

    ``neurons``: a table with the columns ``cluster``, ``concept``, ``category`` and ``iou``, such
    as ``atlas.neurons`` of an atlas with clusters and a dissection attached. Returns one row per
    cluster (index ``cluster``): ``concept`` and ``category`` ("" when no member is a detector),
    ``count`` (members carrying the concept) and ``members``."""
    missing = [c for c in ("cluster", "concept", "category", "iou") if c not in neurons]
    if missing:
        raise KeyError(f"the table lacks the columns {missing}: attach clusters "
                       "(analyses.cluster_neurons) and a dissection (analyses.dissect) to the "
                       "atlas and pass atlas.neurons")
    cluster = neurons["cluster"].to_numpy().astype(np.int64)
    concept = neurons["concept"].to_numpy().astype(str)
    category = neurons["category"].to_numpy().astype(str)
    iou = np.nan_to_num(neurons["iou"].to_numpy(dtype=np.float64))
    rows = []
    for cid in np.unique(cluster[cluster >= 0]):
        members = np.flatnonzero(cluster == cid)
        labelled = members[concept[members] != ""]
        entry = {"cluster": int(cid), "concept": "", "category": "", "count": 0,
                 "members": int(len(members))}
        if len(labelled):
            stats = {}
            for m in labelled:
                n, s = stats.get(concept[m], (0, 0.0))
                stats[concept[m]] = (n + 1, s + iou[m])
            top = max(stats, key=lambda c: (stats[c][0], stats[c][1]))
            first = labelled[concept[labelled] == top][0]
            entry.update(concept=top, category=str(category[first]), count=stats[top][0])
        rows.append(entry)
    columns = ["cluster", "concept", "category", "count", "members"]
    return pd.DataFrame(rows, columns=columns).set_index("cluster")


def summary_figure(source, value: str = "detectors"):
    """A plotly bar chart of the per-layer summary, stacked by category.

    ``source``: a ``Dissection``, an Atlas with one attached, or a ``summary()`` DataFrame.
    ``value``: "detectors" or "unique_concepts".
    """
    import plotly.graph_objects as go

    if value not in ("detectors", "unique_concepts"):
        raise ValueError(f"value must be 'detectors' or 'unique_concepts', got {value!r}")
    if hasattr(source, "get") and hasattr(source, "neuron_ids"):  # an Atlas
        source = source.get(Dissection)
    if isinstance(source, Dissection):
        table, threshold = source.summary(), source.iou_threshold
    elif isinstance(source, pd.DataFrame):
        table, threshold = source, None
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
