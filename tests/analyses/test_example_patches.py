"""The example patches of a whole atlas (``example_patches``): against ``neuron_patches``, exact
heat maps of planted detectors, bad input and the round trip through save and load."""

import numpy as np
import pytest
import torch

from helpers import small_atlas
from notebookcarto import Atlas
from notebookcarto.analyses import Patches, example_patches, neuron_patches, receptive_fields
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.testing import planted_model


@pytest.fixture(scope="module")
def plain():
    """(atlas with patches only, model, data set)."""
    return small_atlas()


def test_example_patches_match_neuron_patches(plain):
    atlas, model, data = plain
    section = atlas.get(Patches).to_section()
    meta, arrays = section["meta"], section["arrays"]
    assert meta["n_patches"] == 9 and meta["size"] == 24 and meta["layers"] == atlas.layers
    n = len(atlas.neuron_ids)
    assert arrays["patches"].shape == (n, 9, 24, 24, 3) and arrays["patches"].dtype == np.uint8
    assert arrays["heatmaps"].shape == (n, 9, 24, 24) and arrays["values"].shape == (n, 9)
    rf = receptive_fields(model, atlas.layers, (3, 32, 32))
    for neuron in [atlas.layers[0] + ":1", atlas.layers[2] + ":5", atlas.layers[-1] + ":7"]:
        i = atlas.neuron_ids.index(neuron)
        top = atlas.top_images(neuron).head(9)
        expected = neuron_patches(atlas, neuron, data, rf, n_patches=9, size=24, fill=None)
        assert np.array_equal(arrays["patches"][i, :len(expected)], expected)
        assert np.allclose(arrays["values"][i, :len(top)], top["value"].to_numpy())
        assert np.array_equal(arrays["images"][i, :len(top)], top["image"].to_numpy())


def test_planted_heatmaps_are_exact():
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
    result = example_patches(atlas, model, data, n_patches=5, size=3, fill=127, progress=False)
    heat, patches = result.heatmaps, result.patches
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


def test_example_patches_errors_and_round_trip(plain, tmp_path):
    atlas, model, data = plain
    with pytest.raises(ValueError, match="data set"):
        example_patches(atlas, model, torch.utils.data.Subset(data, range(10)), progress=False)
    with pytest.raises(ValueError, match="n_patches must"):
        example_patches(atlas, model, data, n_patches=0, progress=False)
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(Patches)
    original = atlas.get(Patches)
    for key in ("patches", "heatmaps", "values", "images"):
        assert np.array_equal(getattr(back, key), getattr(original, key), equal_nan=True), key
    assert (back.layers, back.input_shape, back.heatmap_layers, back.fill) == (
        original.layers, original.input_shape, original.heatmap_layers, original.fill)
    assert np.array_equal(back.of(atlas, atlas.neuron_ids[3]),
                          original.patches[3][original.images[3] >= 0])
