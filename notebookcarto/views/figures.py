"""Plotly figures of an atlas's statistics: Summit's A and I, and the confusion matrix.

``atlas.plot`` (a ``Plots``) makes them: ``atlas.plot.aggregation(layer)``,
``atlas.plot.influence(cls, layer)``, ``atlas.plot.confusion()``. Each returns a
``plotly.graph_objects.Figure`` (show it, or ``go.FigureWidget(fig)`` in a notebook). Names
reach Plotly escaped, so they show as typed; long ones are shortened on the axes and given in
full in the hover label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import adapters
from ._common import plotly_text, short_labels

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["Plots", "top_columns"]

HEAT = "Blues"
GRID = "rgba(128, 128, 128, 0.22)"


def top_columns(matrix: np.ndarray, top: int | None) -> np.ndarray:
    """Indices of the ``top`` columns of ``matrix`` with the largest sums (all, in order,
    when ``top`` is None or covers them), largest first otherwise."""
    n = matrix.shape[1]
    if top is None or top >= n:
        return np.arange(n)
    if top < 1:
        raise ValueError(f"top must be a positive number of columns, got {top}")
    return np.argsort(-matrix.sum(0), kind="stable")[:top]


def _heatmap(z, rows, columns, *, title, x_title, y_title, hover, colorbar, text=None):
    import plotly.graph_objects as go

    full_rows = [plotly_text(r) for r in rows]
    full_columns = [plotly_text(c) for c in columns]
    custom = np.empty(z.shape + (2,), dtype=object)
    custom[..., 0] = np.array(full_rows, dtype=object)[:, None]
    custom[..., 1] = np.array(full_columns, dtype=object)[None, :]
    trace = go.Heatmap(z=z, x=list(range(len(columns))), y=list(range(len(rows))),
                       customdata=custom, colorscale=HEAT, hovertemplate=hover,
                       colorbar=dict(title=dict(text=colorbar, side="right"), thickness=12),
                       hoverongaps=False)
    if text is not None:
        trace.update(text=text, texttemplate="%{text}", textfont=dict(size=10))
    fig = go.Figure(trace)
    fig.update_xaxes(tickvals=list(range(len(columns))),
                     ticktext=[plotly_text(c) for c in short_labels(columns, 18)],
                     title=dict(text=x_title), tickangle=-45 if len(columns) > 8 else 0,
                     showgrid=False, automargin=True)
    fig.update_yaxes(tickvals=list(range(len(rows))), autorange="reversed",
                     ticktext=[plotly_text(r) for r in short_labels(rows, 24)],
                     title=dict(text=y_title), showgrid=False, automargin=True)
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)),
                      height=max(320, min(900, 140 + 18 * len(rows))),
                      margin=dict(l=10, r=10, t=50, b=10), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", hoverlabel=dict(namelength=-1))
    return fig


class Plots:
    """Plotly figures of ``atlas``'s statistics (``atlas.plot``)."""

    def __init__(self, atlas: "Atlas"):
        self.atlas = atlas

    def _layer(self, layer: str | None) -> str:
        layers = self.atlas.layers
        if layer is None:
            return layers[-1]
        if layer not in layers:
            raise KeyError(f"unknown layer {layer!r}: this atlas has {layers}")
        return layer

    def aggregation(self, layer: str | None = None, *, top: int | None = 40):
        """Summit's A of ``layer`` (default: the last): for each class (rows) how many of its
        images count each neuron among their top channels; the ``top`` neurons with the
        largest total count (None: all, in channel order)."""
        atlas = self.atlas
        layer = self._layer(layer)
        a = atlas.aggregation(layer).to_numpy()
        keep = top_columns(a, top)
        return _heatmap(
            a[:, keep], atlas.class_names, [f"{layer}:{c}" for c in keep],
            title=f"A: images of each class that count a neuron of {plotly_text(layer)}",
            x_title="neuron", y_title="class", colorbar="images",
            hover="class %{customdata[0]}<br>neuron %{customdata[1]}<br>A = %{z:,d}"
                  "<extra></extra>")

    def influence(self, cls=None, layer: str | None = None, *, top: int | None = 24):
        """Summit's I into ``layer`` (default: the last) from the layer feeding it: how often
        each input channel (columns) was among the top inputs of each channel of ``layer``
        (rows), over the images of class ``cls`` (index or name; None: all classes); the
        ``top`` rows and columns with the largest totals."""
        atlas = self.atlas
        layer = self._layer(layer)
        earlier, counts = adapters.influence_pair(atlas, layer)
        if cls is None:
            matrix, which = counts.sum(0), "all classes"
        else:
            k = atlas.class_index(cls)
            matrix, which = counts[k], f"class {plotly_text(atlas.class_names[k])}"
        rows = top_columns(matrix.T, top)
        columns = top_columns(matrix, top)
        z = matrix[np.ix_(rows, columns)]
        return _heatmap(
            z, [f"{layer}:{r}" for r in rows], [f"{earlier}:{c}" for c in columns],
            title=f"I: inputs from {plotly_text(earlier)} into {plotly_text(layer)}, {which}",
            x_title=f"input neuron ({plotly_text(earlier)})",
            y_title=f"neuron ({plotly_text(layer)})", colorbar="images",
            hover="%{customdata[1]} → %{customdata[0]}<br>I = %{z:,d} images<extra></extra>")

    def confusion(self, *, normalise: bool = True):
        """The confusion matrix (rows: true class, columns: predicted), as shares of each
        true class with ``normalise`` (the counts in the hover label), else counts."""
        atlas = self.atlas
        counts = adapters.confusion(atlas)
        names = list(atlas.class_names)[:len(counts)]
        totals = counts.sum(1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        z = shares if normalise else counts
        text = None
        if len(names) <= 20:
            text = np.vectorize(lambda v: f"{v:.0%}" if normalise else f"{v:,d}")(z)
        fig = _heatmap(
            z, names, names, title="confusion matrix" + (" (share of each true class)"
                                                         if normalise else ""),
            x_title="predicted class", y_title="true class",
            colorbar="share" if normalise else "images", text=text,
            hover="true %{customdata[0]}<br>predicted %{customdata[1]}<br>"
                  + ("%{z:.1%}" if normalise else "%{z:,d} images") + "<extra></extra>")
        if normalise:
            fig.update_traces(zmin=0, zmax=1)
        return fig

    def __repr__(self) -> str:
        return "Plots(aggregation, influence, confusion)"
