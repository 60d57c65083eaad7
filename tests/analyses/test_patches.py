"""Receptive fields from the traced graph and from gradient probes, and example patches cropped
with them."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from notebookcarto import Atlas, collect_stats
from notebookcarto.analyses import (ReceptiveField, crop_patches, image_getter,
                                    neuron_patches, receptive_fields)


def seq(*modules):
    torch.manual_seed(0)
    return nn.Sequential(*modules)


# Expected fields worked out by hand. For a layer with kernel k, stride s, padding p and dilation
# d after a field (size R, stride J, offset O):
#     R' = R + (k - 1) * d * J,   J' = J * s,   O' = O - p * J.
ANALYTIC = {
    # one 3x3 conv: R = 3, O = -1
    "conv3": (lambda: seq(nn.Conv2d(3, 8, 3, padding=1)), "0", 24, (1, 1), (-1, -1), (3, 3)),
    # two 3x3 convs: R = 3 + 2 = 5, O = -1 - 1 = -2
    "conv3x2": (lambda: seq(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 8, 3, padding=1)), "2", 24, (1, 1), (-2, -2), (5, 5)),
    # 3x3 stride 2 (R 3, J 2, O -1), then 3x3: R = 3 + 2 * 2 = 7, O = -1 - 2 = -3
    "stride2": (lambda: seq(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 8, 3, padding=1)), "2", 24, (2, 2), (-3, -3), (7, 7)),
    # ResNet stem: 7x7/2 pad 3 (R 7, J 2, O -3), max-pool 3/2 pad 1: R = 7 + 2 * 2 = 11, J = 4,
    # O = -3 - 2 = -5
    "stem": (lambda: seq(nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.ReLU(),
                         nn.MaxPool2d(3, stride=2, padding=1)), "2", 32, (4, 4), (-5, -5),
             (11, 11)),
    # no padding: 5x5 (R 5, O 0), max-pool 2/2 (R 6, J 2), 3x3: R = 6 + 2 * 2 = 10, O = 0
    "valid_pool": (lambda: seq(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)),
                   "3", 32, (2, 2), (0, 0), (10, 10)),
    # dilation 2, pad 2: R = 1 + 2 * 2 = 5, O = -2; then 3x3 pad 1: R = 7, O = -3
    "dilated": (lambda: seq(nn.Conv2d(3, 8, 3, padding=2, dilation=2), nn.ReLU(),
                            nn.Conv2d(8, 8, 3, padding=1)), "2", 24, (1, 1), (-3, -3), (7, 7)),
    # 3x3/2 pad 1 (R 3, J 2, O -1), then 3x3 dilation 2 pad 2: R = 3 + 2 * 2 * 2 = 11,
    # O = -1 - 2 * 2 = -5
    "stride_dilated": (lambda: seq(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=2, dilation=2)), "2", 32, (2, 2),
                       (-5, -5), (11, 11)),
    # non-square: (3, 5) kernel, stride (1, 2), pad (1, 2): R (3, 5), J (1, 2), O (-1, -2); then
    # avg-pool 2/2: R = (3 + 1, 5 + 1 * 2) = (4, 7), J = (2, 4), O unchanged
    "rect": (lambda: seq(nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 2)), nn.ReLU(),
                         nn.AvgPool2d(2)), "2", 32, (2, 4), (-1, -2), (4, 7)),
    # a flatten + linear head behind the layer (only accepts 16x16 inputs) must not stop the
    # larger probe: the pass ends at the layer. 3x3 (R 3, O -1), then 3x3/2 pad 1:
    # R = 3 + 2 * 1 = 5, J = 2, O = -1 - 1 = -2
    "with_head": (lambda: seq(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.Flatten(),
                              nn.Linear(4 * 8 * 8, 10)), "2", 16, (2, 2), (-2, -2), (5, 5)),
}


@pytest.mark.parametrize("method", ["analytic", "probe"])
@pytest.mark.parametrize("case", sorted(ANALYTIC))
def test_receptive_field_matches_analytic_value(case, method):
    build, layer, side, stride, offset, size = ANALYTIC[case]
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rf = receptive_fields(model, [layer], (3, side, side), method=method,
                              progress=False)[layer]
    assert (rf.stride, rf.offset, rf.size) == (stride, offset, size)
    assert not rf.whole_image
    assert rf.input_shape == (side, side)
    with torch.no_grad():
        out = model[: int(layer) + 1](torch.zeros(1, 3, side, side))
    assert rf.map_shape == tuple(out.shape[2:])


def test_adaptive_pool_falls_back_to_native_measurement():
    # 3x3 pad 1 (R 3, O -1), then adaptive pooling of 16 -> 4 (a 4/4 pool here): R = 3 + 3 = 6,
    # J = 4, O = -1. A larger input changes the pooling, so the native size must be used.
    model = seq(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                nn.Conv2d(8, 8, 1))
    rf = receptive_fields(model, "3", (3, 16, 16))["3"]
    assert (rf.stride, rf.offset, rf.size, rf.map_shape) == ((4, 4), (-1, -1), (6, 6), (4, 4))


class TinyViT(nn.Module):
    """4x4 patch embedding, then one transformer layer on the tokens and a linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, stride=4)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.block(self.embed(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(1))


def test_token_and_vector_layers_cover_the_whole_image():
    torch.manual_seed(0)
    fields = receptive_fields(TinyViT(), ["embed", "block", "head"], (3, 16, 16))
    embed = fields["embed"]
    assert (embed.stride, embed.offset, embed.size, embed.whole_image) == ((4, 4), (0, 0), (4, 4),
                                                                           False)
    for name in ("block", "head"):
        rf = fields[name]
        assert rf.whole_image and rf.size == (16, 16)
        assert rf.box(3, 7) == (0, 0, 16, 16)


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(x.mean((2, 3), keepdim=True))


def test_global_dependence_gives_whole_image_to_the_probe_only():
    torch.manual_seed(0)
    model = nn.Sequential(SqueezeExcite(), nn.Conv2d(8, 8, 3, padding=1))
    with pytest.warns(UserWarning, match="whole"):  # the probe can only suspect it
        rf = receptive_fields(model, ["1"], (3, 16, 16), max_probe=200, method="probe")["1"]
    assert rf.whole_image and rf.box(0, 0) == (0, 0, 16, 16)
    with warnings.catch_warnings():  # the graph knows the mean over (H, W) is only a gate
        warnings.simplefilter("error")
        fields = receptive_fields(model, ["0", "1"], (3, 16, 16), method="analytic")
    assert fields["1"].map_shape == (16, 16) and not fields["1"].whole_image
    assert (fields["1"].offset, fields["1"].size) == ((-2, -2), (5, 5))  # two 3x3 convs


# Blocks of the CIFAR ResNet-20, by hand: the stem 3x3 gives R 3, O -1; every 3x3 conv adds
# 2 * J to R and takes J from O; the first conv of layer2 and layer3 doubles J.
RESNET20 = {
    "conv1": ((1, 1), (-1, -1), (3, 3)),
    "layer1.0": ((1, 1), (-3, -3), (7, 7)),
    "layer1.1": ((1, 1), (-5, -5), (11, 11)),
    "layer1.2": ((1, 1), (-7, -7), (15, 15)),
    "layer2.0": ((2, 2), (-10, -10), (21, 21)),
    "layer2.1": ((2, 2), (-14, -14), (29, 29)),
    "layer2.2": ((2, 2), (-18, -18), (37, 37)),
    "layer3.0": ((4, 4), (-24, -24), (49, 49)),
    "layer3.1": ((4, 4), (-32, -32), (65, 65)),
    "layer3.2": ((4, 4), (-40, -40), (81, 81)),
}


@pytest.mark.slow
def test_resnet20_fields():
    resnet_cifar = pytest.importorskip("notebookcarto.models.resnet_cifar")
    torch.manual_seed(0)
    model = resnet_cifar.resnet20()
    fields = receptive_fields(model, list(RESNET20), (3, 32, 32))
    for name, (stride, offset, size) in RESNET20.items():
        rf = fields[name]
        assert (rf.stride, rf.offset, rf.size) == (stride, offset, size), name
    for name in ("layer3.0", "layer3.1", "layer3.2"):
        rf = fields[name]
        assert rf.map_shape == (8, 8)
        # every layer3 position sees most of the 32-px image, the centre ones all of it
        for r in range(8):
            top, left, bottom, right = rf.box(r, r)
            assert min(bottom, 32) - max(top, 0) >= 24
        assert rf.box(4, 4)[0] <= 0 and rf.box(4, 4)[2] >= 32


@pytest.mark.slow
def test_resnet20_pretrained_fields(shared):
    from notebookcarto.models import load_resnet20

    model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
    fields = receptive_fields(model, ["layer3.2"], (3, 32, 32))
    for name, rf in fields.items():
        assert (rf.stride, rf.offset, rf.size) == RESNET20[name]


def test_model_is_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Dropout(0.5), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 3))
    model.train()
    model[1].eval()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()
    with torch.no_grad():  # also works where gradients are off
        rf = receptive_fields(model, ["4"], (3, 16, 16))["4"]
    with torch.inference_mode():
        again = receptive_fields(model, ["4"], (3, 16, 16))["4"]
    assert rf == again and rf.size == (5, 5)
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unknown_layer_and_bad_arguments():
    model = seq(nn.Conv2d(3, 4, 3))
    with pytest.raises(KeyError, match="unknown layer"):
        receptive_fields(model, ["nope"], (3, 16, 16))
    with pytest.raises(ValueError, match="input_shape"):
        receptive_fields(model, ["0"], (3, 0, 16))
    with pytest.raises(ValueError, match="input_shape"):
        receptive_fields(model, ["0"], (1, 3, 16, 16))
    with pytest.raises(ValueError, match="batch"):
        receptive_fields(model, ["0"], (3, 16, 16), batch=0)


