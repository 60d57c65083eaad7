"""Receptive fields from the traced graph: equal to the gradient probe on residual, concatenating
and squeeze-and-excitation networks, the probe only where the graph does not tell, and the cache."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from notebookcarto.analyses import receptive_fields
from notebookcarto.analyses.patches import analytic, fields
from notebookcarto.models.resnet_cifar import CifarResNet


class DenseAndSqueeze(nn.Module):
    """A stem, a dense (concatenating) block, a pooled transition with F.max_pool2d, an
    option-A-like subsampling shortcut with F.pad, and squeeze-and-excitation at the end."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.grow = nn.Conv2d(4, 4, 5, padding=2)
        self.transition = nn.Conv2d(8, 8, 1)
        self.branch = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        dense = torch.cat([x, F.relu(self.grow(x))], 1)
        pooled = F.max_pool2d(self.transition(dense), 2)
        shortcut = F.pad(pooled[:, :, ::2, ::2], (0, 0, 0, 0, 0, 0))
        mixed = F.relu(self.branch(pooled) + shortcut)
        return mixed * torch.sigmoid(self.gate(mixed.mean((2, 3), keepdim=True)))


def test_cifar_resnet_graph_equals_probe():
    torch.manual_seed(0)
    model = CifarResNet(8).eval()  # one block a stage, option-A shortcuts between stages
    layers = ["conv1", "layer1.0", "layer2.0", "layer3.0"]
    got = receptive_fields(model, layers, (3, 16, 16), method="analytic", cache=False)
    want = receptive_fields(model, layers, (3, 16, 16), method="probe", cache=False,
                            progress=False)
    assert got == want
    # by hand: stem 3x3 (R 3, O -1); layer1.0's two 3x3 convs: R 7, O -3; layer2.0's first
    # conv has stride 2 (R 9, J 2, O -4), its second adds 2 * 2 (R 13, O -6); the option-A
    # shortcut subsamples the same grid, inside that box
    assert (got["layer2.0"].stride, got["layer2.0"].offset, got["layer2.0"].size) == \
        ((2, 2), (-6, -6), (13, 13))


def test_concatenation_pooling_padding_and_squeeze_excitation():
    torch.manual_seed(0)
    model = DenseAndSqueeze().eval()
    got = receptive_fields(model, ["transition", "branch"], (3, 24, 24), method="analytic",
                           cache=False)
    want = receptive_fields(model, ["transition", "branch"], (3, 24, 24), method="probe",
                            cache=False, progress=False)
    assert got == want
    # by hand: stem R 3 O -1; grow 5x5 -> R 7 O -3; the concatenation's box is the larger
    # (its stem half is inside); the 1x1 transition keeps it
    rf = got["transition"]
    assert (rf.stride, rf.offset, rf.size) == ((1, 1), (-3, -3), (7, 7))
    # behind the global gate every position sees the whole image
    whole = analytic.analytic_fields(model, ["gate"], (3, 24, 24))["gate"]
    assert whole.whole_image


class Permuting(nn.Module):
    """ConvNeXt-style: a conv, then a channels-last LayerNorm the graph cannot follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.after = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.after(x)


def test_the_probe_measures_only_what_the_graph_does_not_tell(monkeypatch):
    torch.manual_seed(0)
    model = Permuting().eval()
    derived = analytic.analytic_fields(model, ["conv", "after"], (3, 12, 12))
    assert derived["conv"] is not None and derived["after"] is None
    probed = []
    real = fields._probe_fields

    def spy(model, layers, *args):
        probed.extend(layers)
        return real(model, layers, *args)

    monkeypatch.setattr(fields, "_probe_fields", spy)
    got = receptive_fields(model, ["conv", "after"], (3, 12, 12), cache=False, progress=False)
    assert probed == ["after"]
    assert (got["after"].offset, got["after"].size) == ((-2, -2), (5, 5))
    with pytest.raises(ValueError, match="does not give the receptive fields of"):
        receptive_fields(model, ["after"], (3, 12, 12), method="analytic", cache=False)


def test_fields_are_cached_per_model_and_input_size(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    fields.clear_field_cache()
    calls = []
    real = analytic.analytic_fields

    def spy(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(analytic, "analytic_fields", spy)
    first = receptive_fields(model, ["1"], (3, 8, 8))
    again = receptive_fields(model, ["1"], (3, 8, 8))
    assert first == again and len(calls) == 1
    receptive_fields(model, ["1"], (3, 10, 10))  # another input size: computed again
    assert len(calls) == 2
    fields.clear_field_cache(model)
    receptive_fields(model, ["1"], (3, 8, 8))
    assert len(calls) == 3


def test_untraceable_model_falls_back_to_the_probe():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: symbolic tracing fails
                return self.conv(x)
            return self.conv(-x)

    torch.manual_seed(0)
    model = Branchy()
    assert analytic.analytic_fields(model, ["conv"], (3, 8, 8)) == {"conv": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rf = receptive_fields(model, ["conv"], (3, 8, 8), cache=False, progress=False)["conv"]
    assert (rf.stride, rf.offset, rf.size) == ((1, 1), (-1, -1), (3, 3))
    with pytest.raises(ValueError, match="method must be"):
        receptive_fields(model, ["conv"], (3, 8, 8), method="guess")


class Gated(nn.Module):
    """A conv, a squeeze-and-excitation gate (optional) and a strided conv."""

    def __init__(self, gate: bool):
        super().__init__()
        self.gate = gate
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.after = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.gate:
            x = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        return self.after(x)


def test_a_channel_gate_does_not_widen_the_field():
    """The graph gives a gated map the field of the same network without the gate (measured by
    the probe); the probe itself sees the gate reach every pixel."""
    torch.manual_seed(0)
    got = receptive_fields(Gated(True).eval(), ["after"], (3, 16, 16), method="analytic",
                           cache=False)
    want = receptive_fields(Gated(False).eval(), ["after"], (3, 16, 16), method="probe",
                            cache=False, progress=False)
    assert got == want and not got["after"].whole_image
    with pytest.warns(UserWarning, match="depends on the whole"):
        probed = receptive_fields(Gated(True).eval(), ["after"], (3, 16, 16), method="probe",
                                  cache=False, progress=False)
    assert probed["after"].whole_image


def test_torchvision_blocks_are_derived():
    """EfficientNet (gates, stochastic depth) and DenseNet on the meta device: every block's
    field comes from the graph, local, growing with depth."""
    import torchvision

    from notebookcarto import mappable_layers

    for builder in (torchvision.models.efficientnet_b0, torchvision.models.densenet121):
        with torch.device("meta"):
            model = builder(weights=None).eval()
        layers = mappable_layers(model)
        got = analytic.analytic_fields(model, layers, (3, 64, 64))
        assert all(f is not None and not f.whole_image for f in got.values()), builder.__name__
        sizes = [got[n].size[0] for n in layers]
        assert sizes == sorted(sizes) and sizes[0] < 64 < sizes[-1]
