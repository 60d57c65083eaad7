"""torchvision model zoo wrapper (random weights only: no downloads in tests)."""

import pytest
import torch

from notebookcarto.models.zoo import torchvision_model


@pytest.mark.parametrize("name, size", [("resnet18", 64), ("googlenet", 96)])
def test_builds_and_runs(name, size):
    model, preprocess = torchvision_model(name, pretrained=False)
    assert not model.training
    assert callable(preprocess)
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000)


def test_unknown_name_lists_options():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'") as err:
        torchvision_model("resnet9000", pretrained=False)
    assert "resnet18" in str(err.value) and "vit_b_16" in str(err.value)
