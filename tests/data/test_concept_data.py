import numpy as np
import pytest
import torch
from PIL import Image

from helpers import LABELS, PIXEL, random_broden_arrays, write_broden
from notebookcarto.datasets import Concept, ConceptPlayground
from notebookcarto.datasets.concept_data import (BrodenFolder, ConceptData, ConceptSample,
                                                 ConceptTensors, PlaygroundConcepts,
                                                 check_sample, decode_broden_mask)

@pytest.fixture
def broden(tmp_path):
    images, maps, textures = random_broden_arrays()
    splits = ["train" if i < 7 else "val" for i in range(len(images))]
    root = write_broden(tmp_path / "broden", images, maps, textures, splits=splits)
    return root, images, maps, textures


# ---------------------------------------------------------------------------- playground
def test_playground_adapter_gives_exact_masks():
    ds = ConceptPlayground(n=6, seed=4)
    data = PlaygroundConcepts(ds)
    assert isinstance(data, ConceptData) and len(data) == 6
    assert data.concept_names == ds.concept_names and data.categories == ds.categories
    for i in range(len(ds)):
        s = check_sample(data.sample(i), len(data.concepts), i)
        full = ds.masks(i)
        assert torch.equal(s.image, ds[i][0])
        assert s.mask_concepts.tolist() == np.flatnonzero(ds.image_concepts(i)).tolist()
        assert np.array_equal(s.masks.numpy(), full[s.mask_concepts.numpy()])
        assert s.mask_shape == (32, 32) and len(s.labels) == 0
        assert np.array_equal(data.image_uint8(i), ds.image_uint8(i))


def test_playground_adapter_half_resolution():
    ds = ConceptPlayground(n=2, size=64, seed=1)
    s = PlaygroundConcepts(ds, mask_size=32).sample(0)
    full = ds.masks(0)[np.asarray(s.mask_concepts)]
    assert tuple(s.masks.shape[1:]) == (32, 32) and s.mask_shape == (32, 32)
    # nearest-exact halving samples the pixel at odd coordinates
    assert np.array_equal(s.masks.numpy(), full[:, 1::2, 1::2])


def test_concept_tensors_batches_match_samples():
    data = PlaygroundConcepts(ConceptPlayground(n=5, seed=2))
    mem = ConceptTensors.from_data(data)
    assert len(mem) == 5 and mem.mask_shape == (32, 32) and mem.labels is None
    fast = mem.load_batch([1, 3])[0]
    generic = ConceptData.load_batch(mem, [1, 3])[0]
    assert torch.equal(fast.images, generic.images) and torch.equal(fast.index, generic.index)
    for b in range(2):
        dense = torch.zeros(len(mem.concepts), 32, 32, dtype=torch.bool)
        for m, c in zip(generic.masks[b], generic.mask_concepts[b]):
            if c >= 0:
                dense[c] = m
        assert torch.equal(dense, fast.masks[b])
    assert np.array_equal(mem.image_uint8(3), data.image_uint8(3))


# ---------------------------------------------------------------------------- Broden
def test_broden_folder_reads_masks_labels_and_categories(broden):
    root, images, maps, textures = broden
    data = BrodenFolder(root)
    assert len(data) == 10
    names = [c.name for c in data.concepts]
    assert names == [name for _, name, _ in LABELS]
    cats = {c.name: c.category for c in data.concepts}
    assert cats["green"] == "color" and cats["disc"] == "object" and cats["striped"] == "texture"
    for i in range(len(data)):
        s = check_sample(data.sample(i), len(data.concepts), i)
        assert s.mask_shape == (8, 8)
        assert torch.equal(s.image, torch.from_numpy(images[i]).permute(2, 0, 1).float() / 255)
        got = {names[c]: m.numpy() for c, m in zip(s.mask_concepts.tolist(), s.masks)}
        want = {}
        for category, numbers in PIXEL.items():
            for number in numbers:
                m = maps[category][i] == number
                if m.any():
                    want[dict((n, nm) for n, nm, _ in LABELS)[number]] = m
        assert got.keys() == want.keys()
        for name in want:
            assert np.array_equal(got[name], want[name]), (i, name)
        assert sorted(names[c] for c in s.labels.tolist()) == sorted(
            dict((n, nm) for n, nm, _ in LABELS)[v] for v in textures["texture"][i])
        assert np.array_equal(data.image_uint8(i), images[i])
    assert "deep" in {names[c] for i in range(10) for c in data.sample(i).mask_concepts}


