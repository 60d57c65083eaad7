import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from notebookcarto import Atlas
from notebookcarto.analyses import dissection
from notebookcarto.analyses import Clusters, cluster_table
from notebookcarto.analyses.dissection import (Dissection, DissectionGallery, cluster_concepts,
                                               dissect, dissection_gallery, overlay_mask,
                                               rotate_channels, summary_figure, unit_gallery)
from notebookcarto.datasets import Concept, ConceptPlayground
from notebookcarto.datasets.concept_data import (BrodenFolder, ConceptData, ConceptSample,
                                                 ConceptTensors, PlaygroundConcepts)
from notebookcarto.models import evaluate
from notebookcarto.testing.planted_dissect import CORNERS, planted_dissect_model
from helpers import random_broden_arrays, write_broden

GROUND_TRUTH_QUANTILE = 0.1  # above every planted colour's coverage (2-5% of the pixels)


@pytest.fixture(scope="module")
def planted():
    ds = ConceptPlayground(n=160, seed=3)
    return ds, planted_dissect_model(ds), ConceptTensors.from_data(PlaygroundConcepts(ds))


# ---------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("method", ["original", "2020"])
def test_planted_detectors_are_found_exactly(planted, method):
    ds, model, data = planted
    coverage = data.masks.float().mean((0, 2, 3))
    for name in model.planted.values():  # the premise of the exact result (module docstring)
        assert coverage[ds.concept_names.index(name)] < GROUND_TRUTH_QUANTILE - 0.02
    corners = data.masks[:, :, [c[0] for c in CORNERS], [c[1] for c in CORNERS]]
    assert not corners[:, :16].any()  # corners only ever show backgrounds
    result = dissect(model, data, [model.layer], method=method, quantile=GROUND_TRUTH_QUANTILE,
                     progress=False)
    units = result.units()
    for ch, name in model.planted.items():
        row = units.loc[f"concepts:{ch}"]
        assert row["concept"] == name and row["iou"] >= 0.9 and row["detector"], row
        assert row["iou"] == 1.0 and row["threshold"] == 0.0  # exact: M is the concept mask
        assert row["colour_concept"] == name
    for ch in model.fillers:
        assert units.loc[f"concepts:{ch}", "iou"] < 0.04
        assert not units.loc[f"concepts:{ch}", "detector"]
    dead = units.loc[f"concepts:{model.fillers[-1]}"]
    assert dead["iou"] == 0 and dead["concept"] == ""
    summary = result.summary()
    assert summary.loc["concepts", "detectors"] == len(model.planted)
    assert summary.loc["concepts", "colour_unique"] == len(model.planted)
    assert summary.loc["concepts", "shape_detectors"] == 0


def test_default_quantile_keeps_planted_labels(planted):
    """At the default 0.005 a colour covering 2-5% of the pixels cannot reach IoU 0.9, but the
    graded response keeps M inside the concept (no tie collapses it)."""
    _, model, data = planted
    units = dissect(model, data, [model.layer], progress=False).units()
    for ch, name in model.planted.items():
        row = units.loc[f"concepts:{ch}"]
        assert row["concept"] == name and row["detector"] and row["iou"] < 0.5
        assert row["threshold"] > 1.0


# ---------------------------------------------------------------------------- reference
class Dyadic(nn.Module):
    """Layers at 16, 8 and 4 px for 16 px images; with inputs in multiples of 1/256 every
    value, resampled or not, is exact in float32 and float64."""

    def __init__(self):
        super().__init__()
        self.full = nn.Conv2d(3, 4, 1, bias=False)
        with torch.no_grad():
            self.full.weight.copy_(torch.tensor([[1., 0, 0], [0, 1, -1], [1, 1, 1], [-1, 0, 1]])
                                   .reshape(4, 3, 1, 1))
        self.pool2 = nn.AvgPool2d(2)
        self.pool4 = nn.AvgPool2d(4)

    def forward(self, x):
        z = self.full(x)
        return self.pool2(z).sum() + self.pool4(z).sum()


def to_dyadic(pil):
    return torch.from_numpy(np.asarray(pil, dtype=np.float32).copy()).permute(2, 0, 1) / 256


