"""example_patches clips receptive-field boxes to the image by default, and cuts the heat maps with
exactly the patch's box and resize.

Ground truth: a tiny model whose ``red`` map is 1 x (red intensity) at the single red pixel of each
image; ``wide`` spreads it with a known peaked 19x19 kernel (stride 1, field larger than the 16x16
images), ``down`` with two stride-2 3x3 convolutions (stride 4, a 7x7 field, a delta map for red
pixels on the stride grid). So every map, box and patch is known in closed form; the expected
patches and heat maps are cut by hand from the images and maps and resized with Pillow directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from notebookcarto import Atlas
from notebookcarto.analyses import example_patches, receptive_fields

SIDE, HALF, SIZE = 16, 9, 33  # image side, half the wide kernel, patch size
RED = [(0, 0), (0, 4), (4, 12), (12, 0), (12, 12), (8, 8), (4, 4), (0, 12)]  # on the 4-grid
GREY = np.array([127, 127, 127], np.uint8)
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR


def kernel() -> np.ndarray:
    a = np.abs(np.arange(2 * HALF + 1) - HALF)
    return (1.0 / (1 + a[:, None] + a[None])).astype(np.float32)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.red = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU())  # relu(R - G - B)
        self.wide = nn.Conv2d(1, 1, 2 * HALF + 1, padding=HALF, bias=False)
        self.down = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False),
                                  nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False))
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.red[0].weight[:] = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
            self.red[0].bias.zero_()
            self.wide.weight[:] = torch.from_numpy(kernel())[None, None]
            for conv in self.down:  # centre 1, the rest small but nonzero (a measurable field)
                conv.weight.fill_(0.25)
                conv.weight[0, 0, 1, 1] = 1.0

    def forward(self, x):
        r = self.red(x)
        return self.fc(torch.cat([self.wide(r).amax((2, 3)), self.down(r).amax((2, 3))], 1))


@pytest.fixture(scope="module")
def setup():
    """(model, uint8 images (n, H, W, 3), red intensities, data set, atlas)."""
    rng = np.random.default_rng(0)
    n = len(RED)
    pixels = np.empty((n, SIDE, SIDE, 3), np.uint8)  # textured greenish background: R - G - B < 0
    pixels[..., 0] = rng.integers(0, 100, (n, SIDE, SIDE))
    pixels[..., 1] = rng.integers(140, 256, (n, SIDE, SIDE))
    pixels[..., 2] = rng.integers(0, 120, (n, SIDE, SIDE))
    levels = 255 - 10 * np.arange(n)  # distinct red levels: a known ranking
    for i, (y, x) in enumerate(RED):
        pixels[i, y, x] = (levels[i], 0, 0)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    labels = torch.arange(n) % 2
    data = torch.utils.data.TensorDataset(images, labels)
    model = Tiny().eval()
    atlas = Atlas.build(model, torch.utils.data.DataLoader(data, batch_size=4), ["wide", "down"],
                        class_names=["a", "b"], top_n=n, progress=False)
    return model, pixels, levels / 255.0, data, atlas


def resize(array: np.ndarray, size: int = SIZE) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((size, size), BILINEAR))
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((size, size),
                                                                               BILINEAR))


def heat_of(crop: np.ndarray, top: float, size: int = SIZE) -> np.ndarray:
    return np.rint(np.clip(resize(crop, size) / top, 0, 1) * 255).astype(np.uint8)


def wide_map(y: int, x: int, v: float) -> np.ndarray:
    """The wide channel's map for one red pixel: the kernel centred on it."""
    padded = np.zeros((SIDE + 2 * HALF, SIDE + 2 * HALF), np.float32)
    padded[y:y + 2 * HALF + 1, x:x + 2 * HALF + 1] = v * kernel()
    return padded[HALF:HALF + SIDE, HALF:HALF + SIDE]


def down_map_upsampled(y: int, x: int, v: float) -> np.ndarray:
    """The down channel's 4x4 map is v at (y/4, x/4); each position sits at the centre of its
    field (pixel 4 * row), so bilinear upsampling is a tent of half-width 4 around pixel (y, x),
    flat beyond the last position (pixel 12)."""
    i = np.minimum(np.arange(SIDE), 4 * 3)
    rows, cols = np.maximum(0, 1 - np.abs(i - y) / 4), np.maximum(0, 1 - np.abs(i - x) / 4)
    return (v * rows[:, None] * cols[None]).astype(np.float32)


def reddest(patch: np.ndarray) -> tuple[int, int]:
    p = patch.astype(int)
    return np.unravel_index(np.argmax(p[..., 0] - p[..., 1] - p[..., 2]), p.shape[:2])


def test_fields_are_as_designed(setup):
    model = setup[0]
    rf = receptive_fields(model, ["wide", "down"], (3, SIDE, SIDE))
    assert (rf["wide"].size, rf["wide"].offset, rf["wide"].stride) == ((19, 19), (-9, -9), (1, 1))
    assert rf["wide"].size[0] > SIDE  # larger than the image: every box leaves it
    assert (rf["down"].size, rf["down"].offset, rf["down"].stride) == ((7, 7), (-3, -3), (4, 4))


