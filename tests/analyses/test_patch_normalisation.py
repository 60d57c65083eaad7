"""Example patches of normalised images: the mean and std of a torchvision ``Normalize`` in the
data set's transform are found (also through a Subset and a DataLoader) and undone, so patches
show the images' own pixels; normalised tensors without mean/std give a warning. On the real
CIFAR-10 test images when ../shared is present."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from notebookcarto import Atlas
from notebookcarto.analyses import example_patches, image_getter
from notebookcarto.datasets import IMAGENET_MEAN, IMAGENET_STD, image_folder

SIDE = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder of 12 random PNG images (lossless) in two classes, ImageNet-normalised
    as ``cifar10_test`` does; and the raw pixels."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (12, SIDE, SIDE, 3), dtype=np.uint8)
    for i, pixels in enumerate(raw):
        (root / f"class{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(root / f"class{i % 2}" / f"{i:02d}.png")
    data = image_folder(root)
    order = [int(p.rpartition("/")[2][:2]) for p, _ in data.samples]
    return data, raw[order]


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def test_getter_undoes_the_normalize_of_the_transform(folder):
    data, raw = folder
    subset = torch.utils.data.Subset(data, range(len(data)))
    for source in (data, subset, torch.utils.data.DataLoader(subset, batch_size=4)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # found: no warning
            get = image_getter(source)
            got = np.stack([get(i) for i in range(len(raw))])
        assert np.abs(got.astype(int) - raw).max() <= 1  # float rounding only
    assert np.allclose(IMAGENET_MEAN, [0.485, 0.456, 0.406])  # what cifar10_test uses


def test_example_patches_show_the_images_pixels(folder):
    data, raw = folder
    net = model()
    atlas = Atlas.build(net, data, ["3"], top_n=4, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = example_patches(atlas, net, data, n_patches=4, size=SIDE, heatmaps=False,
                                 progress=False)
    # the second conv sees 5x5: the patch of a position is its clipped box, resized to SIDE;
    # no saturation from showing normalised values as pixels
    saturated = np.isin(result.patches, (0, 255)).mean()
    assert saturated < 0.05, saturated
    assert saturated <= 2 * np.isin(raw, (0, 255)).mean() + 0.01


def test_normalised_tensors_without_mean_and_std_warn(folder):
    data, raw = folder
    x = torch.stack([data[i][0] for i in range(len(data))])  # normalised: outside [0, 1]
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        image_getter(x)(0)
    get = image_getter(x, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(get(0).astype(int) - raw[0]).max() <= 1


def test_cifar10_patches_are_not_saturated(shared):
    """The README's CIFAR-10 data (ImageNet-normalised JPEGs): patches of the ResNet-20 show the
    images as they are, not clipped to 0 or 255."""
    from notebookcarto.datasets import cifar10_test
    from notebookcarto.models import load_resnet20

    full = cifar10_test(shared / "data" / "cifar10-test")
    data = torch.utils.data.Subset(full, range(0, 10_000, 50))  # 200 images, all classes
    net = load_resnet20(shared / "models" / "resnet20-cifar10.th")
    atlas = Atlas.build(net, data, ["layer1.0", "layer3.2"], top_n=5, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = example_patches(atlas, net, data, n_patches=3, heatmaps=False, progress=False)
    share = np.isin(result.patches, (0, 255)).mean()
    assert share < 0.05, share  # without un-normalising: about 65 %
    raw = np.asarray(Image.open(full.samples[0][0]).convert("RGB"))
    assert np.abs(image_getter(data)(0).astype(int) - raw).max() <= 1