def bilinear(z: np.ndarray, size: int) -> np.ndarray:
    """Reference resampling of (C, h, w) to (C, size, size), half-pixel centres, clamped."""
    c, h, w = z.shape
    out = np.zeros((c, size, size))
    for y in range(size):
        sy = max((y + 0.5) * h / size - 0.5, 0.0)
        y0 = int(np.floor(sy))
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for x in range(size):
            sx = max((x + 0.5) * w / size - 0.5, 0.0)
            x0 = int(np.floor(sx))
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, y, x] = ((1 - ly) * ((1 - lx) * z[:, y0, x0] + lx * z[:, y0, x1])
                            + ly * ((1 - lx) * z[:, y1, x0] + lx * z[:, y1, x1]))
    return out


def reference(model, data, layer, thresholds, method, quantile):
    """Brute force: loops over images, units and concepts."""
    names = [c.name for c in data.concepts]
    cats = [c.category for c in data.concepts]
    categories = list(dict.fromkeys(cats))
    maps = {}
    with torch.no_grad():
        for i in range(len(data)):
            outputs = {}
            handles = [getattr(model, n).register_forward_hook(
                lambda m, a, o, n=n: outputs.__setitem__(n, o)) for n in ("full", "pool2", "pool4")]
            model(data.sample(i).image[None])
            for h in handles:
                h.remove()
            maps[i] = outputs[layer][0].double().numpy()
    samples = [data.sample(i) for i in range(len(data))]
    size = samples[0].mask_shape[0]
    up = {i: bilinear(maps[i], size) for i in maps}
    source = up if method == "2020" else maps
    pooled = np.concatenate([v.reshape(v.shape[0], -1) for v in source.values()], 1)
    n = pooled.shape[1]
    exact = np.sort(pooled, 1)[:, max(int(np.ceil((1 - quantile) * n)) - 1, 0)]
    c = maps[0].shape[0]
    inter = np.zeros((c, len(names)), dtype=np.int64)
    area = np.zeros((c, len(categories)), dtype=np.int64)
    ground = np.zeros(len(names), dtype=np.int64)
    for i, s in enumerate(samples):
        fired = up[i] > thresholds[:, None, None]
        carried = set()
        for m, concept in zip(np.asarray(s.masks), np.asarray(s.mask_concepts)):
            ground[concept] += m.sum()
            if m.any():
                carried.add(cats[concept])
            for k in range(c):
                inter[k, concept] += (fired[k] & m).sum()
        for concept in np.asarray(s.labels):
            ground[concept] += size * size
            carried.add(cats[concept])
            for k in range(c):
                inter[k, concept] += fired[k].sum()
        for g in carried:
            for k in range(c):
                area[k, categories.index(g)] += fired[k].sum()
    iou = np.zeros(inter.shape)
    for k in range(c):
        for j in range(len(names)):
            union = area[k, categories.index(cats[j])] + ground[j] - inter[k, j]
            iou[k, j] = inter[k, j] / union if union > 0 else 0.0
    return exact, inter, area, ground, iou


# one pass: the band guessed from the first batch holds (also from a single image), or misses
# (a band of zero width) or outgrows cache_limit, and the layers are counted in a second pass;
# two passes (cache_limit 0) count sparse (pixel by pixel) or dense (matrix products)
@pytest.mark.parametrize("method, estimator, tally, batch_size, cache_limit, band, passes", [
    ("original", "exact", "sparse", 5, 1 << 26, None, 1),
    ("2020", "exact", "sparse", 5, 1 << 26, None, 1),
    ("original", "sketch", "sparse", 5, 1 << 26, None, 1),
    ("2020", "exact", "sparse", 1, 1 << 26, None, 1),
    ("original", "exact", "sparse", 5, 1 << 26, (1.0, 1.0, 0.0), 2),
    ("original", "exact", "sparse", 5, 50, None, 2),
    ("original", "exact", "sparse", 4, 0, None, 2), ("original", "exact", "dense", 4, 0, None, 2),
    ("2020", "exact", "dense", 4, 0, None, 2), ("2020", "sketch", "dense", 4, 0, None, 2)])
