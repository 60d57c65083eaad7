"""Plotly figures of a timeline: accuracy, neuron drift, detectors and cluster turnover over steps.

``timeline.plot`` (a ``TimelinePlots``) makes them; each returns a
``plotly.graph_objects.Figure``. Class, layer and concept names reach Plotly escaped, so they
show as typed and never as markup.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["TimelinePlots"]


def _text(value) -> str:
    return html.escape(str(value), quote=False)


def _lines(frame, *, title: str, y_title: str, y_range=None, log_x: bool = False,
           bold: dict | None = None):
    import plotly.graph_objects as go

    fig = go.Figure()
    x = frame.index.to_numpy()
    for column in frame.columns:
        y = frame[column].to_numpy(dtype=np.float64)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=_text(column),
                                 hovertemplate=f"{_text(column)}<br>step %{{x}}<br>"
                                               f"{_text(y_title)} %{{y:.3f}}<extra></extra>"))
    for name, series in (bold or {}).items():
        fig.add_trace(go.Scatter(x=x, y=series.to_numpy(dtype=np.float64), mode="lines",
                                 name=_text(name), line=dict(width=4, color="black"),
                                 hovertemplate=f"{_text(name)}<br>step %{{x}}<br>"
                                               f"%{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=_text(title), xaxis_title="training step", yaxis_title=y_title,
                      template="plotly_white", hovermode="closest", legend_title_text="")
    if y_range is not None:
        fig.update_yaxes(range=y_range)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


class TimelinePlots:
    """Figures of one timeline (``timeline.plot``). ``log_x`` puts the steps on a log axis
    (steps from 1; log-spaced schedules read best so)."""

    def __init__(self, timeline: "Timeline"):
        self.timeline = timeline

    @staticmethod
    def _x(frame, log_x: bool):
        return frame[frame.index > 0] if log_x else frame

    def accuracy(self, classes=None, *, log_x: bool = False):
        """Per-class accuracy on the probe over steps, with the overall accuracy in bold."""
        frame = self.timeline.accuracy
        if classes is not None:
            frame = frame[[self.timeline.class_names[self.timeline._class_index(c)]
                           for c in classes]]
        overall = self.timeline.overall_accuracy
        frame, overall = self._x(frame, log_x), self._x(overall.to_frame(), log_x)["accuracy"]
        return _lines(frame, title="Accuracy on the probe", y_title="accuracy",
                      y_range=[0, 1.02], log_x=log_x, bold={"all classes": overall})

    def drift(self, *, log_x: bool = False):
        """Mean top-set drift per layer (1 - Jaccard with the snapshot before): when do the
        neurons settle?"""
        return _lines(self._x(self.timeline.layer_drift, log_x),
                      title="Neuron drift: top images changed since the snapshot before",
                      y_title="mean drift", y_range=[0, 1.02], log_x=log_x)

    def detectors(self, *, log_x: bool = False):
        """Network Dissection's detectors per layer over steps (needs a monitor with
        concepts)."""
        frame = self.timeline.detectors
        if frame is None:
            raise ValueError("this series has no dissection: monitor with concepts=... "
                             "(e.g. datasets.PlaygroundConcepts) to count detectors")
        total = frame.sum(axis=1)
        return _lines(self._x(frame, log_x), title="Detectors per layer (Network Dissection)",
                      y_title="detectors", log_x=log_x,
                      bold={"all layers": self._x(total.to_frame("all"), log_x)["all"]})

    def turnover(self, classes=None, *, log_x: bool = False):
        """Turnover of the clusters holding each class's top neurons (needs clusters)."""
        frame = self.timeline.turnover(classes)
        if frame is None:
            raise ValueError("this series has no clusters: monitor with clusters=True")
        return _lines(self._x(frame, log_x), title="Cluster turnover per class",
                      y_title="turnover", y_range=[0, 1.02], log_x=log_x)

    def __repr__(self) -> str:
        return "TimelinePlots: .accuracy(), .drift(), .detectors(), .turnover()"
