"""Capture's channels-last inputs on the CPU: the model computes the same values, a model that
cannot take them runs on the input as given (with the global RNG as a plain pass leaves it),
and nothing else changes layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from notebookcarto.capture import Capture

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    """Two convolutions and a linear head; ``flat_view`` flattens the map with ``view``, which
    a channels-last map cannot do; ``noisy`` draws from the global RNG before that."""

    def __init__(self, flat_view: bool = False, noisy: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 5)
        self.flat_view, self.noisy = flat_view, noisy
        self.layouts = []

    def forward(self, x):
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last) and
                            not x.is_contiguous())
        z = self.conv2(torch.relu(self.bn(self.conv1(x))))
        if self.noisy:
            z = z + 0 * torch.rand(())
        z = z.view(z.shape[0], -1) if self.flat_view else z.flatten(1)
        return self.head(z)


def test_a_conv_model_gets_channels_last_inputs_and_gives_the_same_values():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(6, 3, 8, 8)
    expected = model(x)
    model.layouts.clear()
    with Capture(model, ["conv1"], channels_last=True) as capture:
        out = capture.forward(x)
        assert capture.channels_last
    assert model.layouts == [True]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with Capture(model, ["conv1"]) as capture:  # off by default
        capture.forward(x)
    assert model.layouts == [True, False]


def test_a_model_that_cannot_take_them_runs_on_the_input_as_given():
    torch.manual_seed(0)
    model = Net(flat_view=True, noisy=True).eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="view"):
        model(x.contiguous(memory_format=torch.channels_last))
    expected = model(x)
    model.layouts.clear()
    torch.manual_seed(1)
    before = torch.get_rng_state()
    with Capture(model, ["conv2"], channels_last=True) as capture:
        out = capture.forward(x)
        assert not capture.channels_last  # from the first failure on
        assert torch.equal(torch.get_rng_state(), before)  # the failed pass's draw undone
        capture.forward(x)
    assert model.layouts == [True, False, False]
    torch.testing.assert_close(out, expected)


def test_only_4d_inputs_of_conv_models_change_layout():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with Capture(mlp, ["1"], channels_last=True) as capture:
        assert not capture.channels_last
        capture.forward(torch.randn(2, 3, 2, 2))
    seen = []
    conv1d = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Flatten())
    conv1d.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    with Capture(conv1d, ["0"], channels_last=True) as capture:
        assert not capture.channels_last  # no 2-d convolution
        capture.forward(torch.randn(2, 3, 8))
    assert seen == [True]
