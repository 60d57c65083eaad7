"""ExplanationView: where the model looked for one prediction, and which units carried it.

The chosen explained image with a method's heatmap over it (``method``, ``opacity``), the
deletion and insertion curves of every method for that image with their AUCs (a Plotly chart;
the chosen method's curves drawn bold), and the image's top units of the explained layer, each
with its example patch, its activation map over the image, its dissection label, its cluster's
name and the share of the mask its region covers. A click on a unit selects its neuron in every
linked view (the shared ``SelectionModel``). With a ``SAG`` of the chosen image, a panel draws
its structured attention graph (each node the image with only its patches shown, labelled with
its probability relative to the whole image's; each child's removed patch outlined by the drop);
with an ``XNN`` of the chosen image's target class, a panel shows the class's x-features (a
heatmap over the image, or over the XNN's first shown image, and the nearest neurons: a click
selects one) and its faithfulness R^2. Everything comes from the atlas's ``Explanation``,
``SAG`` and ``XNN`` (``adapters.explanation``); the view computes nothing.

With an ``explainer`` (``notebookcarto.explain.Explainer``) the view explains more images on
demand, in the kernel: the front end asks with a custom message ``{"type": "explain", "image":
id}`` (a click on an unexplained exemplar in the Explorer's gallery), the explainer explains the
image and attaches it to the atlas, and the view shows it. An exported page has no kernel: there
only the explained images are shown.
"""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from . import adapters
from ._common import plotly_text
from .base import View
from .charts import NEUTRAL
from .traits import Array, OptionError, array_to_json, option_message

__all__ = ["CURVE_COLOURS", "ExplanationView", "curves_chart"]

# one colour per method, in order (Paul Tol's "bright"), repeating
CURVE_COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"]
CHART_PX = 240
# the traits that are the explanation's arrays, as adapters.explanation names them
FIELDS = ("methods", "mask_methods", "image_ids", "targets", "labels", "predictions",
          "probabilities", "images", "heatmaps", "fractions", "deletion", "insertion",
          "deletion_auc", "insertion_auc", "patch_rows")
ON_DEMAND = ("no image explained yet: click an exemplar to explain it (in the Explorer's "
             "gallery, or view.explain_image(id))")
NO_EXPLAINER = ("this view has no explainer to explain more images: give it one, "
                "ExplanationView(atlas, explainer=Explainer(model, data, atlas=atlas)) or "
                "Explorer(atlas, explainer=...)")


def _arrays_to_json(values, widget=None):
    return [array_to_json(v) for v in values]


