import numpy as np
import pytest
import torch

from notebookcarto.datasets import CONCEPTS, PALETTE, ConceptPlayground, Scene, SceneObject
from notebookcarto.datasets.playground import CLASS_TEMPLATES, PALETTE_DARK, shape_mask
from notebookcarto.models import PlaygroundCNN, evaluate, load_or_train, train_playground_cnn
from notebookcarto.models import playground_cnn


def _category_index(ds, category):
    return [k for k, c in enumerate(ds.concepts) if c.category == category]


@pytest.fixture(scope="module")
def ds():
    return ConceptPlayground(n=300, size=32, seed=7)


def test_concept_list():
    names = [c.name for c in CONCEPTS]
    assert len(names) == len(set(names))
    assert {c.category for c in CONCEPTS} == {"colour", "shape", "texture", "background"}
    ds = ConceptPlayground(n=1)
    assert ds.concept_names == names and len(ds.classes) == len(CLASS_TEMPLATES) == 8
    assert set(ds.categories) == {"colour", "shape", "texture", "background"}
    # palette colours are saturated and far apart
    rgb = np.array(list(PALETTE.values()), dtype=float)
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[~np.eye(len(rgb), dtype=bool)].min() > 100


def test_determinism_and_order_independence():
    a = ConceptPlayground(n=50, seed=3)
    b = ConceptPlayground(n=50, seed=3)
    forward = [a.image_uint8(i) for i in range(50)]
    backward = [b.image_uint8(i) for i in reversed(range(50))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x, y)
    assert a.scene(10) == b.scene(10)
    # repeated access gives the same image
    np.testing.assert_array_equal(a.image_uint8(4), a.image_uint8(4))
    # another seed gives other images; a longer data set starts with the same images
    c = ConceptPlayground(n=50, seed=4)
    assert sum(np.array_equal(x, c.image_uint8(i)) for i, x in enumerate(forward)) == 0
    d = ConceptPlayground(n=500, seed=3)
    np.testing.assert_array_equal(d.image_uint8(49), forward[49])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_sizes(size):
    ds = ConceptPlayground(n=5, size=size, seed=0)
    x, y = ds[0]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert isinstance(y, int)
    assert ds.masks(0).shape == (len(CONCEPTS), size, size)
    assert ds.image_uint8(0).shape == (size, size, 3) and ds.image_uint8(0).dtype == np.uint8
    # the scene does not depend on the image size
    assert ds.scene(3) == ConceptPlayground(n=5, size=32, seed=0).scene(3)


@pytest.mark.parametrize("size", [20, 31, 129, 200])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        ConceptPlayground(n=5, size=size)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        ConceptPlayground(n=-1)
    with pytest.raises(ValueError, match="seed"):
        ConceptPlayground(seed=-2)


def test_indexing():
    ds = ConceptPlayground(n=10, seed=1)
    np.testing.assert_array_equal(ds.image_uint8(-1), ds.image_uint8(9))
    assert torch.equal(ds[-10][0], ds[0][0])
    for bad in (10, -11, 1000):
        with pytest.raises(IndexError):
            ds[bad]
        with pytest.raises(IndexError):
            ds.masks(bad)
    with pytest.raises(TypeError):
        ds[1.5]


def test_masks_partition_pixels(ds):
    shapes, colours = _category_index(ds, "shape"), _category_index(ds, "colour")
    textures, backs = _category_index(ds, "texture"), _category_index(ds, "background")
    for i in range(100):
        m = ds.masks(i).astype(int)
        s, c, t, b = (m[idx].sum(0) for idx in (shapes, colours, textures, backs))
        assert s.max() <= 1  # shape masks are disjoint
        obj = s == 1
        assert obj.any() and (~obj).any()
        np.testing.assert_array_equal(c, s)  # each object pixel: exactly one colour
        np.testing.assert_array_equal(t, s)  # ... and exactly one texture
        np.testing.assert_array_equal(b, 1 - s)  # backgrounds cover exactly the rest
        assert (m[backs].sum((1, 2)) > 0).sum() == 1  # a single background per image


def test_masks_match_pixels(ds):
    """Pixels under a colour mask have that colour (bright or dark texture phase)."""
    for i in range(60):
        img, m = ds.image_uint8(i), ds.masks(i)
        for name in PALETTE:
            sel = img[m[ds.concept_names.index(name)]]
            ok = np.all(sel == PALETTE[name], 1) | np.all(sel == PALETTE_DARK[name], 1)
            assert ok.all(), (i, name)
        bright = np.zeros(img.shape[:2], dtype=bool)
        for rgb in PALETTE.values():
            bright |= np.all(img == rgb, -1)
        assert bright[m[ds.concept_names.index("plain")]].all()  # plain objects have no dark pixels
        for name in ("stripes_h", "stripes_v", "dots", "checker"):
            sel = m[ds.concept_names.index(name)]
            if sel.sum() >= 30:  # a visible textured object shows both phases
                assert bright[sel].any() and not bright[sel].all(), (i, name)


def test_masks_match_scene(ds):
    for i in range(60):
        scene, m = ds.scene(i), ds.masks(i)
        owner = np.full((ds.size, ds.size), -1)
        for k, obj in enumerate(scene.objects):
            full = shape_mask(obj, ds.size)
            owner[full] = k
            assert full.sum() > 0
        for k, obj in enumerate(scene.objects):
            vis = owner == k
            assert vis.sum() >= 0.5 * shape_mask(obj, ds.size).sum()  # objects stay visible
            for name in (obj.shape, obj.colour, obj.texture):
                assert m[ds.concept_names.index(name)][vis].all()
        np.testing.assert_array_equal(m[ds.concept_names.index(scene.background)], owner < 0)
        assert 2 <= len(scene.objects) <= 3


