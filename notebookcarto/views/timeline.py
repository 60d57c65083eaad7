"""TimelineView: a training run's timeline beside the Explorer of the chosen snapshot.

A step slider, the Plotly curves of the timeline (accuracy, neuron drift, detectors) and the
Explorer of the chosen step's snapshot; the Explorer's selection (neurons and class) stays when
another step is chosen. Made from a ``Monitor``, the view follows the run in the same kernel:
each snapshot the monitor announces (``on_snapshot``, at the next ``observe`` or ``flush``) adds
its step to the slider and its points to the curves, and moves the view to it if it showed the
last step. ``timeline_html`` writes the whole timeline and
an Explorer per snapshot into one offline page.

The views draw and compute nothing, and import nothing from the monitor: what they draw comes
from the timeline object they are given, through ``timeline_curves`` (its ``to_dict``) and
``timeline_figures`` (the monitor's own figures, ``timeline.plot``).
"""

from __future__ import annotations

import anywidget
import traitlets as t

from ._common import bundle_path
from .charts import HIGHLIGHT, NEUTRAL
from .explorer import Explorer
from .export import close_widgets, save_html
from .selection import SelectionModel

__all__ = ["CHARTS", "TimelineView", "timeline_curves", "timeline_figures", "timeline_html"]

CHARTS = ("accuracy", "drift", "detectors")  # the timeline's figures the view shows
CHART_PX = 280
_REF = anywidget.WidgetTrait().metadata["to_json"]


def _refs(widgets, owner) -> list:
    """A list of widgets on the wire: their references (as ``WidgetTrait`` sends one)."""
    return [_REF(widget, owner) for widget in widgets]


def timeline_curves(timeline) -> dict:
    """The timeline's curves as plain JSON data (``timeline.to_dict(neurons=False)``): steps,
    class names, layers, accuracy, drift per layer, detectors, clusters."""
    return timeline.to_dict(neurons=False)


def timeline_figures(timeline) -> tuple[dict, list[str]]:
    """({name: Plotly figure} of the ``CHARTS`` the timeline can draw, notes saying what the
    others need): the monitor's figures, ``timeline.plot.<name>()``."""
    figures, notes = {}, []
    for name in CHARTS:
        try:
            figures[name] = getattr(timeline.plot, name)()
        except ValueError as err:  # a curve the series lacks (e.g. detectors without concepts)
            notes.append(str(err))
    return figures, notes


def _title(snapshots: int) -> str:
    return f"training timeline: {snapshots} snapshots" if snapshots else \
        "training timeline: no snapshot yet"


def _check_timeline(source) -> None:
    missing = [name for name in ("to_dict", "plot", "atlas", "refresh", "steps")
               if not hasattr(source, name)]
    if missing:
        raise TypeError(f"TimelineView shows a monitor's Timeline or a Monitor, got "
                        f"{type(source).__name__} (it lacks {', '.join(missing)}): pass "
                        "Timeline(path) or the Monitor of a training run")


def _chart(figure, step: int):
    """A figure as the view draws it: its panel's height, no background (the front end gives
    it the theme's colours), neutral bold lines and a marker of the chosen step (shape 0,
    which the front end moves)."""
    import plotly.graph_objects as go

    figure.update_layout(height=CHART_PX, margin=dict(l=8, r=8, t=36, b=8), title_font_size=13,
                         paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                         font=dict(size=11, color=NEUTRAL), legend=dict(font=dict(size=10)),
                         xaxis=dict(automargin=True), yaxis=dict(automargin=True))
    figure.update_traces(line_color=NEUTRAL, selector=dict(line_width=4))
    figure.add_shape(type="line", xref="x", yref="paper", x0=max(step, 0), x1=max(step, 0),
                     y0=0, y1=1, visible=step >= 0, line=dict(color=HIGHLIGHT, width=2,
                                                              dash="dot"))
    widget = go.FigureWidget(figure)
    widget._config = {"displayModeBar": False, "displaylogo": False}
    return widget


