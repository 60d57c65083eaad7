"""Linked notebook views of an Atlas (anywidget), and the offline HTML export.

``show(atlas)`` returns the ``Explorer``; each view (``ProjectionScatter``, ``AttributionGraph``,
``PatchGallery``, ``ClassSidebar``, ``DissectionPanel``, ``ExplanationView``) also works alone,
and views built with the same ``state`` (a ``SelectionModel``) and ``data`` (an ``AtlasData``)
are linked.
``to_html(atlas, path)`` writes the Explorer as one self-contained HTML file; ``Plots(atlas)``
(``atlas.plot``) makes Plotly figures of A, I and the confusion matrix.
``TimelineView(timeline)`` (or of a ``Monitor``, live) shows a training run's curves beside the
Explorer of the chosen snapshot; ``timeline_html(timeline, path)`` writes it offline.
"""

from .data import AtlasData
from .dissection import DissectionPanel
from .explanation import ExplanationView
from .explorer import Explorer, show, to_html
from .export import save_html
from .figures import Plots
from .gallery import PatchGallery
from .graph import AttributionGraph
from .scatter import ProjectionScatter
from .selection import NeuronSelection, SelectionModel
from .sidebar import ClassSidebar
from .timeline import TimelineView, timeline_html

__all__ = ["AtlasData", "AttributionGraph", "ClassSidebar", "DissectionPanel", "ExplanationView",
           "Explorer", "NeuronSelection", "PatchGallery", "Plots", "ProjectionScatter",
           "SelectionModel", "TimelineView", "save_html", "show", "timeline_html", "to_html"]