def test_clipped_patches_and_heat_maps_match_brute_force(setup):
    model, pixels, levels, data, atlas = setup
    section = example_patches(atlas, model, data, n_patches=len(RED), size=SIZE,
                              progress=False).to_section()
    meta, arrays = section["meta"], section["arrays"]
    assert meta["crop"] == "clip" and meta["fill"] is None
    assert meta["heatmap_layers"] == ["wide", "down"]
    ids = atlas.neuron_ids
    for layer, half, extent in (("wide", HALF, HALF + 1), ("down", 3, 4)):
        row = ids.index(f"{layer}:0")
        order = arrays["images"][row]
        assert sorted(order.tolist()) == list(range(len(RED)))
        top = levels[order].max()
        for rank, i in enumerate(order.tolist()):
            y, x = RED[i]
            t, b = max(y - half, 0), min(y + extent, SIDE)
            l, r = max(x - half, 0), min(x + extent, SIDE)
            patch = arrays["patches"][row, rank]
            assert np.array_equal(patch, resize(pixels[i, t:b, l:r]))
            assert not (patch == GREY).all(axis=-1).any()  # no fill colour anywhere
            full = wide_map(y, x, levels[i]) if layer == "wide" else \
                down_map_upsampled(y, x, levels[i])
            heat = arrays["heatmaps"][row, rank]
            expected = heat_of(full[t:b, l:r], top)
            assert np.abs(heat.astype(int) - expected).max() <= 1  # float rounding only
            # the overlay's peak lies on the pixel of the patch that shows the red pixel
            assert np.unravel_index(np.argmax(heat), heat.shape) == reddest(patch)
        assert arrays["heatmaps"][row, 0].max() == 255


def test_padding_mode_keeps_the_full_field(setup):
    model, pixels, levels, data, atlas = setup
    section = example_patches(atlas, model, data, n_patches=len(RED), size=SIZE, fill=127,
                              progress=False).to_section()
    meta, arrays = section["meta"], section["arrays"]
    assert meta["crop"] == "pad" and meta["fill"] == [127, 127, 127]
    row = atlas.neuron_ids.index("wide:0")
    order = arrays["images"][row]
    top = levels[order].max()
    centre = (SIZE // 2, SIZE // 2)
    for rank, i in enumerate(order.tolist()):
        y, x = RED[i]
        framed = np.pad(pixels[i], ((HALF, HALF), (HALF, HALF), (0, 0)), constant_values=127)
        patch = arrays["patches"][row, rank]
        assert np.array_equal(patch, resize(framed[y:y + 2 * HALF + 1, x:x + 2 * HALF + 1]))
        assert (patch == GREY).all(axis=-1).any()  # the old grey frame
        zero = np.pad(wide_map(y, x, levels[i]), HALF)
        heat = arrays["heatmaps"][row, rank]
        expected = heat_of(zero[y:y + 2 * HALF + 1, x:x + 2 * HALF + 1], top)
        assert np.abs(heat.astype(int) - expected).max() <= 1
        # the argmax stays at the centre of a padded patch, under the red pixel
        assert np.unravel_index(np.argmax(heat), heat.shape) == centre == reddest(patch)


def test_shrunk_heat_maps_are_resized_like_the_patches(setup):
    """Patches smaller than their boxes: the heat maps shrink with the same (antialiasing)
    filter as the pixels, not a plain bilinear sampling."""
    model, pixels, levels, data, atlas = setup
    size = 5
    arrays = example_patches(atlas, model, data, n_patches=len(RED), size=size,
                             progress=False).to_section()["arrays"]
    row = atlas.neuron_ids.index("wide:0")
    order = arrays["images"][row]
    top = levels[order].max()
    for rank, i in enumerate(order.tolist()):
        y, x = RED[i]
        t, b = max(y - HALF, 0), min(y + HALF + 1, SIDE)
        l, r = max(x - HALF, 0), min(x + HALF + 1, SIDE)
        assert np.array_equal(arrays["patches"][row, rank], resize(pixels[i, t:b, l:r], size))
        expected = heat_of(wide_map(y, x, levels[i])[t:b, l:r], top, size)
        assert np.abs(arrays["heatmaps"][row, rank].astype(int) - expected).max() <= 1


def test_fill_colour_and_bad_fill(setup):
    model, pixels, levels, data, atlas = setup
    section = example_patches(atlas, model, data, n_patches=2, size=SIZE, fill=(1, 2, 3),
                              heatmaps=False, progress=False).to_section()
    assert section["meta"]["fill"] == [1, 2, 3] and "heatmaps" not in section["arrays"]
    corner = section["arrays"]["patches"][atlas.neuron_ids.index("wide:0"), 0]
    assert np.array_equal(corner[0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="fill"):
        example_patches(atlas, model, data, n_patches=2, size=SIZE, fill=300, progress=False)