def test_iou_equals_bruteforce_reference(tmp_path, monkeypatch, method, estimator, tally,
                                         batch_size, cache_limit, band, passes):
    monkeypatch.setattr(dissection.counting, "SPARSE_DENSITY", 1.0 if tally == "sparse" else -1.0)
    if band is not None:
        monkeypatch.setattr(dissection.counting, "BAND", band)
    images, maps, textures = random_broden_arrays(n=10, size=16, seed=1)
    data = BrodenFolder(write_broden(tmp_path / "b", images, maps, textures), transform=to_dyadic)
    model = Dyadic()
    quantile = 0.2
    result = dissect(model, data, ["full", "pool2", "pool4"], method=method, quantile=quantile,
                     estimator=estimator, batch_size=batch_size, cache_limit=cache_limit,
                     progress=False)
    assert result.params["passes"] == passes
    assert result.categories == ["color", "object", "texture"]
    for layer in ("full", "pool2", "pool4"):  # resampled down, kept, resampled up
        exact, inter, area, ground, iou = reference(model, data, layer,
                                                    result.thresholds[layer], method, quantile)
        assert np.array_equal(result.thresholds[layer], exact.astype(np.float32))
        assert np.array_equal(result.intersection[layer], inter), layer
        assert np.array_equal(result.area[layer], area), layer
        assert np.array_equal(result.ground, ground)
        assert np.array_equal(result.iou(layer), iou), layer
        assert inter.sum() > 0 and (area[:, 1] < area[:, 0]).any()  # sparse objects matter
    if (method, estimator, tally, cache_limit) != ("original", "exact", "sparse", 0):
        return
    # the same numbers through worker processes and given thresholds
    again = dissect(model, data, ["pool4"], method=method, thresholds=result.thresholds,
                    num_workers=1, batch_size=3, progress=False)
    assert np.array_equal(again.intersection["pool4"], result.intersection["pool4"])


