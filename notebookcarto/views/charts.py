"""The Explorer's Plotly chart, linked to the shared selection: accuracy (or images) per class
above, the selected neurons per layer below.

Every class and layer name reaches Plotly escaped (``plotly_text``): Plotly reads labels and
hover texts as pseudo-HTML. Names on the axes are shortened (``short_label``) and given in full
in the hover label; counts get integer ticks. The figure is transparent with neutral text, and
the Explorer's front end gives it the theme's colours and its panel's width.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import plotly_text, short_labels

__all__ = ["HIGHLIGHT", "PLAIN", "SELECTED", "chart_height", "class_ticks", "count_axis",
           "selection_chart", "selection_figure"]

# bar colours (js/src/explorer/offline-chart.js restyles with the same ones)
PLAIN, HIGHLIGHT, SELECTED = "#98a2ad", "#e8590c", "#4477aa"
NEUTRAL = "#6b7785"           # text, until the front end sets the theme's
GRID = "rgba(128, 128, 128, 0.22)"
ROW_PX, GAP_PX = 20, 58       # a bar's line; between the rows (ticks, then the title)
MARGIN = dict(l=8, r=14, t=30, b=28)
MAX_LISTED = 30               # more classes: bars without names (names in the hover)


def count_axis(counts) -> dict:
    """Integer ticks (0, d, 2d, ...) and a range from 0 for an axis of neuron counts."""
    top = max([0, *[int(c) for c in counts]])
    step = max(1, math.ceil(top / 5))
    return {"tick0": 0, "dtick": step, "range": [0, max(1, top) * 1.08], "tickformat": "d"}


def _row_px(n_classes: int, n_layers: int) -> tuple[int, int]:
    listed = n_classes if 0 < n_classes <= MAX_LISTED else 8
    return (min(max(ROW_PX * listed, 120), ROW_PX * MAX_LISTED),
            min(max(ROW_PX * n_layers, 70), 320))


def chart_height(n_classes: int, n_layers: int) -> int:
    """Pixels for the two rows: one line per listed class and per layer, within bounds."""
    top, bottom = _row_px(n_classes, n_layers)
    return top + bottom + GAP_PX + MARGIN["t"] + MARGIN["b"]


def class_ticks(names, selected_class: int) -> list[str]:
    """The class axis's labels: escaped, shortened, the selected class's in bold (so it shows
    also where its bar is empty)."""
    ticks = [plotly_text(n) for n in short_labels(names)]
    if 0 <= selected_class < len(ticks):
        ticks[selected_class] = f"<b>{ticks[selected_class]}</b>"
    return ticks


def _rows(atlas):
    """(class names, values, whether they are accuracies)."""
    table = atlas.classes
    names = list(table["name"]) if len(table) else []
    accuracy = atlas.stats.accuracy is not None and len(names) > 0
    if accuracy:
        values = np.nan_to_num(table["accuracy"].to_numpy(np.float64))
    elif "images" in table:
        values = table["images"].to_numpy(np.float64)
    else:
        values = np.zeros(len(names))
    return names, values, accuracy


def selection_figure(atlas, *, selected_class: int = -1, counts=None):
    """The chart as a ``plotly.graph_objects.Figure`` (what ``selection_chart`` wraps):
    ``selected_class`` highlighted, ``counts`` (per layer, default zeros) in the lower row."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names, values, accuracy = _rows(atlas)
    layers = list(atlas.layers)
    counts = [0] * len(layers) if counts is None else [int(c) for c in counts]
    listed = 0 < len(names) <= MAX_LISTED
    height = chart_height(len(names), len(layers))
    top_px, bottom_px = _row_px(len(names), len(layers))
    fig = make_subplots(rows=2, cols=1, row_heights=[top_px, bottom_px],
                        vertical_spacing=GAP_PX / (top_px + bottom_px + GAP_PX))
    full = [plotly_text(n) for n in names]
    colours = [HIGHLIGHT if i == selected_class else PLAIN for i in range(len(names))]
    what = "accuracy" if accuracy else "images"
    value = "%{x:.1%}" if accuracy else "%{x:,d}"
    if listed:
        fig.add_trace(go.Bar(y=list(range(len(names))), x=values, orientation="h",
                             marker_color=colours, customdata=full, name="classes",
                             hovertemplate=f"%{{customdata}}: {value}<extra></extra>"),
                      row=1, col=1)
        fig.update_yaxes(tickvals=list(range(len(names))), autorange="reversed",
                         ticktext=class_ticks(names, selected_class),
                         automargin=True, row=1, col=1)
        fig.update_xaxes(**({"range": [0, 1.02], "tickformat": ".0%"} if accuracy else
                            count_axis(values)), row=1, col=1)
    else:
        fig.add_trace(go.Bar(x=list(range(len(names))), y=values, marker_color=colours,
                             customdata=full, name="classes",
                             hovertemplate=f"%{{customdata}}: {value.replace('x', 'y')}"
                                           "<extra></extra>"), row=1, col=1)
        fig.update_xaxes(showticklabels=False, row=1, col=1)
        fig.update_yaxes(**({"range": [0, 1.02], "tickformat": ".0%"} if accuracy else
                            count_axis(values)), row=1, col=1)
    fig.add_trace(go.Bar(y=list(range(len(layers))), x=counts, orientation="h",
                         marker_color=SELECTED, name="selected",
                         customdata=[plotly_text(n) for n in layers],
                         hovertemplate="%{customdata}: %{x:,d} selected<extra></extra>"),
                  row=2, col=1)
    fig.update_yaxes(tickvals=list(range(len(layers))), autorange="reversed",
                     ticktext=[plotly_text(n) for n in short_labels(layers)], automargin=True,
                     row=2, col=1)
    fig.update_xaxes(**count_axis(counts), row=2, col=1)
    title = "accuracy per class" if accuracy else "images per class"
    for row, text in ((1, title), (2, "selected neurons per layer")):
        domain = fig.get_subplot(row, 1).yaxis.domain
        fig.add_annotation(text=text, xref="paper", yref="paper", x=0, y=domain[1],
                           xanchor="left", yanchor="bottom", yshift=4, showarrow=False,
                           font=dict(size=12))
    fig.update_layout(height=height, margin=MARGIN,
                      showlegend=False, bargap=0.28, font=dict(size=11, color=NEUTRAL),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      hoverlabel=dict(namelength=-1), meta={"what": what})
    fig.update_xaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID, automargin=True)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID)
    return fig


