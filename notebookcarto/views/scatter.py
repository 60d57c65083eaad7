"""ProjectionScatter: neurons (or classes) as points in 2-D, drawn with WebGL."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from . import adapters
from .base import View
from .data import AtlasData
from .selection import SelectionModel
from .traits import Array, Option, check_options

__all__ = ["COLOR_MODES", "FILTERS", "MODES", "TOOLS", "ProjectionScatter", "layer_columns"]

COLOR_MODES = ("layer", "cluster", "concept", "class relevance")
MODES = ("neurons", "classes")
FILTERS = ("all", "class", "clusters")
TOOLS = ("pan", "lasso")


def layer_columns(layer_sizes) -> np.ndarray:
    """Neurons drawn in one column per layer, in channel order: the layout without an
    embedding. float32 (neurons, 2)."""
    columns = []
    for i, c in enumerate(layer_sizes):
        rows = np.linspace(0, 1, c) if c > 1 else np.full(c, 0.5)
        columns.append(np.stack([np.full(c, float(i)), rows], 1))
    return np.concatenate(columns).astype(np.float32) if columns else np.zeros((0, 2), np.float32)


class ProjectionScatter(View):
    """NeuroCartography's projection view: every neuron as a translucent dot in 2-D (WebGL).

    Colour by layer, cluster, concept or class relevance (``color_by``), in palettes that stay
    distinct (and colour-blind safe) for the groups shown, with a legend that folds away; drag
    pans; the wheel zooms with Ctrl (or ⌘) held or after a click in the view, and scrolls the
    notebook otherwise; hover shows the neuron id and a 3x3 grid of its example patches; click
    selects a neuron and rings its nearest neighbours (listed as cards in a panel over the
    canvas, so no point moves); lasso (``tool='lasso'`` or shift-drag) selects many; the search
    box finds neurons by id, layer, concept or cluster (``cluster:3``), Enter selects them all;
    ``filter`` shows all neurons, those of the selected class or those of the selected clusters;
    a slider steps through the embedding's snapshots.
    With ``mode='classes'`` it shows Summit's class embedding: classes as points, and switching
    ``class_layer`` animates them to that layer's embedding.

    Positions come from the atlas's neuron embedding; without one the neurons stand in one
    column per layer and a note says which analysis to run.
    """

    _view = t.Unicode("scatter").tag(sync=True)
    mode = Option(MODES, default_value="neurons").tag(sync=True)
    xy = Array("float32", ndim=2).tag(sync=True)  # (points, 2)
    xy_source = t.Unicode("").tag(sync=True)
    snapshots = Array("float32", ndim=3).tag(sync=True)  # (snapshots, points, 2)
    snapshot_labels = t.List(t.Unicode()).tag(sync=True)
    snapshot = t.Int(-1).tag(sync=True)
    class_xy = Array("float32", ndim=3).tag(sync=True)  # (layers, classes, 2)
    class_layers = t.List(t.Unicode()).tag(sync=True)
    class_layer = t.Int(0).tag(sync=True)
    class_accuracy = Array("float32", ndim=1).tag(sync=True)  # (classes,)
    color_by = Option(COLOR_MODES, default_value="layer").tag(sync=True)
    color_options = t.List(t.Unicode()).tag(sync=True)
    filter = Option(FILTERS, default_value="all").tag(sync=True)
    tool = Option(TOOLS, default_value="pan").tag(sync=True)
    point_size = t.Float(4.0).tag(sync=True)
    opacity = t.Float(0.75).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, mode: str = "neurons", color_by: str = "layer",
                 filter: str = "all", point_size: float = 4.0, opacity: float = 0.75,
                 height: int = 480, state=None, data=None):
        check_options(type(self), mode=mode, filter=filter, color_by=color_by)
        notes, traits = [], {}
        layout = adapters.embedding_layout(atlas)
        if layout is not None:
            xy, snaps, labels = layout
            source = "neuron embedding (UMAP)"
            if len(snaps):
                traits.update(snapshots=snaps, snapshot_labels=labels)
        else:
            xy = layer_columns([layer.channels for layer in atlas.stats.layers.values()])
            source = "neurons by layer (no embedding)"
            notes.append(adapters.note("embedding") + "; showing the neurons by layer")
        options = ["layer"]
        if atlas.has("clusters"):
            options.append("cluster")
        if adapters.concept_labels(atlas)[0] is not None:
            options.append("concept")
        if atlas.stats.num_classes:
            options.append("class relevance")
        if color_by not in options:
            notes.append(f"cannot colour by {color_by}: "
                         + adapters.note("clusters" if color_by == "cluster" else "dissection"))
            color_by = "layer"
        k = len(atlas.class_names) if atlas.stats.num_classes else 0
        classes = adapters.class_layouts(atlas)
        if classes is not None:
            cxy, layers = classes
            traits.update(class_xy=cxy, class_layers=layers, class_layer=len(layers) - 1)
        elif k:
            notes.append(adapters.note("class_embedding"))
        if k and atlas.stats.accuracy is not None:
            traits["class_accuracy"] = atlas.classes["accuracy"].to_numpy(np.float32)
        super().__init__(atlas, state=state, data=data, mode=mode, xy=xy, xy_source=source,
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
            labels = None if cluster is None else np.asarray(cluster).reshape(n).astype(np.int32)
            data = AtlasData(layers=layers, layer_sizes=layer_sizes, cluster=labels)
        if data.cluster is not None and data.cluster.shape == (n,):
            options.append("cluster")
        view = cls.__new__(cls)
        view.atlas = None
        anywidget.AnyWidget.__init__(
            view, state=state or SelectionModel(), data=data, xy=xy, xy_source="points",
            color_options=options, color_by=color_by if color_by in options else "layer",
            point_size=point_size, opacity=opacity, height=height)
        return view