def test_box_and_boxes_agree():
    rf = ReceptiveField((2, 4), (-3, -1), (7, 9))
    assert rf.box(2, 3) == (1, 11, 8, 20)
    boxes = rf.boxes([0, 2, 5], [1, 3, 0])
    assert boxes.dtype == np.int64 and boxes.shape == (3, 4)
    assert [tuple(b) for b in boxes] == [rf.box(0, 1), rf.box(2, 3), rf.box(5, 0)]
    assert rf.center(2, 3) == (4.5, 15.5)


# -- ground truth for the crops: a dot detector on images with one bright dot -------------------

SIDE = 20
# (row, col, brightness): corners and edges so boxes leave the image, and inner dots
DOTS = [(0, 0, 255), (19, 19, 250), (10, 7, 245), (3, 15, 240), (18, 2, 235), (9, 9, 230),
        (0, 12, 225), (13, 19, 220)]


def dot_images():
    images = np.zeros((len(DOTS) + 2, SIDE, SIDE, 3), dtype=np.uint8)  # two blank images last
    for i, (r, c, v) in enumerate(DOTS):
        images[i, r, c] = v
    return images


def dot_model():
    """3x3/2 then 3x3 binomial blurs (no ReLU, so the field has no dead pixels): the single
    channel peaks at the position whose field is centred on the dot. Field: R 7, J 2, O -3."""
    kernel = torch.outer(torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 2, 1])) / 16
    conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(kernel.expand(4, 3, 3, 3) / 3)
        conv2.weight.copy_(kernel.expand(1, 4, 3, 3) / 4)
    return nn.Sequential(conv1, conv2)


