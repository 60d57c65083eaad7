"""Python side of the views: data they send, the shared selection, the offline export.

``helpers.fake_results`` attaches well-formed stand-ins of every result the analyses make, so
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

from helpers import XSS, fake_results, small_atlas
from notebookcarto import Atlas

# ---- atlases ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain():
    """(atlas with patches only, model, data set)."""
    return small_atlas()


@pytest.fixture(scope="module")
def full():
    atlas, model, data = small_atlas(n=160, seed=2)
    fake_results(atlas)
    return atlas


# ---- shared data ----------------------------------------------------------------------------

def _decode(sheet: bytes) -> np.ndarray:
    from PIL import Image
    import io

    return np.asarray(Image.open(io.BytesIO(sheet)).convert("RGB"))


def test_sprite_sheets_hold_the_patches(plain):
    from notebookcarto.views import AtlasData

    atlas = plain[0]
    patches = atlas.get("patches").patches
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
    values = webp.patch_values
    assert values.dtype == np.float32 and values.shape == (len(atlas.neuron_ids), 9)
    assert np.array_equal(values, atlas.get("patches").values, equal_nan=True)


def test_relevance_and_similarity_match_brute_force(plain):
    from notebookcarto.analyses import embed_classes
    from notebookcarto.views import ClassSidebar
    from notebookcarto.views.data import relevance_csr

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
    assert ClassSidebar(atlas).similarity is None  # no class embedding attached yet
    with_embedding = Atlas(atlas.stats, class_names=atlas.class_names)
    with_embedding.attach(embed_classes(with_embedding, n_epochs=20))
    sim = ClassSidebar(with_embedding).similarity
    embedding = with_embedding.get("class_embedding")
    assert np.allclose(sim, embedding.similarity)  # the sidebar sorts by the result's
    # which is the cosine of the count vectors (over the layers the result names)
    layers = getattr(embedding, "similarity_layers", None) or atlas.layers
    a = np.concatenate([atlas.aggregation(name).to_numpy() for name in layers], axis=1)
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
    assert scatter.snapshot_labels == [] and scatter.snapshots is None
    assert scatter.class_xy is None
    xy = scatter.xy
    assert xy.dtype == np.float32 and xy.shape == (len(atlas.neuron_ids), 2)
    assert np.isfinite(xy).all()
    sizes = [atlas.stats.layers[n].channels for n in atlas.layers]
    assert np.array_equal(xy[:, 0], np.repeat(np.arange(len(sizes)), sizes))  # one column a layer
    assert any("run atlas.attach(analyses.embed_neurons(atlas))" in n for n in scatter.notes)
    assert set(scatter.data.notes) >= {"clusters", "dissection"}
    graph = AttributionGraph(atlas, state=scatter.state, data=scatter.data)
    assert graph.kinds == [] and graph.graphs == {}
    assert any("'attribution_graphs'" in note and "attribution_graphs(atlas)" in note
               for note in graph.notes)
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
    assert scatter.xy.dtype == np.float32
    assert np.array_equal(scatter.xy, atlas.get("embedding").xy)
    assert scatter.snapshot_labels == ["epoch 1", "epoch 3"]
    assert scatter.snapshots.shape == (2, n, 2) and scatter.snapshots.dtype == np.float32
    assert scatter.class_xy.shape == (len(atlas.layers), k, 2)
    assert graph.kinds == ["attribution", "cluster"]
    assert set(graph.graphs["cluster"]) == set(atlas.class_names)
    assert data.cluster.dtype == np.int32
    assert np.array_equal(data.cluster, atlas.get("clusters").labels)
    near = data.neighbors
    assert near.dtype == np.uint32 and near.shape == (n, data.n_neighbors)
    vectors = atlas.get("embedding").vectors.astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    for i in (0, n // 2, n - 1):
        want = np.sort(cos[i])[::-1][:data.n_neighbors]
        assert np.allclose(np.sort(cos[i, near[i]])[::-1], want, atol=1e-5)
    concept = data.concept
    assert concept.dtype == np.int32 and concept.shape == (n,)
    raw = atlas.neurons["concept"].to_numpy()
    assert all((raw[i] == "") == (concept[i] < 0) for i in range(n))
    assert all(data.concept_names[concept[i]] == raw[i] for i in range(n) if concept[i] >= 0)
    with pytest.raises(ValueError, match="not available"):
        AttributionGraph(atlas, kind="nonsense")
    assert ProjectionScatter(atlas, mode="classes").mode == "classes"


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
    cluster = atlas.get("clusters").labels
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
    counts = list(explorer.chart.data[1].x)
    assert counts == [0, 2, 1, 0][:len(atlas.layers)]
    colours = list(explorer.chart.data[0].marker.color)
    assert colours[3] != colours[0]
    # a view made alone gets its own selection
    alone = PatchGallery(atlas)
    assert alone.state is not explorer.state and alone.selection == []


def test_large_arrays_travel_as_binary(full):
    from notebookcarto.views import Explorer
    from notebookcarto.views.export import split_buffers

    atlas = full
    explorer = Explorer(atlas, charts=False)
    n = len(atlas.neuron_ids)
    for widget in (explorer.scatter, explorer.data, explorer.sidebar, explorer.state):
        state = {k: v for k, v in widget.get_state().items() if k != "_esm"}
        json_state, paths, buffers = split_buffers(state)
        text = json.dumps(json_state)
        assert len(text) < 20 * n + 4000, (type(widget).__name__, len(text))
        assert all(isinstance(b, (bytes, memoryview)) for b in buffers)
    # positions: 8 bytes per neuron, with their dtype and shape
    wire = explorer.scatter.get_state()["xy"]
    assert wire["dtype"] == "float32" and wire["shape"] == [n, 2]
    assert isinstance(wire["buffer"], memoryview) and wire["buffer"].nbytes == 8 * n
    assert explorer.data.get_state()["neighbors"]["shape"] == [n, explorer.data.n_neighbors]


def test_array_traits_keep_dtype_and_shape():
    import traitlets as t

    from notebookcarto.views.traits import Array, array_from_json, array_to_json

    class Holder(t.HasTraits):
        xy = Array("float32", ndim=2)
        ids = Array("uint32", ndim=1, default_value=[], allow_none=False)

    holder, other = Holder(), Holder()
    assert holder.xy is None and holder.ids.shape == (0,) and holder.ids.dtype == np.uint32
    assert holder.ids is not other.ids  # each gets its own default
    holder.xy = [[1, 2], [3, 4.5], [5, 6]]
    assert holder.xy.dtype == np.float32 and holder.xy.shape == (3, 2)
    holder.ids = np.array([3, 1], dtype=np.int64)  # integers that fit
    assert holder.ids.dtype == np.uint32 and holder.ids.tolist() == [3, 1]
    with pytest.raises(t.TraitError, match="2-d"):
        holder.xy = np.zeros(4)
    with pytest.raises(t.TraitError, match="do not convert"):
        holder.ids = [-1]
    with pytest.raises(t.TraitError, match="do not convert"):
        holder.ids = [0.5]
    with pytest.raises(t.TraitError):
        holder.ids = None
    # the wire format: little-endian C-order bytes with dtype and shape, and back
    big = np.arange(6, dtype=">f4").reshape(3, 2)[::-1]  # big-endian, not contiguous
    wire = array_to_json(big)
    assert wire["dtype"] == "float32" and wire["shape"] == [3, 2]
    assert bytes(wire["buffer"]) == np.ascontiguousarray(big, "<f4").tobytes()
    back = array_from_json({"dtype": "float32", "shape": [3, 2], "buffer": wire["buffer"]})
    assert np.array_equal(back, big) and back.dtype == np.float32 and back.flags.writeable
    empty = array_to_json(np.zeros((0, 2), np.float32))
    assert empty["shape"] == [0, 2] and empty["buffer"].nbytes == 0
    assert array_from_json(empty).shape == (0, 2)
    assert array_to_json(None) is None and array_from_json(None) is None
    with pytest.raises(ValueError, match="needs 12 bytes"):
        array_from_json({"dtype": "uint32", "shape": [3], "buffer": memoryview(b"1234")})
    with pytest.raises(ValueError, match="dtype"):
        array_from_json({"dtype": "complex64", "shape": [0], "buffer": memoryview(b"")})


def test_selection_from_the_front_end(full):
    """The front end sets the selection as {dtype, shape, buffer} (ipywidgets puts the buffers
    back into the state); Python reads the indices."""
    from notebookcarto.views import SelectionModel

    state = SelectionModel()
    buffer = memoryview(np.array([5, 2, 9], "<u4").tobytes())
    state.set_state({"neurons": {"dtype": "uint32", "shape": [3], "buffer": buffer}, "cls": 2})
    assert state.indices == [5, 2, 9] and state.neurons.dtype == np.uint32 and state.cls == 2
    state.indices = [1, 4]
    assert state.get_state()["neurons"]["shape"] == [2]
    state.close()


def test_options_are_validated_enums(full):
    import traitlets as t

    from notebookcarto.views import AttributionGraph, ClassSidebar, ProjectionScatter

    atlas = full
    scatter = ProjectionScatter(atlas)
    for name, bad in [("color_by", "size"), ("filter", "some"), ("tool", "zoom"),
                      ("mode", "layers")]:
        with pytest.raises(t.TraitError, match=f"{name} must be"):
            setattr(scatter, name, bad)
        if name != "tool":  # the constructor's ValueError has the same words
            with pytest.raises(ValueError, match=f"{name} must be"):
                ProjectionScatter(atlas, **{name: bad})
    with pytest.raises(ValueError, match="did you mean 'classes'"):
        ProjectionScatter(atlas, mode="class")
    scatter.color_by, scatter.filter, scatter.tool = "cluster", "clusters", "lasso"
    sidebar = ClassSidebar(atlas, state=scatter.state, data=scatter.data)
    with pytest.raises(t.TraitError, match="sort must be"):
        sidebar.sort = "size"
    with pytest.raises(ValueError, match="sort must be"):
        ClassSidebar(atlas, sort="size")
    graph = AttributionGraph(atlas, state=scatter.state, data=scatter.data)
    graph.kind = "cluster"
    with pytest.raises(t.TraitError, match="kind must be"):
        graph.kind = "nonsense"
    assert graph.kind == "cluster"
    only_clusters = Atlas(atlas.stats, class_names=atlas.class_names)
    only_clusters.attach(atlas.get("clusters"))
    only_clusters.attach(atlas.get("cluster_graphs"))
    partial = AttributionGraph(only_clusters)
    with pytest.raises(t.TraitError, match="not available"):
        partial.kind = "attribution"  # a kind, but this atlas has only the cluster graphs
    with pytest.raises(t.TraitError, match="patch_format"):
        scatter.data.patch_format = "jpeg"


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
    assert scatter["state"]["xy"]["dtype"] == "float32"
    (path_, start, size), = [b for b in scatter["buffers"] if b[0] == ["xy", "buffer"]]
    xy = np.frombuffer(body[start:start + size], "<f4").reshape(scatter["state"]["xy"]["shape"])
    assert np.array_equal(xy, atlas.get("embedding").xy)


def test_to_html_and_show(plain, tmp_path):
    from notebookcarto.views import Explorer, show, to_html

    atlas = plain[0]
    assert isinstance(show(atlas), Explorer)
    path = to_html(atlas, tmp_path / "a.html")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!doctype html>") and 'id="nc-payload"' in text
    assert "notebookcarto" in text


def test_views_modules_import_one_way_and_say_what_they_export():
    """Every module of notebookcarto.views lists its public names in ``__all__``, and the
    modules import each other without a circle (export knows widgets only, not the views)."""
    import ast
    import importlib
    import pathlib

    import notebookcarto.views as views

    folder = pathlib.Path(views.__file__).parent
    imports = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports[path.stem] = {node.module or alias.name for node in ast.walk(tree)
                              if isinstance(node, ast.ImportFrom) and node.level == 1
                              for alias in node.names}
        module = importlib.import_module(f"notebookcarto.views.{path.stem}"
                                         if path.stem != "__init__" else "notebookcarto.views")
        assert isinstance(getattr(module, "__all__", None), list), path.name
        assert all(hasattr(module, name) for name in module.__all__), path.name
    assert imports["export"] <= {"_common"}
    seen, done = set(), set()

    def visit(name, trail):
        assert name not in seen or name in done, f"import circle: {' -> '.join(trail)}"
        if name in done:
            return
        seen.add(name)
        for other in imports.get(name, ()):
            visit(other, [*trail, other])
        done.add(name)

    for name in imports:
        visit(name, [name])
    for name in ("to_html", "save_html", "show", "Explorer", "SelectionModel", "AtlasData"):
        assert name in views.__all__ and hasattr(views, name)
