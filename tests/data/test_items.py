"""The one data adapter: every kind of source gives the same batches, ids and errors."""

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms

from notebookcarto.datasets.items import ImageData, find_normalization

X = torch.rand(10, 3, 4, 4)
Y = torch.arange(10) % 3


class Items(torch.utils.data.Dataset):
    """Items as a user's data set might give them."""

    def __init__(self, kind):
        self.kind = kind

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        if self.kind == "tuple":
            return X[i], int(Y[i]), "extra"
        if self.kind == "image":
            return X[i]
        return {"image": {"pixel_values": X[i], "labels": Y[i]},
                "hf": {"pixel_values": X[i], "labels": Y[i]},
                "tv": {"image": X[i], "target": Y[i]},
                "custom": {"img": X[i], "cls": Y[i]}}[self.kind]


def gathered(data: ImageData):
    parts = list(data.batches())
    x = torch.cat([b.images for b in parts])
    y = None if parts[0].labels is None else torch.cat([b.labels for b in parts])
    return x, y, torch.cat([b.index for b in parts])


@pytest.mark.parametrize("source, labelled", [
    (X, False), ((X, Y), True), (Items("tuple"), True), (Items("image"), False),
    (Items("hf"), True), (Items("tv"), True),
    (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=3), True),
    ([(X[:4], Y[:4]), (X[4:], Y[4:])], True),  # a list of batches, read as a loader
])
def test_every_source_gives_the_same_batches_and_ids(source, labelled):
    data = ImageData(source, batch_size=4)
    x, y, index = gathered(data)
    assert torch.equal(x, X) and torch.equal(index, torch.arange(10))
    assert (y is not None) == labelled
    if labelled:
        assert torch.equal(y, Y) and y.dtype == torch.long
    if not isinstance(source, list):
        assert torch.equal(data.images([7, 2]), X[[7, 2]])
        assert data.first_shape == (3, 4, 4) and len(data) == 10


def test_custom_keys_and_the_errors_that_name_them():
    data = ImageData(Items("custom"), batch_size=4, image_key="img", label_key="cls")
    x, y, _ = gathered(data)
    assert torch.equal(x, X) and torch.equal(y, Y)
    with pytest.raises(KeyError, match=r"keys \['img', 'cls'\]: none of \['image', "
                                       r"'pixel_values'\] names its images; pass image_key="):
        next(ImageData(Items("custom")).batches())
    with pytest.raises(KeyError, match="label_key='label' is not one of them"):
        next(ImageData(Items("custom"), image_key="img", label_key="label").batches())


def test_shuffled_loader_has_no_images_by_id_and_ids_offset():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=4,
                                         shuffle=True)
    data = ImageData(loader)
    with pytest.raises(TypeError, match="images by id need"):
        data.images([0])
    assert torch.equal(torch.cat([b.index for b in data.batches(index_offset=100)]),
                       torch.arange(100, 110))


@pytest.mark.parametrize("images, message", [
    (X.double(), r"images are torch.float64 but the model's parameters are torch.float32"),
    ((X * 255).byte(), r"images must be a float tensor of shape \(B, C, H, W\), got "
                       r"torch.uint8 tensor"),
])
def test_images_that_do_not_suit_the_model_are_refused_before_it_runs(images, message):
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match=message):
        next(ImageData(images, model=model).batches())


def test_bad_labels_and_empty_and_unreadable_sources():
    with pytest.raises(ValueError, match="hold 10 images but 9 labels"):
        ImageData((X, Y[:9]))
    with pytest.raises(ValueError, match="labels must be integer class indices"):
        next(ImageData((X, Y.float())).batches())
    with pytest.raises(ValueError, match="the loader yielded no batches"):
        next(ImageData([]).batches())
    with pytest.raises(TypeError, match="cannot read images from a int"):
        ImageData(3)
    with pytest.raises(ValueError, match="batch 0 has no labels: influence counts per class"):
        next(ImageData(X).batches(labels="required", desc="influence"))


def test_find_normalization_looks_through_loaders_subsets_and_compose():
    from torchvision.datasets import FakeData

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.4, 0.3),
                                                                         (0.2, 0.2, 0.25))])
    fake = FakeData(size=4, image_size=(3, 8, 8), transform=tf)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(fake, [0, 1]), batch_size=2)
    assert find_normalization(loader) == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.25))
    assert find_normalization(FakeData(size=2, transform=transforms.ToTensor())) is None
    assert find_normalization(X) is None
    assert np.isclose(ImageData(fake).image(0).mean(), ImageData(fake).images([0]).mean())


@pytest.mark.parametrize("images, message", [
    (torch.rand(6, 4, 5, 3), r"look channels-last; .* x.permute\(0, 3, 1, 2\)"),
    (torch.rand(6, 1, 5, 5), r"images have 1 channel\(s\) but the model's first convolution "
                             r"reads 3"),
])
def test_images_whose_channels_do_not_fit_the_first_convolution(images, message):
    """Checked by Capture before the first convolution runs, wherever it sits in the model."""
    from notebookcarto import collect_stats

    class Late(nn.Module):  # the convolution is registered after the head
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    with pytest.raises(ValueError, match=message):
        collect_stats(Late(), images, ["conv"], progress=False)
