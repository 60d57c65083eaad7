"""Python side of the views: data they send, the shared selection, the offline export.

``helpers.fake_sections`` writes well-formed stand-ins of every section the analyses write, so
the views are tested with full data quickly; the browser tests reuse it.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct

import numpy as np
import pytest
import torch

from helpers import XSS, fake_sections, small_atlas
from notebookcarto import Atlas
from notebookcarto.analyses import attach_patches
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.testing import planted_model

# ---- attach_patches ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain():
    """(atlas with patches only, model, data set)."""
    return small_atlas()


@pytest.fixture(scope="module")
def full():
    atlas, model, data = small_atlas(n=160, seed=2)
    fake_sections(atlas)
    return atlas


def test_attach_patches_matches_neuron_patches(plain):
    from notebookcarto.analyses import neuron_patches, receptive_fields

    atlas, model, data = plain
    section = atlas.sections["patches"]
    meta, arrays = section["meta"], section["arrays"]
    assert meta["k"] == 9 and meta["size"] == 24 and meta["layers"] == atlas.layers
    n = len(atlas.neuron_ids)
    assert arrays["patches"].shape == (n, 9, 24, 24, 3) and arrays["patches"].dtype == np.uint8
    assert arrays["heatmaps"].shape == (n, 9, 24, 24) and arrays["values"].shape == (n, 9)
    rf = receptive_fields(model, atlas.layers, (3, 32, 32))
    for neuron in [atlas.layers[0] + ":1", atlas.layers[2] + ":5", atlas.layers[-1] + ":7"]:
        i = atlas.neuron_ids.index(neuron)
        top = atlas.top_images(neuron).head(9)
        expected = neuron_patches(atlas, neuron, data, rf, n=9, size=24, fill=None)
        assert np.array_equal(arrays["patches"][i, :len(expected)], expected)
        assert np.allclose(arrays["values"][i, :len(top)], top["value"].to_numpy())
        assert np.array_equal(arrays["images"][i, :len(top)], top["image"].to_numpy())


def test_attach_patches_planted_heatmaps_are_exact():
    """The planted detectors fire exactly where their colour lies within one pixel: with the
    patch at the size of the 3x3 receptive field, the heat map is > 0 exactly there."""
    from scipy.ndimage import binary_dilation

    data = ConceptPlayground(n=160, size=32, seed=3)
    model = planted_model(data)
    images, labels = data.tensors()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=80)
    atlas = Atlas.build(model, loader, ["detect"], class_names=data.classes, top_n=6,
                        progress=False)
    section = attach_patches(atlas, model, data, k=5, size=3, fill=127, progress=False)
    heat, patches = section["arrays"]["heatmaps"], section["arrays"]["patches"]
    from notebookcarto.analyses import receptive_fields

    rf = receptive_fields(model, ["detect"], (3, 32, 32))["detect"]
    assert rf.size == (3, 3)
    checked = 0
    for channel, colour in model.planted.items():
        concept = data.concept_names.index(colour)
        top = atlas.top_images(f"detect:{channel}")
        assert heat[channel, 0].max() == 255  # the best patch holds the top value
        for rank, row in top.head(5).iterrows():
            mask = binary_dilation(data.masks(int(row.image))[concept], np.ones((3, 3), bool))
            t, l, b, r = rf.box(int(row.row), int(row.col))
            padded = np.pad(mask, 3)
            expected = padded[t + 3:b + 3, l + 3:r + 3]
            assert np.array_equal(heat[channel, rank] > 0, expected)
            image = np.pad(data.image_uint8(int(row.image)), ((3, 3), (3, 3), (0, 0)),
                           constant_values=127)
            assert np.array_equal(patches[channel, rank], image[t + 3:b + 3, l + 3:r + 3])
            checked += 1
    assert checked >= 10


def test_attach_patches_errors(plain):
    atlas, model, data = plain
    with pytest.raises(ValueError, match="data set"):
        attach_patches(atlas, model, torch.utils.data.Subset(data, range(10)), progress=False)
    with pytest.raises(ValueError, match="k must"):
        attach_patches(atlas, model, data, k=0, progress=False)


# ---- shared data ----------------------------------------------------------------------------

def _decode(sheet: bytes) -> np.ndarray:
    from PIL import Image
    import io

    return np.asarray(Image.open(io.BytesIO(sheet)).convert("RGB"))


def test_sprite_sheets_hold_the_patches(plain):
    from notebookcarto.views import AtlasData

    atlas = plain[0]
    patches = atlas.sections["patches"]["arrays"]["patches"]
    data = AtlasData.from_atlas(atlas, image_format="png", sheet_rows=32)
    s, k, rows = data.patch_size, data.patch_k, data.sheet_rows
    assert (s, k, rows) == (24, 9, 32) and data.patch_format == "png"
    assert len(data.patch_sheets) == -(-len(atlas.neuron_ids) // rows)
    for i in [0, 31, 32, len(atlas.neuron_ids) - 1]:
        sheet = _decode(data.patch_sheets[i // rows])
        r = i % rows
        for rank in (0, 8):
            tile = sheet[r * s:(r + 1) * s, rank * s:(rank + 1) * s]
            assert np.array_equal(tile, patches[i, rank])
    webp = AtlasData.from_atlas(atlas)  # lossy WebP: close, and much smaller
    assert webp.patch_format == "webp"
    tile = _decode(webp.patch_sheets[0])[:s, :s].astype(int)
    assert np.abs(tile - patches[0, 0]).mean() < 12
    assert sum(map(len, webp.patch_sheets)) < sum(map(len, data.patch_sheets))
    values = np.frombuffer(webp.patch_values, "<f4").reshape(-1, 9)
    assert np.array_equal(values, atlas.sections["patches"]["arrays"]["values"], equal_nan=True)


def test_relevance_and_similarity_match_brute_force(plain):
    from notebookcarto.views.data import relevance_csr
    from notebookcarto.views.sidebar import class_similarity

    atlas = plain[0]
    indptr, index, value = relevance_csr(atlas)
    a = np.concatenate([atlas.aggregation(name).to_numpy() for name in atlas.layers], axis=1)
    offsets = np.cumsum([0] + [atlas.stats.layers[n].channels for n in atlas.layers])
    for c in range(len(atlas.class_names)):
        dense = np.zeros(a.shape[1])
        dense[index[indptr[c]:indptr[c + 1]]] = value[indptr[c]:indptr[c + 1]]
        expected = np.zeros(a.shape[1])
        for lo, hi in zip(offsets[:-1], offsets[1:]):
            row = a[c, lo:hi].astype(float)
            if row.max() > 0:
                expected[lo:hi] = row / row.max()
        assert np.allclose(dense, expected, atol=1e-6)
    sim = class_similarity(atlas)
    for i in range(a.shape[0]):
        for j in range(a.shape[0]):
            ni, nj = np.linalg.norm(a[i]), np.linalg.norm(a[j])
            want = a[i] @ a[j] / (ni * nj) if ni and nj else 0.0
            assert sim[i, j] == pytest.approx(want, abs=1e-5)
    capped = relevance_csr(atlas, max_per_layer=2)
    assert len(capped[1]) <= 2 * len(atlas.layers) * len(atlas.class_names)


# ---- views ------------------------------------------------------------------------------------

def test_views_say_what_is_missing(plain):
    from notebookcarto.views import AttributionGraph, ProjectionScatter

    atlas = plain[0]
    scatter = ProjectionScatter(atlas)
    assert any("'embedding'" in note for note in scatter.notes)
    assert any("'class_embedding'" in note for note in scatter.notes)
    assert scatter.color_options == ["layer", "class relevance"]
    assert scatter.snapshot_labels == [] and scatter.class_xy == b""
    xy = np.frombuffer(scatter.xy, "<f4").reshape(-1, 2)
    assert xy.shape == (len(atlas.neuron_ids), 2) and np.isfinite(xy).all()
    assert set(scatter.data.notes) >= {"clusters", "dissection"}
    graph = AttributionGraph(atlas, state=scatter.state, data=scatter.data)
    assert graph.kinds == ["top neurons"]
    assert any("'attribution_graphs'" in note for note in graph.notes)
    g = graph.graphs["top neurons"][atlas.class_names[0]]
    top = atlas.top_neurons(0, atlas.layers[-1], n=3).index.tolist()
    assert top[0] in [node["id"] for node in g["nodes"]] and g["edges"] == []
    with pytest.raises(ValueError, match="cannot|color_by"):
        ProjectionScatter(atlas, color_by="size")


def test_views_read_every_section(full):
    from notebookcarto.views import AttributionGraph, Explorer, ProjectionScatter

    atlas = full
    n, k = len(atlas.neuron_ids), len(atlas.class_names)
    explorer = Explorer(atlas)
    scatter, graph, data = explorer.scatter, explorer.graph, explorer.data
    assert scatter.color_options == ["layer", "cluster", "concept", "class relevance"]
    assert scatter.notes == [] and graph.notes == []
    assert np.array_equal(np.frombuffer(scatter.xy, "<f4").reshape(n, 2),
                          atlas.sections["embedding"]["arrays"]["xy"])
    assert scatter.snapshot_labels == ["epoch 1", "epoch 3"]
    assert len(scatter.snapshots) == 2 * n * 2 * 4
    assert len(scatter.class_xy) == len(atlas.layers) * k * 2 * 4
    assert graph.kinds == ["attribution", "cluster"]
    assert set(graph.graphs["cluster"]) == set(atlas.class_names)
    assert np.array_equal(np.frombuffer(data.cluster, "<i4"),
                          atlas.sections["clusters"]["arrays"]["cluster"])
    near = np.frombuffer(data.neighbors, "<u4").reshape(n, data.n_neighbors)
    vectors = atlas.sections["embedding"]["arrays"]["vectors"].astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    for i in (0, n // 2, n - 1):
        want = np.sort(cos[i])[::-1][:data.n_neighbors]
        assert np.allclose(np.sort(cos[i, near[i]])[::-1], want, atol=1e-5)
    concept = np.frombuffer(data.concept, "<i4")
    raw = atlas.sections["dissection"]["arrays"]["concept"]
    assert all((raw[i] == "") == (concept[i] < 0) for i in range(n))
    assert all(data.concept_names[concept[i]] == raw[i] for i in range(n) if concept[i] >= 0)
    with pytest.raises(ValueError, match="not available"):
        AttributionGraph(atlas, kind="nonsense")
    assert ProjectionScatter(atlas, mode="classes").mode == "classes"


def test_influence_edges_in_the_stand_in_graph(full):
    from notebookcarto.views.graph import top_neuron_graphs

    atlas = full
    graphs = top_neuron_graphs(atlas, per_layer=3)
    counts = atlas.sections["influence"]["arrays"]
    for c, name in enumerate(atlas.class_names[:3]):
        g = graphs[name]
        kept = {node["id"] for node in g["nodes"]}
        for edge in g["edges"]:
            later, j = atlas.parse_neuron(edge["target"])
            earlier, i = atlas.parse_neuron(edge["source"])
            assert edge["weight"] == counts[f"counts/{later}|{earlier}"][c, j, i] > 0
            assert edge["source"] in kept and edge["target"] in kept
        assert all(node["count"] > 0 for node in g["nodes"])


def test_one_selection_links_all_views_and_python(full):
    from notebookcarto.views import Explorer, NeuronSelection, PatchGallery

    atlas = full
    explorer = Explorer(atlas)
    parts = [explorer.scatter, explorer.graph, explorer.gallery, explorer.sidebar]
    assert all(p.state is explorer.state and p.data is explorer.data for p in parts)
    ids = [atlas.layers[1] + ":3", atlas.layers[0] + ":0"]
    explorer.selection = ids
    assert explorer.state.indices == [atlas.neuron_ids.index(i) for i in ids]
    sel = explorer.gallery.selection
    assert isinstance(sel, NeuronSelection) and list(sel) == ids
    assert list(sel.frame.index) == ids and "cluster" in sel.frame.columns
    explorer.selection = atlas.neurons.head(4)  # a DataFrame: its index
    assert list(explorer.selection) == atlas.neuron_ids[:4]
    cluster = atlas.sections["clusters"]["arrays"]["cluster"]
    explorer.selection = "cluster:2"
    assert explorer.state.indices == np.flatnonzero(cluster == 2).tolist()
    layer = atlas.parse_neuron(atlas.neuron_ids[int(np.flatnonzero(cluster == 2)[0])])[0]
    explorer.selection = f"cluster:2@{layer}"  # the graph's cluster node ids
    assert explorer.state.indices == np.flatnonzero(cluster == 2).tolist()
    other = next(name for name in atlas.layers if name != layer)
    with pytest.raises(KeyError, match="no members"):
        explorer.selection = f"cluster:2@{other}"
    explorer.selection = None
    assert explorer.selection == []
    with pytest.raises(KeyError, match="unknown neuron"):
        explorer.selection = ["nope:1"]
    explorer.selected_class = atlas.class_names[3]
    assert explorer.state.cls == 3 and explorer.scatter.selected_class == atlas.class_names[3]
    # the Plotly chart follows the shared selection from Python
    explorer.selection = [atlas.layers[1] + ":0", atlas.layers[1] + ":1", atlas.layers[2] + ":0"]
    counts = list(explorer.chart.data[1].y)
    assert counts == [0, 2, 1, 0][:len(atlas.layers)]
    colours = list(explorer.chart.data[0].marker.color)
    assert colours[3] != colours[0]
    # a view made alone gets its own selection
    alone = PatchGallery(atlas)
    assert alone.state is not explorer.state and alone.selection == []


def test_large_arrays_travel_as_binary(full):
    from ipywidgets.widgets.widget import _remove_buffers

    from notebookcarto.views import Explorer

    atlas = full
    explorer = Explorer(atlas, charts=False)
    n = len(atlas.neuron_ids)
    for widget in (explorer.scatter, explorer.data, explorer.sidebar):
        state = {k: v for k, v in widget.get_state().items() if k != "_esm"}
        json_state, paths, buffers = _remove_buffers(state)
        text = json.dumps(json_state)
        assert len(text) < 20 * n + 4000, (type(widget).__name__, len(text))
        assert all(isinstance(b, (bytes, memoryview)) for b in buffers)
    # positions: 8 bytes per neuron
    assert len(explorer.scatter.xy) == 8 * n


def test_export_is_one_offline_file(full, tmp_path):
    from notebookcarto.views import Explorer
    from notebookcarto.views.export import MAGIC

    atlas = full
    atlas.class_names[1] = XSS
    try:
        explorer = Explorer(atlas, title=XSS)
        path = explorer.save_html(tmp_path / "sub" / "atlas.html")
    finally:
        atlas.class_names[1] = "yellow stars on sky"
    text = open(path, encoding="utf-8").read()
    assert XSS not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=""", text)
    assert "http://" not in text and "https://" not in text
    blob = re.search(r'id="nc-payload" data-encoding="gzip">([^<]+)</script>', text).group(1)
    raw = gzip.decompress(base64.b64decode(blob))
    assert raw[:4] == MAGIC
    length = struct.unpack("<I", raw[4:8])[0]
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    assert header["root"] == explorer.model_id
    ids = {w.model_id for w in (explorer, explorer.scatter, explorer.graph, explorer.gallery,
                                 explorer.sidebar, explorer.chart, explorer.state, explorer.data)}
    assert ids <= set(header["models"])
    root_state = header["models"][explorer.model_id]["state"]
    assert root_state["scatter"] == f"anywidget:{explorer.scatter.model_id}"
    assert root_state["title"] == XSS  # rendered as text by the front end
    assert len(header["modules"]) == 3  # ours, the state-only models', Plotly's
    scatter = header["models"][explorer.scatter.model_id]
    (path_, start, size), = [b for b in scatter["buffers"] if b[0] == ["xy"]]
    xy = np.frombuffer(body[start:start + size], "<f4").reshape(-1, 2)
    assert np.array_equal(xy, atlas.sections["embedding"]["arrays"]["xy"])


def test_to_html_and_show(plain, tmp_path):
    from notebookcarto.views import Explorer, show, to_html

    atlas = plain[0]
    assert isinstance(show(atlas), Explorer)
    path = to_html(atlas, tmp_path / "a.html")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!doctype html>") and 'id="nc-payload"' in text
    assert "notebookcarto" in text
