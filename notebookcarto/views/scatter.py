"""ProjectionScatter: neurons (or classes) as points in 2-D, drawn with WebGL."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from ._common import f32, i32, section
from .base import View
from .data import AtlasData, missing_note
from .selection import SelectionModel

COLOR_MODES = ("layer", "cluster", "concept", "class relevance")


def fallback_positions(atlas) -> tuple[np.ndarray, str]:
    """2-D neuron positions when the atlas has no embedding: PCA of each neuron's class-mean
    profile (scaled per neuron), or, without labels, one column per layer."""
    rows, start = [], 0
    n = len(atlas.neuron_ids)
    if atlas.stats.num_classes and atlas.stats.num_classes >= 3:
        for layer in atlas.stats.layers.values():
            rows.append(layer.class_means.mean.cpu().numpy().astype(np.float64).T)
        profiles = np.concatenate(rows)  # (neurons, classes)
        profiles = profiles - profiles.mean(1, keepdims=True)
        scale = np.linalg.norm(profiles, axis=1, keepdims=True)
        profiles = profiles / np.where(scale > 0, scale, 1)
        centred = profiles - profiles.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return xy.astype(np.float32), "PCA of class-mean activations (stand-in for the embedding)"
    xy = np.zeros((n, 2), dtype=np.float32)
    for i, layer in enumerate(atlas.stats.layers.values()):
        c = layer.channels
        xy[start:start + c, 0] = i
        xy[start:start + c, 1] = np.linspace(0, 1, c) if c > 1 else 0.5
        start += c
    return xy, "neurons by layer (stand-in for the embedding)"


class ProjectionScatter(View):
    """NeuroCartography's projection view: every neuron as a translucent dot in 2-D (WebGL).

    Colour by layer, cluster, concept or class relevance (``color_by``); zoom and pan with the
    wheel and drag; hover shows the neuron id and a 3x3 grid of its example patches; click
    selects a neuron and rings its nearest neighbours (listed as cards); lasso (``tool='lasso'``
    or shift-drag) selects many; ``filter`` shows all neurons, those of the selected class or
    those of the selected clusters; a slider steps through the embedding's snapshots.
    With ``mode='classes'`` it shows Summit's class embedding: classes as points, and switching
    ``class_layer`` animates them to that layer's embedding.

    Positions come from the atlas's ``embedding`` section; without it a stand-in (PCA of the
    class-mean activations) is drawn and a note says so.
    """

    _view = t.Unicode("scatter").tag(sync=True)
    mode = t.Unicode("neurons").tag(sync=True)
    xy = t.Bytes(b"").tag(sync=True)
    xy_source = t.Unicode("").tag(sync=True)
    snapshots = t.Bytes(b"").tag(sync=True)
    snapshot_labels = t.List(t.Unicode()).tag(sync=True)
    snapshot = t.Int(-1).tag(sync=True)
    class_xy = t.Bytes(b"").tag(sync=True)
    class_layers = t.List(t.Unicode()).tag(sync=True)
    class_layer = t.Int(0).tag(sync=True)
    class_accuracy = t.Bytes(b"").tag(sync=True)
    color_by = t.Unicode("layer").tag(sync=True)
    color_options = t.List(t.Unicode()).tag(sync=True)
    filter = t.Unicode("all").tag(sync=True)
    tool = t.Unicode("pan").tag(sync=True)
    point_size = t.Float(4.0).tag(sync=True)
    opacity = t.Float(0.75).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, mode: str = "neurons", color_by: str = "layer",
                 filter: str = "all", point_size: float = 4.0, opacity: float = 0.75,
                 height: int = 480, state=None, data=None):
        if mode not in ("neurons", "classes"):
            raise ValueError(f"mode must be 'neurons' or 'classes', got {mode!r}")
        if filter not in ("all", "class", "clusters"):
            raise ValueError(f"filter must be 'all', 'class' or 'clusters', got {filter!r}")
        n = len(atlas.neuron_ids)
        notes, traits = [], {}
        embedding = section(atlas, "embedding")
        arrays = {} if embedding is None else embedding.get("arrays", {})
        if "xy" in arrays and np.asarray(arrays["xy"]).shape == (n, 2):
            xy, source = np.asarray(arrays["xy"], np.float32), "neuron embedding (UMAP)"
            snaps = arrays.get("snapshot_xy")
            if snaps is not None and np.asarray(snaps).ndim == 3 and np.asarray(snaps).shape[1:] == (n, 2):
                snaps = np.asarray(snaps, np.float32)
                epochs = list(embedding.get("meta", {}).get("epochs", []))
                labels = [f"epoch {e}" for e in epochs] if len(epochs) == len(snaps) else [
                    f"snapshot {i + 1}" for i in range(len(snaps))]
                traits.update(snapshots=f32(snaps), snapshot_labels=labels)
        else:
            xy, source = fallback_positions(atlas)
            notes.append(missing_note("embedding") + f"; showing {source}")
        options = ["layer"]
        if section(atlas, "clusters") is not None:
            options.append("cluster")
        if section(atlas, "dissection") is not None or section(atlas, "exemplar_concepts"):
            options.append("concept")
        if atlas.stats.num_classes:
            options.append("class relevance")
        if color_by not in COLOR_MODES:
            raise ValueError(f"color_by must be one of {COLOR_MODES}, got {color_by!r}")
        if color_by not in options:
            notes.append(f"cannot colour by {color_by}: "
                         + (missing_note("clusters") if color_by == "cluster"
                            else missing_note("dissection")))
            color_by = "layer"
        class_embedding = section(atlas, "class_embedding")
        k = len(atlas.class_names) if atlas.stats.num_classes else 0
        if class_embedding is not None and "xy" in class_embedding.get("arrays", {}):
            cxy = np.asarray(class_embedding["arrays"]["xy"], np.float32)
            layers = [str(x) for x in class_embedding.get("meta", {}).get("layers", [])]
            if cxy.ndim == 3 and cxy.shape[1] == k and cxy.shape[2] == 2:
                layers = layers if len(layers) == len(cxy) else [f"layer {i}" for i in range(len(cxy))]
                traits.update(class_xy=f32(cxy), class_layers=layers,
                              class_layer=len(layers) - 1)
        elif k:
            notes.append(missing_note("class_embedding"))
        if k and atlas.stats.accuracy is not None:
            traits["class_accuracy"] = f32(atlas.classes["accuracy"].to_numpy())
        super().__init__(atlas, state=state, data=data, mode=mode, xy=f32(xy), xy_source=source,
                         color_by=color_by, color_options=options, filter=filter,
                         point_size=point_size, opacity=opacity, height=height, notes=notes,
                         **traits)

    @classmethod
    def from_points(cls, xy, *, layers=None, layer_sizes=None, cluster=None, state=None,
                    data=None, color_by: str = "layer", point_size: float = 2.0,
                    opacity: float = 0.6, height: int = 480) -> "ProjectionScatter":
        """A projection of arbitrary points without an atlas (e.g. to try the renderer at a
        million points): ``xy`` (n, 2); ``layers``/``layer_sizes`` group them (default: one
        group); ``cluster`` (n,) int labels (-1: none) allow colouring by cluster. Its
        ``state.indices`` holds the selected point indices."""
        xy = np.asarray(xy, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
        n = len(xy)
        layers = list(layers or ["points"])
        layer_sizes = list(layer_sizes or [n])
        if sum(layer_sizes) != n or len(layers) != len(layer_sizes):
            raise ValueError(f"{len(layers)} layers of sizes {layer_sizes} do not cover {n} points")
        options = ["layer"]
        if data is None:
            labels = b"" if cluster is None else i32(np.asarray(cluster).reshape(n))
            data = AtlasData(layers=layers, layer_sizes=layer_sizes, cluster=labels)
        if len(data.cluster) == 4 * n:
            options.append("cluster")
        view = cls.__new__(cls)
        view.atlas = None
        anywidget.AnyWidget.__init__(
            view, state=state or SelectionModel(), data=data, xy=f32(xy), xy_source="points",
            color_options=options, color_by=color_by if color_by in options else "layer",
            point_size=point_size, opacity=opacity, height=height)
        return view