def selection_chart(atlas, state):
    """A Plotly ``FigureWidget`` of ``selection_figure`` that follows ``state`` (a
    ``SelectionModel``) from Python: the selected class highlighted (click a bar to select
    it) and the number of selected neurons per layer."""
    import plotly.graph_objects as go

    offsets = atlas.layer_offsets
    bounds = [(offsets[name], offsets[name] + layer.channels)
              for name, layer in atlas.stats.layers.items()]

    def per_layer():
        chosen = state.neurons
        return [int(((chosen >= start) & (chosen < end)).sum()) for start, end in bounds]

    # the state the widget starts with is what an export shows: build it with the selection
    widget = go.FigureWidget(selection_figure(atlas, selected_class=state.cls,
                                              counts=per_layer()))
    widget._config = {"displayModeBar": False, "displaylogo": False}
    names = list(atlas.classes["name"]) if len(atlas.classes) else []
    listed = widget.layout.yaxis.tickvals is not None

    def follow(change=None):
        counts = per_layer()
        with widget.batch_update():
            widget.data[0].marker.color = [HIGHLIGHT if i == state.cls else PLAIN
                                           for i in range(len(names))]
            if listed:
                widget.layout.yaxis.ticktext = class_ticks(names, state.cls)
            widget.data[1].x = counts
            widget.layout.xaxis2.update(count_axis(counts))

    def clicked(trace, points, selector):
        if points.point_inds:
            state.origin = "chart"
            state.cls = int(points.point_inds[0])

    widget.data[0].on_click(clicked)
    state.observe(follow, names=["cls", "neurons"])
    return widget