def test_image_concepts_equal_masks_any(ds):
    for i in range(100):
        np.testing.assert_array_equal(ds.image_concepts(i), ds.masks(i).any((1, 2)))
    table = ds.concept_table()
    assert table.shape == (len(ds), len(CONCEPTS)) and table.dtype == bool
    np.testing.assert_array_equal(table[:100], np.stack([ds.image_concepts(i) for i in range(100)]))


def test_labels_unambiguous():
    ds = ConceptPlayground(n=400, seed=11)
    for i in range(len(ds)):
        scene = ds.scene(i)
        satisfied = [k for k, t in enumerate(CLASS_TEMPLATES) if t.satisfied_by(scene)]
        assert satisfied == [scene.label], (i, scene)
        assert ds[i][1] == scene.label


def test_template_matching_needs_distinct_objects():
    k = [t.name for t in CLASS_TEMPLATES].index("yellow stars on sky")
    star = SceneObject("star", "yellow", "plain", 0.3, 0.3, 0.2)
    other = SceneObject("circle", "red", "dots", 0.7, 0.7, 0.2)
    assert CLASS_TEMPLATES[k].satisfied_by(Scene(k, "sky", (star, other, star)))
    assert not CLASS_TEMPLATES[k].satisfied_by(Scene(k, "sky", (star, other)))
    assert not CLASS_TEMPLATES[k].satisfied_by(Scene(k, "grass", (star, other, star)))


def test_class_balance():
    ds = ConceptPlayground(n=2400, seed=5)
    counts = np.bincount([ds.scene(i).label for i in range(len(ds))], minlength=len(ds.classes))
    expected = len(ds) / len(ds.classes)
    assert counts.min() > 0.75 * expected and counts.max() < 1.25 * expected


def test_tensors_equal_items():
    ds = ConceptPlayground(n=40, seed=2)
    x, y = ds.tensors()
    assert x.shape == (40, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (40,) and y.dtype == torch.int64
    for i in range(40):
        xi, yi = ds[i]
        assert torch.equal(x[i], xi) and int(y[i]) == yi


def test_generation_speed():
    ds = ConceptPlayground(n=200, seed=0)
    import time

    start = time.perf_counter()
    ds.tensors()
    per_image = (time.perf_counter() - start) / len(ds)
    assert per_image < 5e-3  # about 0.3 ms on one CPU core; loose bound for busy machines




def test_quick_training_learns(one_thread):
    train = ConceptPlayground(n=1500, seed=0)
    model, hist = train_playground_cnn(train, epochs=2, batch_size=64, lr=5e-3, seed=0, progress=False)
    assert not model.training
    assert [h["epoch"] for h in hist] == [1, 2] and hist[1]["loss"] < hist[0]["loss"]
    acc = evaluate(model, ConceptPlayground(n=400, seed=1))
    assert acc > 0.4, acc  # chance is 0.125


def test_training_is_deterministic_by_seed(one_thread):
    x, y = ConceptPlayground(n=256, seed=0).tensors()
    kw = dict(epochs=2, batch_size=32, width=8, progress=False)
    m1, h1 = train_playground_cnn((x, y), seed=0, **kw)
    m2, h2 = train_playground_cnn((x, y), seed=0, **kw)
    m3, _ = train_playground_cnn((x, y), seed=1, **kw)
    assert h1 == h2
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(m1.fc.weight, m3.fc.weight)
    # training leaves the global deterministic-algorithms flag as it was
    assert not torch.are_deterministic_algorithms_enabled()


def test_cnn_shapes_and_names():
    model = PlaygroundCNN(num_classes=8, width=8)
    for size in (32, 64, 128):
        assert model(torch.rand(2, 3, size, size)).shape == (2, 8)
    names = dict(model.named_children())
    assert {"block1", "block2", "block3", "block4", "fc"} <= set(names)
    assert type(names["block1"]).__name__ == "ConvBlock"
    with pytest.raises(TypeError, match="ConceptPlayground"):
        evaluate(model, [1, 2, 3])
    with pytest.raises(ValueError, match="epochs"):
        train_playground_cnn(ConceptPlayground(n=8), epochs=0)


def test_load_or_train_caches(tmp_path, monkeypatch, one_thread):
    train = ConceptPlayground(n=128, seed=0)
    path = tmp_path / "cnn.pt"
    kw = dict(epochs=1, width=4, progress=False)
    m1, h1 = load_or_train(path, train_set=train, **kw)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))

    def fail(*a, **k):
        raise AssertionError("should have loaded the checkpoint")

    monkeypatch.setattr(playground_cnn, "train_playground_cnn", fail)
    m2, h2 = load_or_train(path, train_set=train, **kw)
    assert h2 == h1 and not m2.training
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    # other settings or another data set: retrain
    with pytest.raises(AssertionError, match="should have loaded"):
        load_or_train(path, train_set=train, **{**kw, "seed": 3})
    with pytest.raises(AssertionError, match="should have loaded"):
        load_or_train(path, train_set=ConceptPlayground(n=128, seed=9), **kw)
    with pytest.raises(TypeError, match="unknown training settings"):
        load_or_train(path, train_set=train, epoch=3)