@pytest.fixture(scope="module")
def dots():
    images = dot_images()
    model = dot_model()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    loader = DataLoader(TensorDataset(x), batch_size=4)
    atlas = Atlas(collect_stats(model, loader, ["1"], top_n=6, progress=False))
    rf = receptive_fields(model, ["1"], (3, SIDE, SIDE))
    return images, atlas, rf


def test_dot_detector_field(dots):
    _, _, fields = dots
    rf = fields["1"]
    assert (rf.stride, rf.offset, rf.size, rf.map_shape) == ((2, 2), (-3, -3), (7, 7), (10, 10))


def test_patches_are_centred_on_the_dot_and_padded_outside_the_image(dots):
    images, atlas, fields = dots
    rf = fields["1"]
    top = atlas.top_images("1:0")
    assert set(top["image"]) <= set(range(len(DOTS))) and (top["value"] > 0).all()  # no blanks
    patches = neuron_patches(atlas, "1:0", lambda i: images[i], fields, n_patches=6)
    assert patches.dtype == np.uint8 and patches.shape == (6, 7, 7, 3)
    centre = (rf.size[0] - 1) / 2
    for patch, image, row, col in zip(patches, top["image"], top["row"], top["col"]):
        _, _, value = DOTS[image]
        # the dot is the only bright pixel, at the centre of the patch +- 1 px
        bright = np.argwhere(patch[:, :, 0] == value)
        assert len(bright) == 1
        assert np.all(np.abs(bright[0] - centre) <= 1)
        # fill exactly where the box leaves the image, the image's pixels elsewhere
        t, l, b, r = rf.box(row, col)
        ys, xs = np.mgrid[t:b, l:r]
        outside = (ys < 0) | (ys >= SIDE) | (xs < 0) | (xs >= SIDE)
        assert np.array_equal(np.all(patch == 127, axis=2), outside)
        inside = images[image][ys.clip(0, SIDE - 1), xs.clip(0, SIDE - 1)]
        assert np.array_equal(patch[~outside], inside[~outside])
    # the box of the dot in the top-left corner leaves the image on two sides
    corner = patches[list(top["image"]).index(0)]
    assert np.all(corner[:3] == 127) and np.all(corner[:, :3] == 127) and corner[3, 3, 0] == 255


