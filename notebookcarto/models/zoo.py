"""ImageNet models from torchvision, with the preprocessing their weights expect.

``pretrained=True`` downloads the weights on first use (into ``$TORCH_HOME``,
by default ``~/.cache/torch``), so it needs a network connection on the
machine that runs it; later calls reuse the cached file. ``pretrained=False``
never touches the network.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision import models

__all__ = ["SUPPORTED", "torchvision_model"]

# Names accepted by torchvision_model(); each maps to a torchvision builder.
SUPPORTED = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg11",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vit_b_16",
    "vit_b_32",
)

# Extra builder arguments when building without pretrained weights.
_RANDOM_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def torchvision_model(name: str, pretrained: bool = True) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    """Build a torchvision classifier and return ``(model, preprocess)``.

    ``model`` is in eval mode. ``preprocess`` is the transform of the model's
    default weights (``weights.transforms()``: resize, crop, scale to 0..1,
    ImageNet normalisation); it is returned for ``pretrained=False`` too.

    ``pretrained=True`` uses ``weights="DEFAULT"`` and downloads the weights on
    first use, which needs a network connection; ``pretrained=False`` gives
    random weights with no download. Supported names: see ``SUPPORTED``.
    """
    key = name.lower()
    if key not in SUPPORTED:
        raise ValueError(f"unknown model {name!r}; supported: {', '.join(SUPPORTED)}")
    weights = models.get_model_weights(key).DEFAULT
    preprocess = weights.transforms()
    if pretrained:
        try:
            model = models.get_model(key, weights=weights)
        except OSError as err:  # URLError and friends
            raise RuntimeError(
                f"could not download pretrained weights for {key} ({weights}): {err}. "
                "Pretrained weights need a network connection once (they are cached in "
                "$TORCH_HOME); use pretrained=False for random weights."
            ) from err
    else:
        model = models.get_model(key, weights=None, **_RANDOM_KWARGS.get(key, {}))
    return model.eval(), preprocess