def test_broden_split_and_category_filters(broden):
    root = broden[0]
    assert len(BrodenFolder(root, split="val")) == 3
    data = BrodenFolder(root, categories=["texture"])
    assert [c.name for c in data.concepts] == ["striped", "dotted"]
    s = check_sample(data.sample(0), 2)
    assert s.masks.shape[0] == 0  # masks of other categories are dropped
    data = BrodenFolder(root, transform=lambda pil: torch.zeros(3, 4, 4))
    assert data.sample(0).image.shape == (3, 4, 4)


def test_broden_mask_decoding():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (44, 1, 0)
    rgb[1, 1] = (5, 0, 9)
    assert decode_broden_mask(rgb).tolist() == [[300, 0], [0, 5]]


def test_broden_bad_input(tmp_path):
    images, maps, textures = random_broden_arrays(n=3)
    root = write_broden(tmp_path / "a", images, maps, textures)
    wrong = np.zeros((5, 5, 3), dtype=np.uint8)
    wrong[0, 0, 0] = 1
    Image.fromarray(wrong).save(root / "images" / "img0_color.png")
    with pytest.raises(ValueError, match="5x5 but index.csv gives the mask size"):
        BrodenFolder(root).sample(0)
    maps["color"][1, 0, 0] = 77  # a label number missing from label.csv
    root = write_broden(tmp_path / "b", images, maps, textures)
    with pytest.raises(KeyError, match=r"unknown label number\(s\) \[77\]"):
        BrodenFolder(root).sample(1)
    textures["texture"][0] = [6, 99]
    root = write_broden(tmp_path / "c", images, maps, textures)
    with pytest.raises(KeyError, match="99"):
        BrodenFolder(root).sample(0)
    with pytest.raises(FileNotFoundError, match="index.csv"):
        BrodenFolder(tmp_path / "missing")


# ---------------------------------------------------------------------------- contract
def test_check_sample_rejects_bad_samples():
    image = torch.zeros(3, 8, 8)
    masks = np.zeros((2, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="2 masks but 1 mask concepts"):
        check_sample(ConceptSample(image, masks, [0]), 3)
    with pytest.raises(ValueError, match="masks must be \\(M, h, w\\)"):
        check_sample(ConceptSample(image, np.zeros((4, 4), bool), [0]), 3)
    with pytest.raises(ValueError, match="do not match mask_shape"):
        check_sample(ConceptSample(image, masks, [0, 1], mask_shape=(8, 8)), 3)
    with pytest.raises(ValueError, match="out of range"):
        check_sample(ConceptSample(image, masks, [0, 5]), 3)
    with pytest.raises(ValueError, match="more than once"):
        check_sample(ConceptSample(image, masks, [0, 1], labels=[1]), 3)
    with pytest.raises(ValueError, match="float tensor"):
        check_sample(ConceptSample(torch.zeros(3, 8, 8, dtype=torch.uint8)), 3)
    with pytest.raises(ValueError, match="boolean"):
        check_sample(ConceptSample(image, np.full((1, 4, 4), 0.5), [0]), 3)
    s = check_sample(ConceptSample(image, labels=[2]), 3)  # labels only: counted at image size
    assert s.mask_shape == (8, 8) and s.masks.shape == (0, 8, 8)


def test_concept_tensors_and_names_bad_input():
    concepts = [Concept("red", "colour"), Concept("sky", "background")]
    with pytest.raises(ValueError, match=r"masks must be \(N=2, K=2, h, w\)"):
        ConceptTensors(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4, dtype=torch.bool),
                       concepts)
    with pytest.raises(ValueError, match="unique"):
        ConceptTensors(torch.zeros(1, 3, 8, 8), None, concepts + [Concept("red", "x")])
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, 0] = True
    with pytest.raises(ValueError, match="both a mask and a label"):
        ConceptTensors(torch.zeros(1, 3, 8, 8), masks, concepts, labels=[[True, False]])
    data = ConceptTensors(torch.zeros(1, 3, 8, 8), masks, concepts)
    assert data.concept_index(["sky", "red"]) == [1, 0]
    with pytest.raises(KeyError, match="did you mean red"):
        data.concept_index(["reed"])
