"""Plotly on the Python side: the Explorer's chart and ``atlas.plot``'s figures escape every user
string, count with integer ticks and start from the current selection; the dissection panel's
data; the selection as CSV."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from helpers import HOSTILE, XSS, atlas_from_aggregation, fake_results, hostile_atlas

# what Plotly would read as markup: a tag or an entity it decodes into one
MARKUP = re.compile(r"<[a-zA-Z/!]")


@pytest.fixture(scope="module")
def hostile():
    atlas, _, _ = hostile_atlas(class_names=HOSTILE + ["plain", "other"])
    fake_results(atlas, xss=True, gallery=True)
    return atlas


def strings(value):
    """Every string inside a Plotly figure's JSON but the templates (which hold the figure's own
    markup: <br>, <extra>)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in ("hovertemplate", "texttemplate"):
                yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)
    elif isinstance(value, np.ndarray) and value.dtype == object:
        for v in value.ravel():
            yield from strings(v)


def markup_in(figure) -> list[str]:
    """Strings of the figure that Plotly would read as markup (but the <b> the chart puts
    around the selected class's label)."""
    own = re.compile(r"^<b>(.*)</b>$")
    return [s for s in strings(figure.to_plotly_json()) if MARKUP.search(own.sub(r"\1", s))]


def test_plotly_text_shows_names_as_typed():
    from notebookcarto.views._common import plotly_text, short_label, short_labels

    assert plotly_text('<a href="x">CLICK</a> & co') == '&lt;a href="x"&gt;CLICK&lt;/a&gt; &amp; co'
    assert short_label("features.denseblock4.denselayer16.conv2") == "features.dens…ayer16.conv2"
    assert len(short_label("x" * 100, 20)) == 20 and short_label("short") == "short"
    paths = [f"features.denseblock{i}.denselayer16.conv2" for i in range(3)]
    labels = short_labels(paths)
    assert len(set(labels)) == 3 and all(len(t) <= 26 for t in labels)
    assert all(f"block{i}" in t for i, t in enumerate(labels))
    same = short_label("a" * 30)
    assert short_labels(["a" * 30, "a" * 30]) == [same, same + " (2)"]


def test_selection_chart_escapes_and_follows(hostile):
    from notebookcarto.views import SelectionModel
    from notebookcarto.views.charts import HIGHLIGHT, PLAIN, selection_chart

    atlas = hostile
    state = SelectionModel(cls=3)
    state.indices = [0, 1, len(atlas.neuron_ids) - 1]
    chart = selection_chart(atlas, state)
    assert markup_in(chart) == []
    # every name is there, escaped, in full in the hover data
    custom = list(chart.data[0].customdata)
    assert custom[1] == "&lt;a href=&quot;javascript:alert(4)&quot;&gt;CLICKME&lt;/a&gt;" or \
        custom[1] == '&lt;a href="javascript:alert(4)"&gt;CLICKME&lt;/a&gt;'
    assert list(chart.data[1].customdata)[0].startswith("&lt;img")
    # the state the widget starts with (what an export holds) has the selection already
    start = chart._widget_data
    assert start[0]["marker"]["color"][3] == HIGHLIGHT
    assert start[0]["marker"]["color"][0] == PLAIN
    assert start[1]["x"] == [2, 0, 0, 1]
    # integer ticks on the counts
    axis = chart.layout.xaxis2
    assert axis.dtick == 1 and axis.tick0 == 0 and axis.tickformat == "d"
    state.indices = list(range(40))
    assert chart.layout.xaxis2.dtick == int(np.ceil(max(chart.data[1].x) / 5))
    assert all(float(v).is_integer() for v in chart.data[1].x)
    assert chart.layout.yaxis.ticktext[3].startswith("<b>")  # bold: seen where the bar is empty
    state.cls = 0
    assert list(chart.data[0].marker.color).index(HIGHLIGHT) == 0
    ticks = chart.layout.yaxis.ticktext
    assert ticks[0] == "<b>&lt;img src=x on…or=alert(1)&gt;</b>" and not ticks[3].startswith("<b>")
    assert markup_in(chart) == []
    assert chart._config.get("displayModeBar") is False


def test_chart_fits_many_classes_and_long_names():
    from notebookcarto.views.charts import chart_height, selection_figure

    names = [f"features.denseblock{i}.denselayer16.conv2" for i in range(7)]
    atlas = atlas_from_aggregation({name: np.ones((50, 3)) for name in names})
    fig = selection_figure(atlas)
    assert fig.layout.xaxis.showticklabels is False  # 50 classes: names in the hover only
    assert all(len(t) <= 26 for t in fig.layout.yaxis2.ticktext)
    assert len(set(fig.layout.yaxis2.ticktext)) == len(names)
    assert fig.layout.height == chart_height(50, 7)
    assert fig.layout.yaxis.dtick == 1  # images per class: counts