class TimelineView(anywidget.AnyWidget):
    """A training run's timeline (see the module docstring): ``TimelineView(timeline)`` or
    ``TimelineView(monitor)`` (follows the run live).

    ``view.step`` reads and sets the chosen step (one of ``view.steps``); ``view.explorer`` is
    the Explorer of its snapshot (``view.explorer.selection``: its selected neurons, which
    stay when another step is chosen). ``snapshots`` lists steps whose Explorers are built at
    once and kept (what an offline page needs; others are loaded when chosen); ``explorer``
    passes options to each ``Explorer`` (they come without their Plotly chart:
    ``charts=False``). ``view.refresh()`` reads the snapshots written since;
    ``view.save_html(path)`` writes the view as it is (``timeline_html`` embeds every
    snapshot).
    """

    _esm = bundle_path()
    _view = t.Unicode("timeline").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    steps = t.List(t.Int()).tag(sync=True)
    step = t.Int(-1).tag(sync=True)
    curves = t.Dict().tag(sync=True)
    charts = t.List(anywidget.WidgetTrait()).tag(sync=True, to_json=_refs)
    chart_names = t.List(t.Unicode()).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)
    # the Explorer of step `shown` (loaded by Python when a step is chosen), and the Explorers
    # built up front for `explorer_steps` (an offline page switches among those)
    explorer = anywidget.WidgetTrait().tag(sync=True)
    shown = t.Int(-1).tag(sync=True)
    explorers = t.List(anywidget.WidgetTrait()).tag(sync=True, to_json=_refs)
    explorer_steps = t.List(t.Int()).tag(sync=True)

    def __init__(self, source, *, step: int | None = None, snapshots=(),
                 title: str | None = None, explorer: dict | None = None):
        monitor = source if callable(getattr(source, "on_snapshot", None)) else None
        timeline = monitor.timeline() if monitor is not None else source
        _check_timeline(timeline)
        self.timeline = timeline
        self._options = dict(explorer or {})
        steps = [int(s) for s in timeline.steps]
        chosen = steps[-1] if steps and step is None else (-1 if step is None else int(step))
        self._check_step(chosen, steps)
        embedded = [int(s) for s in snapshots]
        for s in embedded:
            self._check_step(s, steps)
        shared = self._selection(None) if embedded else None  # the embedded ones share it
        explorers = [self._explorer(s, shared) for s in embedded]
        figures, notes = timeline_figures(timeline)
        super().__init__(title=_title(len(steps)) if title is None else title, steps=steps,
                         step=chosen, curves=timeline_curves(timeline),
                         charts=[_chart(f, chosen) for f in figures.values()],
                         chart_names=list(figures), notes=notes,
                         explorers=explorers, explorer_steps=embedded)
        self._show(chosen)
        self.observe(self._chosen, names=["step"])
        if monitor is not None:
            self.follow(monitor)

    # -- steps and snapshots ------------------------------------------------------------------
    @staticmethod
    def _check_step(step: int, steps: list[int]) -> None:
        if step == -1 and not steps:
            return
        if step not in steps:
            shown = steps if len(steps) <= 12 else steps[:6] + ["..."] + steps[-5:]
            raise ValueError(f"step {step} has no snapshot in this timeline: choose one of "
                             f"{shown}")

    @t.validate("step")
    def _valid_step(self, proposal):
        self._check_step(proposal["value"], self.steps)
        return proposal["value"]

    def _selection(self, old: SelectionModel | None) -> SelectionModel:
        """A selection model holding ``old``'s selection (the first class without one)."""
        if old is None:
            return SelectionModel(cls=0 if self.timeline.class_names else -1)
        return SelectionModel(neurons=old.neurons.copy(), cls=old.cls)

    def _explorer(self, step: int, state: SelectionModel) -> Explorer:
        # no Plotly chart of its own: the curves above take its place, and Plotly's widget
        # keeps listening with every view it drew, so a chart drawn again errs
        options = {"title": f"snapshot of step {step}", "charts": False, **self._options}
        return Explorer(self.timeline.atlas(step), state=state, **options)

    def _show(self, step: int) -> None:
        """Point ``explorer`` at the Explorer of ``step`` (an embedded one, or one loaded now)
        with the selection of the one it replaces; a loaded one is closed when replaced (its
        atlas freed)."""
        if step == self.shown:
            return
        old = self.explorer
        before = None if old is None else old.state
        if step in self.explorer_steps:
            new = self.explorers[self.explorer_steps.index(step)]
            if before is not None and new.state is not before:
                new.state.neurons, new.state.cls = before.neurons.copy(), before.cls
        else:
            new = None if step < 0 else self._explorer(step, self._selection(before))
        with self.hold_sync():
            self.explorer, self.shown = new, step
        if old is not None and old not in self.explorers:
            close_widgets(old)

    def _chosen(self, change) -> None:
        self._show(change["new"])

    # -- following a run ----------------------------------------------------------------------
    def refresh(self) -> list[int]:
        """Read the snapshots written since (``timeline.refresh()``) into the slider and the
        curves; the view moves to the newest step if it showed the last one. Returns the new
        steps."""
        at_end = not self.steps or self.step == self.steps[-1]
        new = self.timeline.refresh()
        steps = [int(s) for s in self.timeline.steps]
        if steps == self.steps:
            return new
        figures, notes = timeline_figures(self.timeline)
        marker = steps[-1] if at_end or self.step not in steps else self.step
        old = self.charts
        with self.hold_sync():
            if self.title == _title(len(self.steps)):  # not the user's own title
                self.title = _title(len(steps))
            self.steps = steps
            if self.step not in steps:  # a rewound series
                self.step = steps[-1] if steps else -1
            self.curves = timeline_curves(self.timeline)
            # new charts: a Plotly widget's state keeps its first data, and an export reads it
            self.charts = [_chart(figure, marker) for figure in figures.values()]
            self.chart_names = list(figures)
            self.notes = notes
        for chart in old:
            chart.close()
        if at_end and steps:
            self.step = steps[-1]
        return new

    def follow(self, monitor) -> TimelineView:
        """Refresh whenever ``monitor`` announces a snapshot written (on the training thread,
        during the cell that trains: the view updates while it runs)."""
        monitor.on_snapshot(lambda written: self.refresh())
        return self

    def save_html(self, path, *, title: str | None = None, compress: bool = True) -> str:
        """Write this view as it is (the Explorers it holds) to one offline HTML file."""
        return save_html(self, path, title=title, compress=compress)


def timeline_html(source, path, *, steps=None, title: str | None = None,
                  compress: bool = True, **options) -> str:
    """Write the timeline of ``source`` (a ``Timeline`` or ``Monitor``) to one offline HTML
    file: the curves, the slider and the Explorer of every snapshot of ``steps`` (default:
    all; each is in memory while the page is built); ``options`` go to ``TimelineView``.
    Returns the path."""
    timeline = source.timeline() if callable(getattr(source, "on_snapshot", None)) else source
    _check_timeline(timeline)
    chosen = [int(s) for s in (timeline.steps if steps is None else steps)]
    if chosen:
        options.setdefault("step", chosen[-1])
    view = TimelineView(timeline, snapshots=chosen, title=title, **options)
    try:
        return view.save_html(path, title=title, compress=compress)
    finally:
        close_widgets(view)