class TwoSizes(ConceptData):
    """Images of 8 px, then of 16 px: the first batch under-estimates the positions."""

    concepts = [Concept("left", "side"), Concept("top", "side")]

    def __len__(self):
        return 6

    def sample(self, i):
        size = 8 if i < 2 else 16
        g = torch.Generator().manual_seed(i)
        masks = np.zeros((2, size, size), bool)
        masks[0, :, : size // 2] = True
        masks[1, : size // 2] = True
        return ConceptSample(torch.rand(3, size, size, generator=g), masks, [0, 1])


def test_exact_estimator_falls_back_to_the_sketch():
    data = TwoSizes()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="estimator='sketch'"):
        dissect(model, data, ["0"], estimator="exact", batch_size=2, progress=False)
    auto = dissect(model, data, ["0"], batch_size=2, progress=False)
    sketch = dissect(model, data, ["0"], estimator="sketch", batch_size=2, progress=False)
    assert np.array_equal(auto.thresholds["0"], sketch.thresholds["0"])
    assert np.array_equal(auto.iou("0"), sketch.iou("0"))


# ---------------------------------------------------------------------------- paper finding
def test_random_rotation_lowers_detectors(trained_cnn):
    """Bau et al.: rotating a layer's channel basis keeps the function, not the detectors."""
    model, _ = trained_cnn
    test = ConceptPlayground(n=400, seed=1)
    data = ConceptTensors.from_data(PlaygroundConcepts(test))
    labelled = (data.images, torch.tensor([test.label(i) for i in range(len(test))]))
    accuracy = evaluate(model, labelled)
    layers = ["block2", "block3", "block4"]
    base = dissect(model, data, layers, progress=False).summary()["detectors"].sum()
    rotated_counts = []
    for seed in (0, 1, 2):
        rotated = model
        for i, layer in enumerate(layers):
            rotated, _ = rotate_channels(rotated, layer, seed=seed * 10 + i)
        names = [f"{layer}.rotated" for layer in layers]
        x = data.images[:64]
        with torch.no_grad():
            assert torch.allclose(rotated(x), model(x), atol=1e-4)
        assert evaluate(rotated, labelled) == accuracy > 0.8
        rotated_counts.append(dissect(rotated, data, names, progress=False)
                              .summary()["detectors"].sum())
    assert np.mean(rotated_counts) < 0.85 * base, (base, rotated_counts)


# ---------------------------------------------------------------------------- bad input
class WrongMasks(ConceptData):
    concepts = [Concept("red", "colour"), Concept("sky", "background")]

    def __len__(self):
        return 2

    def sample(self, i):
        return ConceptSample(torch.zeros(3, 8, 8), np.zeros((1, 4, 4), bool), [0],
                             mask_shape=(8, 8))


def test_bad_input(planted):
    _, model, data = planted
    layer = [model.layer]
    with pytest.raises(ValueError, match=r"masks of shape \(4, 4\) do not match"):
        dissect(model, WrongMasks(), layer, progress=False)
    with pytest.raises(KeyError, match="did you mean red"):
        dissect(model, data, layer, concepts=["reed", "sky"], progress=False)
    empty = ConceptTensors(data.images[:8], None, data.concepts)
    with pytest.raises(ValueError, match="no concept masks or image-level labels"):
        dissect(model, empty, layer, progress=False)
    blank = ConceptTensors(data.images[:8], torch.zeros_like(data.masks[:8]), data.concepts)
    with pytest.raises(ValueError, match="no concept masks"):
        dissect(model, blank, layer, thresholds={"concepts": np.zeros(9)}, progress=False)
    with pytest.raises(ValueError, match="spatial maps"):
        dissect(model, data, ["fc"], progress=False)
    with pytest.raises(ValueError, match="method"):
        dissect(model, data, layer, method="2017", progress=False)
    with pytest.raises(ValueError, match="quantile"):
        dissect(model, data, layer, quantile=5, progress=False)
    with pytest.raises(ValueError, match="9 units but"):
        dissect(model, data, layer, thresholds={"concepts": np.zeros(3)}, progress=False)
    with pytest.raises(TypeError, match="ConceptData"):
        dissect(model, [(torch.zeros(3, 8, 8), 0)], layer, progress=False)


def test_concept_subset(planted):
    _, model, data = planted
    result = dissect(model, data, [model.layer], concepts=["blue", "red", "sky"],
                     quantile=GROUND_TRUTH_QUANTILE, progress=False)
    assert result.concepts == ["blue", "red", "sky"]
    assert result.categories == ["colour", "background"]
    units = result.units()
    red = [c for c, n in model.planted.items() if n == "red"][0]
    yellow = [c for c, n in model.planted.items() if n == "yellow"][0]
    assert units.loc[f"concepts:{red}", "concept"] == "red"
    assert units.loc[f"concepts:{yellow}", "iou"] == 0  # its concept is not scored


# ---------------------------------------------------------------------------- results
def test_atlas_section_clusters_chart_and_gallery(planted, tmp_path):
    ds, model, data = planted
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        data.images, torch.tensor([ds.label(i) for i in range(len(ds))])), batch_size=64)
    atlas = Atlas.build(model, loader, ["pixels", "concepts"], class_names=ds.classes,
                        progress=False)
    result = dissect(model, data, ["concepts"], quantile=GROUND_TRUTH_QUANTILE, progress=False)
    n_pixels = len(model.planted)
    cluster = np.full(len(atlas.neuron_ids), -1)
    cluster[n_pixels + 0] = cluster[n_pixels + 4] = 0  # red + a position unit
    cluster[n_pixels + 5] = 1  # a position unit alone
    atlas.attach(Clusters(cluster, cluster, atlas.neuron_ids, cluster_table(atlas, cluster), {}))
    assert atlas.attach(result) is result
    neurons = atlas.neurons
    for ch, name in model.planted.items():
        row = neurons.loc[f"concepts:{ch}"]
        assert row["concept"] == name and row["category"] == "colour" and row["iou"] == 1.0
    assert neurons.loc["concepts:4", "concept"] == ""  # not a detector: no label
    assert neurons.loc["concepts:4", "iou"] < 0.04
    assert np.isnan(neurons.loc["pixels:0", "iou"]) and neurons.loc["pixels:0", "concept"] == ""
    summary = result.summary()
    assert summary.loc["concepts", "detectors"] == n_pixels
    assert summary.loc["concepts", "colour_unique"] == n_pixels
    names = cluster_concepts(neurons)
    assert names.loc[0, "concept"] == model.planted[0]
    assert names.loc[1].to_dict() == {"concept": "", "category": "", "count": 0, "members": 1}
    # a tie on counts goes to the larger summed IoU
    neurons.loc[f"concepts:{1}", "iou"] = 2.0
    neurons.loc[f"concepts:{1}", "cluster"] = 0
    assert cluster_concepts(neurons).loc[0, "concept"] == model.planted[1]
    with pytest.raises(KeyError, match=r"lacks the columns \['cluster'\]"):
        cluster_concepts(neurons.drop(columns="cluster"))

    fig = summary_figure(atlas)
    bars = {trace.name: list(trace.y) for trace in fig.data}
    assert bars["colour"] == [n_pixels] and sum(sum(v) for v in bars.values()) == n_pixels
    assert summary_figure(result, value="unique_concepts").data[0].y[0] == n_pixels

    gallery = atlas.attach(dissection_gallery(model, data, result, n_images=4))
    ids = gallery.image_ids["concepts"]
    images_all = gallery.images["concepts"]
    assert images_all.shape == (atlas.stats.layers["concepts"].channels, 4, 32, 32, 3)
    assert images_all.dtype == np.uint8 and (ids >= 0).all()
    images, top = unit_gallery(model, data, result, "concepts:0", n_images=4)
    assert np.array_equal(images, images_all[0]) and np.array_equal(top, ids[0])
    assert np.array_equal(gallery.unit("concepts:0")[0], images)
    name = model.planted[0]
    for image, i in zip(images, top):
        mask = ds.masks(int(i))[ds.concept_names.index(name)]  # M_k is the concept mask (T=0)
        assert np.array_equal(image, overlay_mask(ds.image_uint8(int(i)), mask))
        assert mask.any()
    atlas.save(tmp_path / "atlas")
    loaded = Atlas.load(tmp_path / "atlas")
    assert loaded.neurons["concept"].equals(atlas.neurons["concept"])
    back = loaded.get(Dissection)
    assert back.layers == result.layers and back.params == result.params
    for layer in result.layers:
        assert np.array_equal(back.iou(layer), result.iou(layer))
        assert np.array_equal(back.top_images[layer], result.top_images[layer])
    pd.testing.assert_frame_equal(back.units(), result.units())
    again = loaded.get(DissectionGallery)
    assert np.array_equal(again.images["concepts"], images_all)
    assert np.array_equal(again.image_ids["concepts"], ids)
    other = Atlas.build(model, loader, ["pixels"], progress=False)
    with pytest.raises(ValueError, match="dissected layer 'concepts' is not in the atlas"):
        other.attach(result)


