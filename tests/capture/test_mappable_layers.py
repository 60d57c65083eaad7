"""mappable_layers picks block outputs (not the activations inside blocks) on DenseNet,
EfficientNet and MobileNet, offers stage and activation granularity, and caps the count."""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from notebookcarto import mappable_layers
from notebookcarto.models.resnet_cifar import CifarResNet


def _meta(builder, **kwargs):
    """A torchvision model on the meta device: no weights, no download, no init cost."""
    with torch.device("meta"):
        return builder(weights=None, **kwargs)


def _kinds(model, names):
    modules = dict(model.named_modules())
    return [type(modules[n]).__name__ for n in names]


def test_densenet_gives_dense_blocks_and_transitions():
    model = _meta(torchvision.models.densenet121)
    names = mappable_layers(model)
    assert names == ["features.denseblock1", "features.transition1", "features.denseblock2",
                     "features.transition2", "features.denseblock3", "features.transition3",
                     "features.denseblock4"]
    with pytest.warns(UserWarning, match="keeping 32 evenly spaced"):
        inner = mappable_layers(model, "activations")  # the 120 inner ReLUs of old
    assert len(inner) == 32 and all(k == "ReLU" for k in _kinds(model, inner))
    every = mappable_layers(model, "activations", max_layers=None)
    assert len(every) > 100 and inner[-1] == every[-1] and inner[0] == every[0]


def test_efficientnet_and_mobilenet_give_their_blocks():
    effnet = _meta(torchvision.models.efficientnet_b0)
    names = mappable_layers(effnet)
    assert len(names) == 16 and set(_kinds(effnet, names)) == {"MBConv"}
    # stages: the last block of each features.<k> sequence
    stages = mappable_layers(effnet, "stages")
    assert stages == ["features.1.0", "features.2.1", "features.3.1", "features.4.2",
                      "features.5.2", "features.6.3", "features.7.0"]
    mobilenet = _meta(torchvision.models.mobilenet_v2)
    names = mappable_layers(mobilenet)
    assert len(names) == 17 and set(_kinds(mobilenet, names)) == {"InvertedResidual"}
    # one parent holds every block: stages are the runs of blocks of the same width
    assert mappable_layers(mobilenet, "stages") == [
        "features.1", "features.3", "features.6", "features.10", "features.13", "features.16",
        "features.17"]
    densenet = _meta(torchvision.models.densenet121)  # blocks and transitions alternate widths
    assert mappable_layers(densenet, "stages") == mappable_layers(densenet)


def test_resnet_stages_and_the_cap():
    model = _meta(torchvision.models.resnet18)
    assert mappable_layers(model, "stages") == ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    deep = CifarResNet(56)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 27 blocks: under the cap
        assert len(mappable_layers(deep)) == 27
    assert mappable_layers(deep, "stages") == ["layer1.8", "layer2.8", "layer3.8"]
    with pytest.warns(UserWarning, match="max_layers=5"):
        few = mappable_layers(deep, max_layers=5)
    assert few == ["layer1.0", "layer1.6", "layer2.4", "layer3.2", "layer3.8"]


def test_bad_arguments():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="granularity must be one of"):
        mappable_layers(model, "neurons")
    with pytest.raises(ValueError, match="max_layers must be"):
        mappable_layers(model, max_layers=0)
    assert mappable_layers(model, "stages") == ["1"]  # no blocks: the activations
