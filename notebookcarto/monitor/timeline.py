"""The timeline of a series: what changed in the map from snapshot to snapshot.

``Timeline(path)`` reads a series snapshot by snapshot (one atlas in memory at a time) and keeps
per snapshot only what the curves need: per-class accuracy, each neuron's top-set Jaccard with
the snapshot before, each class's top neurons in Summit's A, the clusters' labels and the
dissection's detectors per layer. ``refresh()`` reads the snapshots written since, so a view
can follow a training run that is still going. ``atlas(step)`` loads any snapshot whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analyses import Clusters, Dissection
from ..analyses.clustering import exemplar_sets
from .drift import set_jaccard, settled_steps, turnover
from .series import Series

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["CLASS_NEURONS", "Timeline"]

CLASS_NEURONS = 10  # top neurons of a class (by A) kept per snapshot


def _nan_list(values) -> list:
    return [None if (isinstance(v, float) and math.isnan(v)) else v
            for v in np.asarray(values, dtype=np.float64).tolist()]


class _Row:
    """What the timeline keeps of one snapshot."""

    __slots__ = ("accuracy", "alive", "class_counts", "class_top", "dissection", "jaccard",
                 "labels", "overall", "seconds", "step")


class Timeline:
    """Curves over the snapshots of a series (a folder written by a ``Monitor``).

    Everything is indexed by step: ``steps``; ``accuracy`` (steps x classes) and
    ``overall_accuracy``; ``jaccard`` (steps x neurons: each neuron's top-image set against the
    snapshot before, NaN at the first one and for neurons that fired on no probe image either
    time), ``drift`` (1 - jaccard) and ``layer_drift`` (its mean per layer); ``settled()`` (from
    which step each neuron's top set stays put); ``class_neurons(cls)`` (a class's top neurons in
    A per step) and ``aggregation(cls)`` (its row of A over steps, read from the snapshots);
    ``clusters`` (their number per step) and ``turnover(classes)``; ``detectors`` and
    ``unique_concepts`` (steps x layers) when the monitor dissected; ``atlas(step)`` (any
    snapshot, whole); ``to_dict()`` (all of it, JSON-ready, for a view or an export) and
    ``plot`` (plotly figures).
    """

    def __init__(self, path, device=None, *, empty_ok: bool = False):
        """``empty_ok``: also open a series whose first snapshot is not written yet (a live view
        made before training starts); otherwise a folder without a series raises."""
        self.series = Series(path)
        self.manifest = ({} if empty_ok and not self.series.has_manifest()
                         else self.series.read_manifest())
        self.device = device
        self._reset()
        self.refresh()

    def _reset(self):
        self._rows: list[_Row] = []
        self._previous_sets = None
        self.neuron_ids: list[str] = []
        self.layers: list[str] = list(self.manifest.get("layers") or [])
        self.class_names: list[str] = list(self.manifest.get("class_names") or [])
        self.n_images = int(self.manifest.get("probe", {}).get("images", 0))
        self.concepts: list[str] = []

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> list[int]:
        """Read the snapshots written since the last read; returns their steps. When the series
        was rewound (a run resumed from an earlier checkpoint) the timeline is read anew."""
        if not self.manifest and self.series.has_manifest():
            self.manifest = self.series.read_manifest()
            self._reset()
        for attempt in range(3):
            on_disk = self.series.steps()
            known = self.steps.tolist()
            if on_disk[:len(known)] != known:
                self._reset()
                known = []
            new = on_disk[len(known):]
            try:
                for step in new:
                    self._add(step, self.series.load(step, device=self.device))
                return new
            except (KeyError, FileNotFoundError):  # rewound while being read: read anew
                if attempt == 2:
                    raise
                self._reset()
        return []

    def _add(self, step: int, atlas: "Atlas") -> None:
        if not self._rows:
            self.neuron_ids = atlas.neuron_ids
            self.layers = atlas.layers
            self.class_names = list(atlas.class_names)
            self.n_images = atlas.stats.n_images
        elif atlas.neuron_ids != self.neuron_ids:
            raise ValueError(f"the snapshot of step {step} maps other neurons than the first "
                             "snapshot: a series follows one set of layers")
        row = _Row()
        row.step = step
        row.accuracy, row.overall = _accuracy(atlas)
        sets = exemplar_sets(atlas).numpy()
        row.alive = (sets >= 0).any(1)
        row.jaccard = (np.full(len(sets), np.nan, np.float32) if self._previous_sets is None
                       else set_jaccard(self._previous_sets, sets, self.n_images)
                       .astype(np.float32))
        self._previous_sets = sets
        row.class_top, row.class_counts = _class_top(atlas)
        row.dissection = None
        if atlas.has(Dissection):
            dissection = atlas.get(Dissection)
            row.dissection = dissection.summary()
            self.concepts = list(dissection.concepts)
        row.labels = (np.asarray(atlas.get(Clusters).labels, np.int32) if atlas.has(Clusters)
                      else None)
        row.seconds = dict(atlas.data_info.get("monitor", {}).get("seconds", {}))
        self._rows.append(row)

    # -- steps and accuracy -------------------------------------------------------------------
    @property
    def steps(self) -> np.ndarray:
        return np.array([r.step for r in self._rows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def _index(self, name="step") -> pd.Index:
        return pd.Index(self.steps, name=name)

    @property
    def accuracy(self) -> pd.DataFrame:
        """Per-class accuracy on the probe (steps x class names); NaN without labels."""
        values = (np.stack([r.accuracy for r in self._rows]) if self._rows
                  else np.zeros((0, len(self.class_names))))
        return pd.DataFrame(values, index=self._index(),
                            columns=pd.Index(self.class_names, name="class"))

    @property
    def overall_accuracy(self) -> pd.Series:
        """Accuracy over all probe images, per step."""
        return pd.Series([r.overall for r in self._rows], index=self._index(), name="accuracy",
                         dtype=float)

    # -- neurons ---------------------------------------------------------------------------------
    @property
    def jaccard(self) -> pd.DataFrame:
        """Each neuron's top-set Jaccard with the snapshot before (steps x neuron ids)."""
        values = (np.stack([r.jaccard for r in self._rows]) if self._rows
                  else np.zeros((0, len(self.neuron_ids)), np.float32))
        return pd.DataFrame(values, index=self._index(),
                            columns=pd.Index(self.neuron_ids, name="neuron"))

    @property
    def drift(self) -> pd.DataFrame:
        """1 - ``jaccard``: 0 where a neuron's top images stayed, 1 where all changed."""
        return 1.0 - self.jaccard

    @property
    def layer_drift(self) -> pd.DataFrame:
        """Mean ``drift`` per layer (steps x layers), over the neurons that fired."""
        drift = self.drift
        layer_of = [n.rpartition(":")[0] for n in self.neuron_ids]
        with np.errstate(all="ignore"):
            frame = drift.T.groupby(layer_of, sort=False).mean().T
        frame.columns.name = "layer"
        return frame.reindex(columns=self.layers)

    @property
    def alive(self) -> pd.DataFrame:
        """Whether each neuron fired on any probe image (steps x neuron ids)."""
        values = (np.stack([r.alive for r in self._rows]) if self._rows
                  else np.zeros((0, len(self.neuron_ids)), bool))
        return pd.DataFrame(values, index=self._index(),
                            columns=pd.Index(self.neuron_ids, name="neuron"))

    def settled(self, threshold: float = 0.8) -> pd.Series:
        """Per neuron, the step from which its top set stays put (a Jaccard of at least
        ``threshold`` with every snapshot before it, to the last one); NaN if it has not
        settled or fires on no probe image at the last snapshot."""
        values = settled_steps(self.steps, self.jaccard.to_numpy(np.float64),
                               self.alive.to_numpy(), threshold)
        return pd.Series(values, index=pd.Index(self.neuron_ids, name="neuron"), name="settled")

    # -- classes -------------------------------------------------------------------------------
    def class_neurons(self, cls) -> pd.DataFrame:
        """A class's top neurons in Summit's A per step: one row per (step, rank) with the
        neuron id and its count."""
        k = self._class_index(cls)
        rows = []
        for r in self._rows:
            for rank, (pos, count) in enumerate(zip(r.class_top[k], r.class_counts[k])):
                if pos >= 0:
                    rows.append((r.step, rank, self.neuron_ids[pos], int(count)))
        return pd.DataFrame(rows, columns=["step", "rank", "neuron", "count"]).set_index(
            ["step", "rank"])

    def aggregation(self, cls, layer: str | None = None) -> pd.DataFrame:
        """A class's row of Summit's A over steps (steps x neurons of ``layer`` or of all
        layers): image counts. Reads every snapshot again, one at a time."""
        k = self._class_index(cls)
        if layer is not None and layer not in self.layers:
            raise KeyError(f"unknown layer {layer!r}: the series maps {self.layers}")
        rows = []
        for step in self.steps.tolist():
            atlas = self.series.load(step)
            layers = [layer] if layer else atlas.layers
            rows.append(np.concatenate([atlas.aggregation(name).to_numpy()[k] for name in layers]))
        columns = [n for n in self.neuron_ids if layer is None or n.rpartition(":")[0] == layer]
        values = np.stack(rows) if rows else np.zeros((0, len(columns)), np.int64)
        return pd.DataFrame(values, index=self._index(), columns=pd.Index(columns, name="neuron"))

    def _class_index(self, cls) -> int:
        if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool) \
                and 0 <= cls < len(self.class_names):
            return int(cls)
        if isinstance(cls, str) and cls in self.class_names:
            return self.class_names.index(cls)
        raise KeyError(f"unknown class {cls!r}: give an index or one of {self.class_names[:10]}")

    # -- clusters ------------------------------------------------------------------------------
    @property
    def clusters(self) -> pd.DataFrame | None:
        """Per step: ``clusters`` (how many) and ``clustered`` (neurons in one); None when the
        monitor did not cluster."""
        if not any(r.labels is not None for r in self._rows):
            return None
        rows = [(int(r.labels.max()) + 1 if r.labels.size else 0, int((r.labels >= 0).sum()))
                if r.labels is not None else (np.nan, np.nan) for r in self._rows]
        return pd.DataFrame(rows, index=self._index(), columns=["clusters", "clustered"])

    def turnover(self, classes=None) -> pd.DataFrame | None:
        """Per step and class, how much the clusters holding the class's top neurons (in A)
        changed since the snapshot before: 0 none, 1 all new (``drift.turnover``). NaN at the
        first step and where none of the class's neurons is clustered; None when the monitor
        did not cluster."""
        if self.clusters is None:
            return None
        chosen = range(len(self.class_names)) if classes is None else classes
        ks = [self._class_index(c) for c in chosen]
        values = np.full((len(self._rows), len(ks)), np.nan)
        for i in range(1, len(self._rows)):
            before, after = self._rows[i - 1].labels, self._rows[i].labels
            if before is None or after is None:
                continue
            for j, k in enumerate(ks):
                top = self._rows[i].class_top[k]
                values[i, j] = turnover(before, after, top[top >= 0])
        return pd.DataFrame(values, index=self._index(),
                            columns=pd.Index([self.class_names[k] for k in ks], name="class"))

    # -- dissection ----------------------------------------------------------------------------
    def _dissection_column(self, column: str) -> pd.DataFrame | None:
        if not any(r.dissection is not None for r in self._rows):
            return None
        frames = {r.step: (r.dissection[column] if r.dissection is not None
                           and column in r.dissection else pd.Series(dtype=float))
                  for r in self._rows}
        frame = pd.DataFrame(frames).T.reindex(self.steps)
        frame.index.name, frame.columns.name = "step", "layer"
        return frame

    @property
    def detectors(self) -> pd.DataFrame | None:
        """Network Dissection's detectors (units whose best IoU passes the threshold) per
        dissected layer and step; None when the monitor did not dissect."""
        return self._dissection_column("detectors")

    @property
    def unique_concepts(self) -> pd.DataFrame | None:
        """The number of distinct concepts the detectors of each layer detect, per step."""
        return self._dissection_column("unique_concepts")

    def detectors_by_category(self) -> pd.DataFrame | None:
        """Detectors summed over the dissected layers per concept category (colour, texture,
        ...), per step."""
        if not any(r.dissection is not None for r in self._rows):
            return None
        rows = {}
        for r in self._rows:
            if r.dissection is None:
                continue
            cats = [c for c in r.dissection.columns if c.endswith("_detectors")]
            rows[r.step] = {c.removesuffix("_detectors"): int(r.dissection[c].sum())
                            for c in cats}
        frame = pd.DataFrame(rows).T.reindex(self.steps)
        frame.index.name, frame.columns.name = "step", "category"
        return frame

    # -- snapshots and export --------------------------------------------------------------------
    def atlas(self, step: int) -> "Atlas":
        """The snapshot of ``step`` as an Atlas (``.show()`` opens the Explorer on it)."""
        return self.series.load(int(step), device=self.device)

    @property
    def seconds(self) -> pd.DataFrame:
        """What each observation cost (seconds per stage), per step."""
        return pd.DataFrame([r.seconds for r in self._rows], index=self._index())

    def to_dict(self, neurons: bool = True) -> dict:
        """The whole timeline, JSON-ready (NaN as null): steps, class names, layers, neuron ids,
        accuracy (steps x classes), overall accuracy, drift per layer and (with ``neurons``)
        per neuron (steps x neurons), the steps neurons settled at, detectors and unique
        concepts per layer, cluster counts and turnover per class (null where absent)."""
        steps = self.steps.tolist()
        out = {"path": str(self.series.path), "steps": steps, "class_names": self.class_names,
               "layers": self.layers, "neuron_ids": self.neuron_ids if neurons else None,
               "accuracy": [_nan_list(r.accuracy) for r in self._rows],
               "overall_accuracy": _nan_list([r.overall for r in self._rows]),
               "layer_drift": {layer: _nan_list(values)
                               for layer, values in self.layer_drift.items()},
               "drift": ([_nan_list(1.0 - r.jaccard) for r in self._rows] if neurons else None),
               "settled": _nan_list(self.settled().to_numpy()) if neurons else None}
        for name in ("detectors", "unique_concepts"):
            frame = getattr(self, name)
            out[name] = (None if frame is None else
                         {layer: _nan_list(frame[layer]) for layer in frame.columns})
        clusters, turn = self.clusters, self.turnover()
        out["clusters"] = (None if clusters is None else
                           {"count": _nan_list(clusters["clusters"]),
                            "clustered": _nan_list(clusters["clustered"]),
                            "turnover": {c: _nan_list(turn[c]) for c in turn.columns}})
        return out

    @property
    def plot(self):
        """Plotly figures: ``.accuracy()``, ``.drift()``, ``.detectors()``, ``.turnover()``
        (``monitor.figures.TimelinePlots``)."""
        from .figures import TimelinePlots

        return TimelinePlots(self)

    def __repr__(self) -> str:
        if not self._rows:
            return f"Timeline({str(self.series.path)!r}, no snapshots yet)"
        return (f"Timeline({len(self)} snapshots, steps {self.steps[0]}..{self.steps[-1]}, "
                f"{len(self.neuron_ids)} neurons, {len(self.class_names)} classes)")


