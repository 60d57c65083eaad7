"""Plain torchvision models (random weights, no download) through the statistics pass."""

import pytest
import torch

from notebookcarto import collect_stats, mappable_layers
from notebookcarto.models import torchvision_model


@pytest.mark.parametrize("name, size, skip, expected", [
    ("resnet18", 64, 0, {"layer1.0": (16, 16), "layer4.1": (2, 2)}),
    ("googlenet", 64, 0, {"inception3a": (8, 8), "inception5b": (2, 2)}),
    ("vgg11", 64, 0, {"features.1": (64, 64)}),
    ("vit_b_16", 224, 1, {"encoder.layers.encoder_layer_0": (196,),
                          "encoder.layers.encoder_layer_11": (196,)}),
])
def test_statistics_pass_on_torchvision_models(name, size, skip, expected):
    torch.manual_seed(0)
    model, _ = torchvision_model(name, pretrained=False)
    layers = mappable_layers(model)
    x = torch.randn(6, 3, size, size)
    y = torch.arange(6) % 3
    loader = [(x[:3], y[:3]), (x[3:], y[3:])]
    stats = collect_stats(model, loader, layers, top_n=4, skip_tokens=skip, num_classes=1000,
                          progress=False)
    for layer, shape in expected.items():
        assert stats.shapes[layer] == shape
    for layer in layers:
        top = stats.layers[layer].top
        assert top.index.shape[1] == 4 and set(top.index.unique().tolist()) <= set(range(6))
        assert int(stats.layers[layer].aggregation.counts.sum()) >= 6  # every image counted
    assert stats.accuracy is not None and int(stats.accuracy.count.sum()) == 6


def test_bf16_autocast_pass_matches_float32():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU())
    x = torch.randn(20, 3, 16, 16)
    exact = collect_stats(model, [x], ["1", "3"], top_n=3, progress=False)
    fast = collect_stats(model, [x], ["1", "3"], top_n=3, autocast=True, progress=False)
    for name in ("1", "3"):
        a, b = exact.layers[name].moments, fast.layers[name].moments
        torch.testing.assert_close(b.maximum, a.maximum, rtol=0.03, atol=0.03)
        assert fast.layers[name].top.values.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
