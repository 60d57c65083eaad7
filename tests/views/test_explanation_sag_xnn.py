"""ExplanationView with a SAG and an XNN: its traits hold their arrays as the atlas has them
(neurons as indices in the atlas, -1 for one it lacks), they travel in the export, and a view
without them sends none."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from explained import explained_atlas, with_sag_and_xnn
from notebookcarto.views import ExplanationView
from notebookcarto.views.export import MAGIC, payload

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def attached():
    atlas, found = explained_atlas()
    return atlas, *with_sag_and_xnn(atlas, found)


def test_the_traits_hold_the_sag(attached):
    atlas, sag, _ = attached
    view = ExplanationView(atlas)
    assert view.sag_image_ids.tolist() == [0, 5] and view.sag_grid == 4
    np.testing.assert_array_equal(view.sag_probabilities, sag.probabilities)
    np.testing.assert_array_equal(view.sag_node_image, sag.node_image)
    np.testing.assert_array_equal(view.sag_node_patches, sag.node_patches)
    assert view.sag_node_patches.dtype == np.uint8
    np.testing.assert_array_equal(view.sag_node_probability, sag.node_probability)
    np.testing.assert_array_equal(view.sag_positions, sag.positions)
    np.testing.assert_array_equal(view.sag_edges, np.stack([sag.edge_parent, sag.edge_child,
                                                            sag.edge_patch], 1))
    assert view.sag_edges.tolist() == [[0, 1, 0], [0, 2, 5], [3, 4, 1]]


def test_the_traits_hold_the_xnn(attached):
    atlas, _, xnn = attached
    view = ExplanationView(atlas)
    assert view.xnn_layer == "block2" and view.xnn_classes.tolist() == [3, 1]
    assert view.xnn_image_ids.tolist() == [9, 5]
    np.testing.assert_array_equal(view.xnn_images, xnn.images)
    np.testing.assert_array_equal(view.xnn_heatmaps, xnn.heatmaps)
    assert view.xnn_heatmaps.shape == (2, 2, 2, 4, 4)
    ids = np.asarray(atlas.neuron_ids)
    neurons = view.xnn_neurons
    assert (neurons[:, 1, 0] == -1).all()  # block9:1 is not in the atlas
    known = neurons >= 0
    np.testing.assert_array_equal(ids[neurons[known]], xnn.neurons[known])
    np.testing.assert_array_equal(view.xnn_weights, xnn.neuron_weights)
    assert view.xnn_labels == xnn.neuron_labels.tolist()
    np.testing.assert_array_equal(view.xnn_r2, xnn.faithfulness_r2)


def test_they_travel_in_the_export(attached):
    atlas, sag, xnn = attached
    data = payload(ExplanationView(atlas))
    size = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])[0]
    start = len(MAGIC) + 4
    header = json.loads(data[start:start + size])
    body = data[start + size:]
    model = next(m for m in header["models"].values() if m["state"].get("_view") == "explanation")
    buffers = {tuple(path): body[at:at + n] for path, at, n in model["buffers"]}
    assert buffers[("sag_node_patches", "buffer")] == sag.node_patches.astype("u1").tobytes()
    assert buffers[("xnn_heatmaps", "buffer")] == xnn.heatmaps.astype("<f4").tobytes()
    assert model["state"]["xnn_labels"] == xnn.neuron_labels.tolist()
    assert model["state"]["sag_grid"] == 4


def test_without_them_none_are_sent():
    atlas, _ = explained_atlas(n=60, seed=1)
    view = ExplanationView(atlas)
    assert view.sag_image_ids is None and view.xnn_classes is None and view.xnn_labels == []
