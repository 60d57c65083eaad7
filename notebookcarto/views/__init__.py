"""Linked notebook views of an Atlas (anywidget), and the offline HTML export.

``show(atlas)`` returns the ``Explorer``; each view (``ProjectionScatter``,
``AttributionGraph``, ``PatchGallery``, ``ClassSidebar``) also works alone, and views built with
the same ``state`` (a ``SelectionModel``) and ``data`` (an ``AtlasData``) are linked.
``to_html(atlas, path)`` writes the Explorer as one self-contained HTML file.
"""

from .data import AtlasData
from .explorer import Explorer, show, to_html
from .export import save_html
from .gallery import PatchGallery
from .graph import AttributionGraph
from .scatter import ProjectionScatter
from .selection import NeuronSelection, SelectionModel
from .sidebar import ClassSidebar

__all__ = ["AtlasData", "AttributionGraph", "ClassSidebar", "Explorer", "NeuronSelection",
           "PatchGallery", "ProjectionScatter", "SelectionModel", "save_html", "show", "to_html"]
