"""The base of all views: a link to the shared selection and atlas data models."""

from __future__ import annotations

import anywidget
import traitlets as t

from . import export
from ._common import bundle_path
from .data import AtlasData
from .selection import NeuronSelection, SelectionModel, resolve_neurons

__all__ = ["View"]


class View(anywidget.AnyWidget):
    """A notebook view of an Atlas. ``state`` (the shared ``SelectionModel``) and ``data`` (the
    shared ``AtlasData``) are widget references: views built with the same ones are linked.

    ``view.selection`` reads the selected neurons (ids, with ``.frame``) and sets them (ids,
    indices, ``"cluster:<n>"`` or ``"cluster:<n>@<layer>"`` names, or a DataFrame: its index);
    ``view.selected_class`` reads and sets the
    selected class by name. ``view.save_html(path)`` writes a self-contained offline page.
    """

    _esm = bundle_path()
    _view = t.Unicode("").tag(sync=True)
    state = anywidget.WidgetTrait().tag(sync=True)
    data = anywidget.WidgetTrait().tag(sync=True)
    height = t.Int(480).tag(sync=True)

    def __init__(self, atlas, *, state: SelectionModel | None = None,
                 data: AtlasData | None = None, **kwargs):
        if state is None:
            state = SelectionModel(cls=0 if atlas.stats.num_classes else -1)
        if data is None:
            data = AtlasData.from_atlas(atlas)
        self.atlas = atlas
        super().__init__(state=state, data=data, **kwargs)

    # -- selection --------------------------------------------------------------------------
    @property
    def selection(self) -> NeuronSelection:
        """The selected neurons: a list of ids with ``.frame`` (DataFrame) and ``.indices``."""
        return NeuronSelection(self.atlas, self.state.indices)

    @selection.setter
    def selection(self, value) -> None:
        self.state.origin = "python"
        self.state.indices = resolve_neurons(self.atlas, value)

    @property
    def selected_class(self) -> str | None:
        """The selected class name (None when no class is selected)."""
        k = self.state.cls
        return self.atlas.class_names[k] if 0 <= k < len(self.atlas.class_names) else None

    @selected_class.setter
    def selected_class(self, value) -> None:
        self.state.cls = -1 if value is None else self.atlas.class_index(value)

    def save_html(self, path, *, title: str | None = None) -> str:
        """Write this view, its data and the front-end code to one offline HTML file."""
        return export.save_html(self, path, title=title)