def test_overlay_mask():
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1:4, 1:4] = True
    out = overlay_mask(image, mask, darken=0.5, outline=(1, 2, 3))
    assert (out[0] == 100).all() and (out[:, 0] == 100).all()
    assert tuple(out[1, 1]) == (1, 2, 3) and tuple(out[3, 3]) == (1, 2, 3)  # border pixels
    assert tuple(out[2, 2]) == (200, 200, 200)  # inside: unchanged
    inner = overlay_mask(image, np.ones((4, 4), bool), outline=None)
    assert np.array_equal(inner, image)


def test_units_table_is_sortable_and_consistent(planted):
    _, model, data = planted
    result = dissect(model, data, [model.layer], quantile=GROUND_TRUTH_QUANTILE, progress=False)
    assert isinstance(result, Dissection) and "9 units" in repr(result)
    units = result.units()
    iou = result.iou(model.layer)
    assert np.allclose(units["iou"], iou.max(1))
    for g in result.categories:
        cols = [j for j, c in enumerate(result.concept_categories) if c == g]
        assert np.allclose(units[f"{g}_iou"], iou[:, cols].max(1))
    ordered = units.sort_values(["iou", "channel"], ascending=[False, True])
    assert list(ordered.index[:4]) == [f"concepts:{c}" for c in sorted(model.planted)]
    assert isinstance(result.summary(), pd.DataFrame)
    with pytest.raises(KeyError, match="not dissected"):
        result.iou("pixels")


def test_layer_changed_in_place_later_is_dissected_as_it_ran(planted):
    """The dissected layer's output is changed in place by the next module (ReLU(inplace=True));
    the counts are those of the output as the layer produced it."""
    _, _, data = planted
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    with torch.no_grad():
        conv.bias.fill_(-5.0)  # outputs mostly negative: ReLU changes the top quantile
    in_place = nn.Sequential(conv, nn.ReLU(inplace=True))
    plain = nn.Sequential(conv, nn.ReLU())
    got = dissect(in_place, data, ["0"], batch_size=40, progress=False)
    want = dissect(plain, data, ["0"], batch_size=40, progress=False)
    assert (want.thresholds["0"] < 0).any()  # negative thresholds: ReLU'd values would differ
    assert np.array_equal(got.thresholds["0"], want.thresholds["0"])
    assert np.array_equal(got.intersection["0"], want.intersection["0"])
