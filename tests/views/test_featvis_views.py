"""Feature visualisations in the views: the shared data carries them as sprite sheets under the
ids of neurons and graph nodes, the graph can switch its tiles to them, the export carries them,
and an atlas without them sends nothing new."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import struct

import numpy as np
import pytest

from helpers import fake_results, small_atlas


def _decode(sheet: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(sheet)).convert("RGB"))


def _graph_targets(atlas) -> list[str]:
    """Two neurons of the first class's attribution graph (block2 and block4: VITAL matches
    an inner neuron at earlier layers), a cluster node of its cluster graph past block1, and
    the class."""
    graph = atlas.get("attribution_graphs").graphs[atlas.class_names[0]]
    neurons = [next(n["id"] for n in graph["nodes"] if n["layer"] == layer)
               for layer in ("block2", "block4")]
    clusters = atlas.get("cluster_graphs").graphs[atlas.class_names[0]]
    cluster = next(n["id"] for n in clusters["nodes"] if n["layer"] != "block1")
    return [*neurons, cluster, "class:0"]


@pytest.fixture(scope="module")
def atlas():
    """A playground atlas with stand-ins of every result and VITAL's visualisations (two steps)
    of graph nodes: two neurons, a cluster, a class."""
    from notebookcarto.featvis import visualize

    atlas, model, data = small_atlas(n=160, seed=2)
    fake_results(atlas)
    atlas.attach(visualize(model, _graph_targets(atlas), data=data, atlas=atlas, steps=2,
                           warmup=1, progress=False))
    return atlas


def test_data_carries_the_visualisations(atlas):
    from notebookcarto.views import AtlasData

    fv = atlas.get("feature_visualizations")
    data = AtlasData.from_atlas(atlas, image_format="png", sheet_rows=3)
    assert data.fv_keys == fv.targets and data.fv_labels == fv.labels
    assert data.fv_method == "vital" and data.fv_format == "png"
    assert (data.fv_size, data.fv_rows) == (32, 3) and len(data.fv_sheets) == 2
    for row, key in enumerate(fv.targets):
        sheet = _decode(data.fv_sheets[row // 3])
        assert sheet.shape == (3 * 32 if row < 3 else 32, 32, 3)
        tile = sheet[(row % 3) * 32:(row % 3 + 1) * 32]
        assert np.array_equal(tile, fv.image(key)), key
    # the keys are the ids the graphs give their nodes
    nodes = {n["id"] for kind in ("attribution_graphs", "cluster_graphs")
             for g in atlas.get(kind).graphs.values() for n in g["nodes"]}
    assert set(fv.targets[:3]) <= nodes


def test_square_tiles_centre_other_shapes():
    from notebookcarto.views.data import square_tiles

    images = np.full((2, 4, 6, 3), 200, np.uint8)
    images[1] = 9
    tiles = square_tiles(images)
    assert tiles.shape == (2, 1, 6, 6, 3)
    assert (tiles[:, 0, :1] == 0).all() and (tiles[:, 0, 5:] == 0).all()
    assert (tiles[0, 0, 1:5] == 200).all() and (tiles[1, 0, 1:5] == 9).all()


def test_graph_switches_tiles_only_with_visualisations(atlas):
    from notebookcarto.views import AttributionGraph
    from notebookcarto.views.traits import OptionError

    graph = AttributionGraph(atlas, tiles="featvis")
    assert graph.tiles == "featvis" and graph.data.fv_keys
    graph.tiles = "patches"
    with pytest.raises(OptionError, match="'featvis'"):
        graph.tiles = "feature vis"
    fv = atlas.detach("feature_visualizations")
    try:
        with pytest.raises(ValueError, match=r"featvis\.visualize"):
            AttributionGraph(atlas, tiles="featvis")
        assert AttributionGraph(atlas).tiles == "patches"
    finally:
        atlas.attach(fv)


def test_nothing_is_sent_without_them(atlas):
    from notebookcarto.views import AtlasData

    fv = atlas.detach("feature_visualizations")
    try:
        data = AtlasData.from_atlas(atlas)
    finally:
        atlas.attach(fv)
    assert data.fv_keys == [] and data.fv_labels == [] and data.fv_sheets == []
    assert (data.fv_size, data.fv_rows, data.fv_method) == (0, 0, "")
    assert "feature_visualizations" not in data.notes


def test_export_carries_them(atlas, tmp_path):
    from notebookcarto.views import AtlasData, Explorer
    from notebookcarto.views.export import MAGIC

    fv = atlas.get("feature_visualizations")
    explorer = Explorer(atlas, charts=False, data=AtlasData.from_atlas(atlas, image_format="png"))
    path = explorer.save_html(tmp_path / "atlas.html")
    text = open(path, encoding="utf-8").read()
    blob = re.search(r'id="nc-payload" data-encoding="gzip">([^<]+)</script>', text).group(1)
    raw = gzip.decompress(base64.b64decode(blob))
    assert raw[:4] == MAGIC
    length = struct.unpack("<I", raw[4:8])[0]
    header, body = json.loads(raw[8:8 + length]), raw[8 + length:]
    data = header["models"][explorer.data.model_id]
    assert data["state"]["fv_keys"] == fv.targets
    sheets = [b for b in data["buffers"] if b[0][0] == "fv_sheets"]
    assert len(sheets) == len(explorer.data.fv_sheets) >= 1
    (_, start, size), = sheets[:1]
    sheet = _decode(body[start:start + size])
    assert np.array_equal(sheet[:32], fv.images[0])