def test_atlas_plot_figures(hostile):
    atlas = hostile
    plots = atlas.plot
    layer = atlas.layers[2]
    a = plots.aggregation(layer, top=5)
    z = np.asarray(a.data[0].z)
    full = atlas.aggregation(layer).to_numpy()
    keep = np.argsort(-full.sum(0), kind="stable")[:5]
    assert np.array_equal(z, full[:, keep])
    assert markup_in(a) == []
    assert "images" in a.data[0].colorbar.title.text
    everything = plots.aggregation(layer, top=None)
    assert np.asarray(everything.data[0].z).shape == full.shape
    # I: the counts of the class into the layer from the one before
    influence = atlas.get("influence")
    earlier = atlas.layers[1]
    fig = plots.influence(atlas.class_names[1], layer, top=None)
    assert np.array_equal(np.asarray(fig.data[0].z), influence.of(earlier, layer)[1])
    assert markup_in(fig) == []
    summed = plots.influence(None, layer, top=3)
    assert np.asarray(summed.data[0].z).shape == (3, 3)
    with pytest.raises(KeyError, match="no influence counts end at layer"):
        plots.influence(0, atlas.layers[0])
    # the confusion matrix: shares of each true class, counts in the text
    confusion = plots.confusion()
    counts = atlas.stats.accuracy.confusion.numpy()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    assert np.allclose(np.asarray(confusion.data[0].z), shares)
    assert markup_in(confusion) == []
    assert np.array_equal(np.asarray(plots.confusion(normalise=False).data[0].z), counts)
    with pytest.raises(KeyError, match="unknown layer"):
        plots.aggregation("nope")


def test_plots_say_what_is_missing():
    atlas = atlas_from_aggregation({"a": np.ones((3, 4)), "b": np.ones((3, 2))})
    with pytest.raises(KeyError, match=r"atlas.attach\(analyses.count_influence"):
        atlas.plot.influence(0, "b")
    with pytest.raises(ValueError, match="no confusion matrix"):
        atlas.plot.confusion()


def test_dissection_panel_reads_the_results(hostile):
    from notebookcarto.views import DissectionPanel, Explorer

    atlas = hostile
    dissection = atlas.get("dissection")
    units, summary = dissection.units(), dissection.summary()
    panel = DissectionPanel(atlas)
    assert panel.layers == atlas.layers and panel.categories == ["colour", "texture"]
    assert panel.concepts[-1] == XSS  # names travel as data; the front end shows them as text
    rows = atlas.neuron_index(list(units.index))
    assert np.allclose(panel.unit_iou[rows], units["iou"].to_numpy(), atol=1e-6)
    assert np.array_equal(panel.unit_detector[rows].astype(bool), units["detector"].to_numpy())
    named = [panel.concepts[c] if c >= 0 else "" for c in panel.unit_concept[rows]]
    assert named == list(units["concept"])
    assert [r["layer"] for r in panel.summary] == list(summary.index)
    assert [r["texture_detectors"] for r in panel.summary] == summary["texture_detectors"].tolist()
    # the gallery as sprite sheets: one row per unit, ids with -1 where an image is missing
    gallery = atlas.get("dissection_gallery")
    assert panel.mask_k == 3 and panel.mask_size == 16 and panel.mask_sheets
    neuron = f"{atlas.layers[1]}:1"
    i = atlas.neuron_ids.index(neuron)
    ids = gallery.image_ids[atlas.layers[1]][1]
    assert panel.mask_ids[panel.mask_row[i]].tolist() == ids.tolist()
    assert Explorer(atlas).dissection is not None
    with pytest.raises(ValueError, match="sort must be"):
        DissectionPanel(atlas, sort="size")


def test_dissection_panel_without_results():
    from notebookcarto.views import DissectionPanel, Explorer

    atlas = atlas_from_aggregation({"a": np.ones((3, 4))})
    panel = DissectionPanel(atlas)
    assert panel.layers == [] and any("'dissection'" in n for n in panel.notes)
    assert Explorer(atlas, charts=False).dissection is None


def test_resize_images():
    from notebookcarto.views.dissection import resize_images

    images = np.zeros((2, 3, 100, 100, 3), np.uint8)
    images[..., 0] = 200
    small = resize_images(images, 50)
    assert small.shape == (2, 3, 50, 50, 3) and (small[..., 0] == 200).all()
    assert resize_images(small, 50) is small


def test_selection_as_csv(hostile, tmp_path):
    from notebookcarto.views import Explorer

    atlas = hostile
    explorer = Explorer(atlas, charts=False)
    explorer.selection = "cluster:2"
    text = explorer.selection.to_csv()
    frame = pd.read_csv(io.StringIO(text), index_col="neuron")
    assert list(frame.index) == list(explorer.selection)
    assert {"layer", "channel", "cluster", "concept", "iou"} <= set(frame.columns)
    path = tmp_path / "sel.csv"
    assert explorer.selection.to_csv(path) is None
    assert path.read_text() == text
    assert explorer.data.iou.dtype == np.float32