def test_patches_from_a_normalised_dataset(dots):
    images, atlas, fields = dots
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    dataset = TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
    expected = neuron_patches(atlas, "1:0", lambda i: images[i], fields["1"], n_patches=4)
    got = neuron_patches(atlas, "1:0", image_getter(dataset, mean, std), fields["1"], n_patches=4)
    assert np.array_equal(got, expected)

    class Playground:  # a data set with image_uint8 is read through it
        def __getitem__(self, i):
            raise AssertionError("image_uint8 should be used")

        def image_uint8(self, i):
            return images[i]

    assert np.array_equal(neuron_patches(atlas, "1:0", Playground(), fields, n_patches=4), expected)


def test_fill_colour_size_and_empty_input(dots):
    images, atlas, fields = dots
    rf = fields["1"]
    patch = crop_patches(lambda i: images[i], rf, [0], [0], [0], fill=(1, 2, 3))[0]
    assert patch[0, 0].tolist() == [1, 2, 3]
    resized = neuron_patches(atlas, "1:0", lambda i: images[i], rf, n_patches=3, size=21)
    assert resized.dtype == np.uint8 and resized.shape == (3, 21, 21, 3)
    tall = crop_patches(lambda i: images[i], rf, [2, 3], [5, 1], [3, 7], size=(10, 6))
    assert tall.shape == (2, 10, 6, 3)
    empty = crop_patches(lambda i: images[i], rf, [], [], [])
    assert empty.shape == (0, 7, 7, 3) and empty.dtype == np.uint8
    grey = crop_patches(lambda i: images[i][:, :, 0], rf, [0], [1], [1])  # grey -> RGB
    assert grey.shape == (1, 7, 7, 3)


def test_whole_image_field_gives_the_whole_image(dots):
    images, _, _ = dots
    rf = ReceptiveField.covering(SIDE, SIDE)
    patches = crop_patches(lambda i: images[i], rf, [2, 0], [0, 0], [0, 0])
    assert np.array_equal(patches, images[[2, 0]])
    assert crop_patches(lambda i: images[i], rf, [1], [0], [0], size=8).shape == (1, 8, 8, 3)


def test_bad_patch_inputs(dots):
    images, atlas, fields = dots
    rf = fields["1"]
    get = lambda i: images[i]  # noqa: E731
    with pytest.raises(ValueError, match="n_patches must be"):
        neuron_patches(atlas, "1:0", get, rf, n_patches=0)
    with pytest.raises(KeyError, match="unknown neuron"):
        neuron_patches(atlas, "1:5", get, rf)
    with pytest.raises(KeyError, match="no receptive field"):
        neuron_patches(atlas, "1:0", get, {"0": rf})
    with pytest.raises(ValueError, match="map"):
        neuron_patches(atlas, "1:0", get, ReceptiveField((1, 1), (0, 0), (3, 3), (SIDE, SIDE),
                                                         (20, 20)))
    with pytest.raises(ValueError, match="one row and one column"):
        crop_patches(get, rf, [0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="outside"):
        crop_patches(get, rf, [0], [10], [0])
    with pytest.raises(ValueError, match="measured for"):
        crop_patches(lambda i: np.zeros((32, 32, 3), np.uint8), rf, [0], [0], [0])
    with pytest.raises(ValueError, match="fill"):
        crop_patches(get, rf, [0], [0], [0], fill=300)
    with pytest.raises(ValueError, match="size"):
        crop_patches(get, rf, [0], [0], [0], size=0)
    with pytest.raises(TypeError, match="ReceptiveField"):
        crop_patches(get, {"1": rf}, [0], [0], [0])


def test_fill_none_clips_the_box_to_the_image():
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    rf = ReceptiveField(stride=(1, 1), offset=(-3, -3), size=(7, 7), input_shape=(10, 10),
                        map_shape=(10, 10))
    corner = crop_patches(lambda i: image, rf, [0], [0], [0], fill=None, size=4)
    assert corner.shape == (1, 4, 4, 3)
    # the clipped box of (0, 0) is rows 0..3, cols 0..3: exactly the image's corner
    assert np.array_equal(crop_patches(lambda i: image, rf, [0], [0], [0], fill=None,
                                          size=(4, 4))[0], image[:4, :4])
    centre = crop_patches(lambda i: image, rf, [0], [5], [5], fill=None)
    assert np.array_equal(centre[0], image[2:9, 2:9])
