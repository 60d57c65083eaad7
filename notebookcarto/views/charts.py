"""Ordinary charts (Plotly) linked to the shared selection: class accuracy, selection counts."""

from __future__ import annotations

import numpy as np


__all__ = ["selection_chart"]

PLAIN, HIGHLIGHT = "#9aa5b1", "#d9480f"


def selection_chart(atlas, state, *, height: int = 300):
    """A Plotly ``FigureWidget``: accuracy per class (the selected class highlighted; click a bar
    to select it) and the number of selected neurons per layer. It follows ``state`` (a
    ``SelectionModel``) from Python."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    has_acc = atlas.stats.accuracy is not None and atlas.stats.num_classes
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1,
                        subplot_titles=("accuracy per class" if has_acc else "images per class",
                                        "selected neurons per layer"))
    table = atlas.classes
    names = list(table["name"]) if len(table) else []
    values = (table["accuracy"].to_numpy() if has_acc else
              table.get("images", np.zeros(len(names))).to_numpy() if len(table) else [])
    horizontal = len(names) <= 30  # few classes: names on the axis; many: in the hover only
    if horizontal:
        bars = go.Bar(y=names, x=values, orientation="h", marker_color=[PLAIN] * len(names),
                      name="classes", hovertemplate="%{y}: %{x:.3f}<extra></extra>")
    else:
        bars = go.Bar(x=names, y=values, marker_color=[PLAIN] * len(names), name="classes",
                      hovertemplate="%{x}: %{y:.3f}<extra></extra>")
    fig.add_trace(bars, row=1, col=1)
    fig.add_trace(go.Bar(x=atlas.layers, y=[0] * len(atlas.layers), marker_color="#4c6ef5",
                         name="selected", hovertemplate="%{x}: %{y}<extra></extra>"),
                  row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=36, b=30), showlegend=False,
                      template="plotly_white", bargap=0.25, font=dict(size=11))
    fig.update_annotations(font_size=12)
    if horizontal:
        fig.update_yaxes(autorange="reversed", automargin=True, row=1, col=1)
        if has_acc:
            fig.update_xaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    else:
        fig.update_xaxes(showticklabels=False, row=1, col=1)
        if has_acc:
            fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", automargin=True, row=1, col=2)
    widget = go.FigureWidget(fig)
    offsets = atlas.layer_offsets
    bounds = [(name, offsets[name], offsets[name] + layer.channels)
              for name, layer in atlas.stats.layers.items()]

    def follow(change=None):
        picked = state.cls
        chosen = state.neurons
        counts = [int(((chosen >= start) & (chosen < end)).sum()) for _, start, end in bounds]
        with widget.batch_update():
            widget.data[0].marker.color = [HIGHLIGHT if i == picked else PLAIN
                                           for i in range(len(names))]
            widget.data[1].y = counts
            widget.layout.yaxis2.dtick = max(1, -(-max(counts, default=0) // 5))

    def clicked(trace, points, selector):
        if points.point_inds:
            state.origin = "chart"
            state.cls = int(points.point_inds[0])

    widget.data[0].on_click(clicked)
    state.observe(follow, names=["cls", "neurons"])
    follow()
    return widget