def _accuracy(atlas: "Atlas") -> tuple[np.ndarray, float]:
    k = len(atlas.class_names)
    accuracy = atlas.stats.accuracy
    if accuracy is None:
        return np.full(k, np.nan), float("nan")
    confusion = accuracy.confusion.cpu().numpy()
    count = confusion.sum(1)
    with np.errstate(all="ignore"):
        per_class = np.where(count > 0, confusion.diagonal() / np.maximum(count, 1), np.nan)
    total = count.sum()
    return per_class, float(confusion.diagonal().sum() / total) if total else float("nan")


def _class_top(atlas: "Atlas", n: int = CLASS_NEURONS) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the positions (in neuron_ids order) and counts of its top-n neurons in A
    (-1 / 0 padded; only counts > 0)."""
    k = len(atlas.class_names)
    if atlas.stats.num_classes is None:
        return np.full((k, 0), -1, np.int32), np.zeros((k, 0), np.int64)
    counts = np.concatenate([layer.aggregation.counts.cpu().numpy()
                             for layer in atlas.stats.layers.values()], axis=1)
    n = min(n, counts.shape[1])
    order = np.argsort(-counts, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(counts, order, 1)
    return np.where(top > 0, order, -1).astype(np.int32), np.where(top > 0, top, 0)
