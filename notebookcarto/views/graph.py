"""AttributionGraph: Summit's attribution graph and NeuroCartography's cluster graph."""

from __future__ import annotations

import traitlets as t

from . import adapters
from .base import View
from .traits import Option, OptionError, check_options

__all__ = ["GRAPH_KINDS", "TILES", "AttributionGraph", "check_kind"]

GRAPH_KINDS = tuple(adapters.GRAPHS)  # every kind of graph the view can show
TILES = ("patches", "featvis")  # what node tiles show: example patches, feature visualisations


def check_kind(kind: str, kinds: list[str]) -> str:
    """``kind`` if this atlas has graphs of that kind (``kinds``), else an ``OptionError`` (a
    ``ValueError``); "" only when it has none."""
    if kind in kinds or (kind == "" and not kinds):
        return kind
    raise OptionError(f"kind {kind!r} is not available: this atlas has {kinds}"
                      + ("" if kind in GRAPH_KINDS or kind == "" else
                         f" (graph kinds are {list(GRAPH_KINDS)})"))


class AttributionGraph(View):
    """Summit's graph view and NeuroCartography's cluster graph for the selected class.

    Layers run top (deep) to bottom (shallow); nodes show example patches, sized by count, with
    their channel (or cluster) and the concept the atlas gives them (the dissection's, when it has
    one) underneath; edge width follows the influence weight. The graph opens readable: tiles at
    least 40 px and labels at full size, the deepest layers first ("Fit" shows all of it, "1:1"
    comes back). Hover greys out all but the node's neighbourhood and shows its patches (a
    cluster's members with theirs), animating its edges; click selects the neuron (or the
    cluster's members) and pins a card with its top-3 inputs, until the graph or the selection
    changes elsewhere; ``min_count`` hides small nodes; the width and height sliders spread the
    layout; drag pans; the wheel zooms with Ctrl (or ⌘) held or after a click in the graph, and
    scrolls the notebook otherwise; the class picker searches the class names. ``kind`` switches
    between the attribution graph and the cluster graph; a note says which analysis makes a
    graph the atlas lacks.

    With feature visualisations attached (``featvis.visualize``), ``tiles="featvis"`` (the
    toolbar's "patches" / "feature vis." switch) shows each node's visualisation instead of its
    patches (nodes without one keep their patches), and the card shows the visualisation beside
    the patches.

    A graph holds every node and edge its analysis keeps, but by default shows only those its
    caps mark ``shown`` (``max_nodes`` a layer, ``max_edges`` into a layer), laid out at ``x``;
    ``show_all=True`` (the toolbar's "all nodes" toggle, which says how many nodes it draws of
    how many) draws all of them, laid out at ``x_all``.
    """

    _view = t.Unicode("graph").tag(sync=True)
    graphs = t.Dict().tag(sync=True)
    kinds = t.List(t.Unicode()).tag(sync=True)
    kind = Option(("", *GRAPH_KINDS), default_value="").tag(sync=True)  # one of kinds
    min_count = t.Float(0).tag(sync=True)
    x_scale = t.Float(1.0).tag(sync=True)
    y_scale = t.Float(1.0).tag(sync=True)
    tiles = Option(TILES, default_value="patches").tag(sync=True)
    show_all = t.Bool(False).tag(sync=True)  # every node and edge, not only the shown ones
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, kind: str | None = None, min_count: float = 0,
                 tiles: str = "patches", show_all: bool = False, height: int = 520,
                 state=None, data=None):
        check_options(type(self), tiles=tiles)
        if tiles == "featvis" and adapters.feature_visualizations(atlas) is None:
            raise ValueError("tiles='featvis' shows feature visualisations, but "
                             + adapters.note("feature_visualizations"))
        graphs, notes = adapters.graphs(atlas)
        kinds = list(graphs)
        if kind is None:
            kind = kinds[0] if kinds else ""
        check_kind(kind, kinds)
        super().__init__(atlas, state=state, data=data, graphs=graphs, kinds=kinds, kind=kind,
                         min_count=min_count, tiles=tiles, show_all=show_all, height=height,
                         notes=notes)

    @t.validate("kind")
    def _check_kind(self, proposal):
        return check_kind(proposal["value"], self.kinds)