def curves_chart(found: dict, row: int, method: str):
    """The deletion (left) and insertion (right) curves of image ``row`` of ``found``
    (``adapters.explanation``) as a Plotly ``FigureWidget``: two traces per method, in the
    order of ``found["methods"]`` (deletion, then insertion), ``method``'s bold. The front end
    restyles them when another image or method is chosen."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("deletion", "insertion"),
                        horizontal_spacing=0.1)
    x = found["fractions"].tolist()
    for i, name in enumerate(found["methods"]):
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        width = 3 if name == method else 1.5
        for col, kind in ((1, "deletion"), (2, "insertion")):
            fig.add_trace(go.Scatter(x=x, y=found[kind][i, row].tolist(), mode="lines",
                                     name=plotly_text(name), legendgroup=str(i),
                                     showlegend=col == 1, line=dict(color=colour, width=width),
                                     hovertemplate=f"{plotly_text(name)}: %{{y:.3f}} at "
                                                   "%{x:.0%}<extra></extra>"),
                          row=1, col=col)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_layout(height=CHART_PX, margin=dict(l=8, r=8, t=28, b=8),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      font=dict(size=11, color=NEUTRAL), legend=dict(font=dict(size=10)))
    widget = go.FigureWidget(fig)
    widget._config = {"displayModeBar": False, "displaylogo": False}
    return widget


def _traits(found: dict | None, on_demand: bool) -> tuple[dict, list[str]]:
    """The traits and notes of ``found`` (``adapters.explanation``, None without one)."""
    if found is None:
        return {}, [ON_DEMAND if on_demand else adapters.note("explanation")]
    traits = {k: found[k] for k in FIELDS} | _extras(found)
    units = found["units"]
    if units is None:
        return traits, ["this explanation has no units: explain with layer=... to see the units "
                        "behind each prediction"]
    traits.update(unit_layer=units["layer"], unit_neurons=units["neurons"],
                  unit_contributions=units["contributions"], unit_coverage=units["coverage"],
                  unit_maps=units["maps"], unit_labels=units["labels"],
                  unit_cluster_labels=units["cluster_labels"], coverage_of=units["coverage_of"])
    return traits, []


def _extras(found: dict) -> dict:
    """The traits of the SAG and the XNN of ``found`` (none without them)."""
    traits = {}
    if found["sag"] is not None:
        traits.update({f"sag_{k}": v for k, v in found["sag"].items()})
    if found["xnn"] is not None:
        traits.update({f"xnn_{k}": v for k, v in found["xnn"].items()})
    return traits


class ExplanationView(View):
    """The explanations of single predictions held by the atlas (see the module docstring).

    ``image`` is the chosen image's id (one of ``image_ids``; default the first), ``method``
    the heatmap shown (one of ``methods``; default the first), ``opacity`` the heatmap's
    (0 to 1). Without an ``Explanation`` the view says which call makes one.

    ``explainer`` (an ``Explainer``) explains images on demand (``explain_image``, or a click
    on an unexplained exemplar in the Explorer's gallery); it attaches what it explains to
    ``atlas`` (``explainer.update``), merged with the explanation the atlas holds: giving the
    view an explainer asks for that. ``pending`` is the image being explained (-1: none),
    ``error`` why the last request failed ("" when it did not).
    """

    _view = t.Unicode("explanation").tag(sync=True)
    image = t.Int(-1).tag(sync=True)
    method = t.Unicode("").tag(sync=True)
    opacity = t.Float(0.6).tag(sync=True)
    methods = t.List(t.Unicode()).tag(sync=True)
    mask_methods = t.List(t.Unicode()).tag(sync=True)
    image_ids = Array("int32", ndim=1).tag(sync=True)
    targets = Array("int32", ndim=1).tag(sync=True)
    labels = Array("int32", ndim=1).tag(sync=True)  # -1: unknown
    predictions = Array("int32", ndim=1).tag(sync=True)
    probabilities = Array("float32", ndim=1).tag(sync=True)
    images = Array("uint8", ndim=4).tag(sync=True)  # (n, H, W, 3)
    # one (n, h, w) heatmap per method, in the order of methods
    heatmaps = t.List(Array("float32", ndim=3)).tag(sync=True, to_json=_arrays_to_json)
    fractions = Array("float32", ndim=1).tag(sync=True)
    deletion = Array("float32", ndim=3).tag(sync=True)  # (methods, n, steps)
    insertion = Array("float32", ndim=3).tag(sync=True)
    deletion_auc = Array("float32", ndim=2).tag(sync=True)  # (methods, n)
    insertion_auc = Array("float32", ndim=2).tag(sync=True)
    # the top units of unit_layer per image: neuron indices (-1: none), their maps and labels
    unit_layer = t.Unicode("").tag(sync=True)
    unit_neurons = Array("int32", ndim=2).tag(sync=True)
    unit_contributions = Array("float32", ndim=2).tag(sync=True)
    unit_coverage = Array("float32", ndim=2).tag(sync=True)  # NaN: no mask
    unit_maps = Array("float32", ndim=4).tag(sync=True)
    unit_labels = t.List(t.List(t.Unicode())).tag(sync=True)
    unit_cluster_labels = t.List(t.List(t.Unicode())).tag(sync=True)
    coverage_of = t.Unicode("").tag(sync=True)
    # (neurons, n_patches) the row of each example patch's image, -1: not explained (a click
    # on an explained exemplar in the Explorer's gallery shows its explanation)
    patch_rows = Array("int32", ndim=2).tag(sync=True)
    # with an explainer (explainable): the image id of each example patch (-1: none), so that
    # a click on an unexplained exemplar asks the kernel to explain its image
    explainable = t.Bool(False).tag(sync=True)
    patch_images = Array("int32", ndim=2).tag(sync=True)
    # the structured attention graphs (adapters.sag): nodes of all images, edges (E, 3)
    # parent, child, the patch the child lacks
    sag_image_ids = Array("int32", ndim=1).tag(sync=True)
    sag_probabilities = Array("float32", ndim=1).tag(sync=True)
    sag_grid = t.Int(0).tag(sync=True)
    sag_node_image = Array("int32", ndim=1).tag(sync=True)
    sag_node_patches = Array("uint8", ndim=2).tag(sync=True)
    sag_node_probability = Array("float32", ndim=1).tag(sync=True)
    sag_positions = Array("float32", ndim=2).tag(sync=True)
    sag_edges = Array("int32", ndim=2).tag(sync=True)
    # the x-features per class (adapters.xnn): heatmaps (m, n, k, h, w) on the shown images,
    # nearest neurons (m, k, t; -1: not in the atlas), their weights and labels, R^2 (m,)
    xnn_layer = t.Unicode("").tag(sync=True)
    xnn_classes = Array("int32", ndim=1).tag(sync=True)
    xnn_image_ids = Array("int32", ndim=1).tag(sync=True)
    xnn_images = Array("uint8", ndim=4).tag(sync=True)
    xnn_heatmaps = Array("float32", ndim=5).tag(sync=True)
    xnn_neurons = Array("int32", ndim=3).tag(sync=True)
    xnn_weights = Array("float32", ndim=3).tag(sync=True)
    xnn_labels = t.List(t.List(t.List(t.Unicode()))).tag(sync=True)
    xnn_r2 = Array("float32", ndim=1).tag(sync=True)
    pending = t.Int(-1).tag(sync=True)  # the image being explained, -1: none
    error = t.Unicode("").tag(sync=True)  # why the last request failed, "": it did not
    chart = anywidget.WidgetTrait().tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, atlas, *, image: int | None = None, method: str | None = None,
                 opacity: float = 0.6, height: int = 0, state=None, data=None,
                 explainer=None):
        if explainer is not None and not callable(getattr(explainer, "update", None)):
            raise TypeError(f"explainer must be a notebookcarto.explain.Explainer (with "
                            f".update(atlas, images)), got {type(explainer).__name__}")
        found = adapters.explanation(atlas)
        if found is None and (image is not None or method is not None):
            raise ValueError(adapters.note("explanation") + " before choosing an image or a "
                             "method")
        traits, notes = _traits(found, explainer is not None)
        if explainer is not None:
            traits.update(explainable=True, patch_images=adapters.patch_images(atlas))
        super().__init__(atlas, state=state, data=data, opacity=opacity, height=height,
                         notes=notes, **traits)
        self.explainer = explainer
        if found is not None:
            self.image = int(found["image_ids"][0]) if image is None else image
            self.method = found["methods"][0] if method is None else method
            self.chart = curves_chart(found, self.row, self.method)
        self.on_msg(self._on_message)

    def explain_image(self, image: int) -> None:
        """Show image ``image`` (an id into the explainer's data), explaining it first with the
        view's explainer when the atlas has not explained it: the explainer attaches it to the
        atlas (merged with what it holds) and the view's traits are read again from there.
        What a click on an unexplained exemplar in the Explorer's gallery asks for. Raises
        when ``image`` is not an integer, when the explainer fails (an id out of its data's
        range, ...) and, for an unexplained image, without an explainer; a request from the
        front end shows the error in the view (``error``) instead."""
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)):
            raise TypeError(f"an image is an integer id, got {image!r}")
        image = int(image)
        self.error = ""
        if self.image_ids is not None and image in self.image_ids:
            self.image = image
            return
        if self.explainer is None:
            raise ValueError(f"image {image} was not explained and {NO_EXPLAINER}")
        self.pending = image
        try:
            self.explainer.update(self.atlas, [image])
            self._refresh(image)
        finally:
            self.pending = -1

    def _refresh(self, image: int) -> None:
        """Read the traits again from the atlas's explanation and choose ``image``, in one
        message to the front end."""
        found = adapters.explanation(self.atlas)
        traits, notes = _traits(found, True)
        old = self.chart
        with self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)
            self.notes = notes
            self.image = image
            if self.method not in self.methods:
                self.method = self.methods[0]
            self.chart = curves_chart(found, self.row, self.method)
        if old is not None:
            old.close()

    def _on_message(self, widget, content, buffers):
        """The front end's requests: ``{"type": "explain", "image": id}``; a failure is shown in
        the view (``error``), as the front end has no other way to see it."""
        if not isinstance(content, dict) or content.get("type") != "explain":
            return
        image = content.get("image")
        try:
            self.explain_image(image)
        except Exception as err:  # any failure of the explainer: the front end shows it
            self.error = f"could not explain image {image}: {err}"

    @property
    def row(self) -> int:
        """The row of the chosen image in the traits' arrays."""
        return int(np.flatnonzero(self.image_ids == self.image)[0])

    @t.validate("image")
    def _valid_image(self, proposal):
        value = proposal["value"]
        ids = self.image_ids
        if ids is None or value not in ids:
            shown = [] if ids is None else ids[:10].tolist()
            more = " ..." if ids is not None and len(ids) > 10 else ""
            raise OptionError(f"image {value} was not explained: the explained images are "
                              f"{shown}{more} (explain more with Explainer.update)")
        return value

    @t.validate("opacity")
    def _valid_opacity(self, proposal):
        if not 0 <= proposal["value"] <= 1:
            raise OptionError(f"opacity must be between 0 and 1, got {proposal['value']}")
        return proposal["value"]

    @t.validate("method")
    def _valid_method(self, proposal):
        if proposal["value"] not in self.methods:
            raise OptionError(option_message("method", proposal["value"], self.methods))
        return proposal["value"]
