"""Explorer: all views composed and linked through one selection model; ``show`` and the
atlas-level offline export ``to_html``."""

from __future__ import annotations

import anywidget
import traitlets as t

from .base import View
from .charts import selection_chart
from .data import AtlasData
from .dissection import DissectionPanel
from .explanation import ExplanationView
from .export import close_widgets, save_html
from .gallery import PatchGallery
from .graph import AttributionGraph
from .scatter import ProjectionScatter
from .selection import SelectionModel
from .sidebar import ClassSidebar

__all__ = ["Explorer", "show", "to_html"]


class Explorer(View):
    """The class sidebar, projection scatter, attribution graph, patch gallery, Plotly chart,
    (with a dissection) the dissection panel and (with an explanation) the explanation view
    of an Atlas, all sharing one
    ``SelectionModel`` (``explorer.state``): selecting or hovering in any of them shows in all.
    ``explorer.selection`` reads the selected neurons (ids with ``.frame``, a DataFrame, and
    ``.to_csv()``) and sets them; ``explorer.selected_class`` likewise for the class. The parts
    are ``explorer.scatter``, ``.graph``, ``.gallery``, ``.sidebar``, ``.chart``,
    ``.dissection`` and ``.explanation``; keyword dicts ``scatter=``, ``graph=``, ... pass
    options to them. A click on a gallery exemplar whose image the atlas explains shows its
    explanation. With an ``explainer`` (``notebookcarto.explain.Explainer``, passed to the
    explanation view, which is then shown even before the atlas explains any image) a click on
    an unexplained exemplar explains its image in the kernel and attaches it to the atlas
    (see ``ExplanationView``).

    The front end lays the parts out by the width of the Explorer's own container (three
    columns, two, or one below about 760 px) and follows the JupyterLab theme (or, in an
    exported page, the system's light or dark setting).
    """

    _view = t.Unicode("explorer").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    scatter = anywidget.WidgetTrait().tag(sync=True)
    graph = anywidget.WidgetTrait().tag(sync=True)
    gallery = anywidget.WidgetTrait().tag(sync=True)
    sidebar = anywidget.WidgetTrait().tag(sync=True)
    chart = anywidget.WidgetTrait().tag(sync=True)
    dissection = anywidget.WidgetTrait().tag(sync=True)
    explanation = anywidget.WidgetTrait().tag(sync=True)

    def __init__(self, atlas, *, title: str | None = None, charts: bool = True,
                 scatter: dict | None = None, graph: dict | None = None,
                 gallery: dict | None = None, sidebar: dict | None = None,
                 dissection: dict | None = None, explanation: dict | None = None,
                 explainer=None, data: AtlasData | None = None,
                 state: SelectionModel | None = None):
        state = state or SelectionModel(cls=0 if atlas.stats.num_classes else -1)
        data = data or AtlasData.from_atlas(atlas)
        shared = dict(state=state, data=data)
        parts = dict(
            scatter=ProjectionScatter(atlas, **{"height": 500, **(scatter or {})}, **shared),
            graph=AttributionGraph(atlas, **{"height": 500, **(graph or {})}, **shared),
            gallery=PatchGallery(atlas, **{"height": 300, **(gallery or {})}, **shared),
            sidebar=ClassSidebar(atlas, **{"height": 500, **(sidebar or {})}, **shared))
        if charts:
            parts["chart"] = selection_chart(atlas, state)
        if atlas.has("dissection"):
            parts["dissection"] = DissectionPanel(atlas, **(dissection or {}), **shared)
        if atlas.has("explanation") or explainer is not None:
            parts["explanation"] = ExplanationView(atlas, explainer=explainer,
                                                   **(explanation or {}), **shared)
        if title is None:
            info = atlas.model_info.get("class", "model")
            title = f"{info}: {len(atlas.layers)} layers, {len(atlas.neuron_ids)} neurons"
        super().__init__(atlas, title=title, height=0, **parts, **shared)


def show(atlas, **options) -> Explorer:
    """The Explorer of ``atlas`` (``options`` go to ``Explorer``)."""
    return Explorer(atlas, **options)


def to_html(atlas, path, *, title: str | None = None, compress: bool = True, **options) -> str:
    """Write the Explorer of ``atlas`` (``options`` go to ``Explorer``) to one offline HTML file
    that opens from disk with no network and no kernel; returns the path."""
    explorer = Explorer(atlas, title=title, **options)
    try:
        return save_html(explorer, path, title=title, compress=compress)
    finally:
        close_widgets(explorer)
