"""Image-folder datasets and helpers to display normalised images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import torchvision


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "cifar10_test", "denormalize", "image_folder"]


def image_folder(
    root: str | Path,
    *,
    size: int | tuple[int, int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> "torchvision.datasets.ImageFolder":
    """Return a torchvision ImageFolder over ``root`` (one sub-folder per class).

    Images become float tensors (C, H, W) normalised with ``mean``/``std``.
    ``size`` optionally resizes first (an int resizes the shorter side, a
    (h, w) pair resizes exactly).
    """
    from torchvision import datasets, transforms  # imported when used: it is heavy

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist; pass a folder with one sub-folder per class"
        )
    steps: list = []
    if size is not None:
        steps.append(transforms.Resize(size))
    steps += [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]
    return datasets.ImageFolder(str(root), transform=transforms.Compose(steps))


def cifar10_test(root: str | Path) -> "torchvision.datasets.ImageFolder":
    """The CIFAR-10 test images in ImageFolder layout under ``root`` (one folder per class),
    ImageNet-normalised, 32x32."""
    return image_folder(root)


def denormalize(
    x: torch.Tensor | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Undo normalisation for display.

    Takes (C, H, W) or (B, C, H, W) and returns uint8 (H, W, C) or
    (B, H, W, C), values clipped to 0..255.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"denormalize expects (C, H, W) or (B, C, H, W), got shape {x.shape}"
        )
    channels = x.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std have {len(mean)}/{len(std)} values but the image has {channels} channels"
        )
    shape = (channels, 1, 1)
    x = x * np.asarray(std, np.float32).reshape(shape) + np.asarray(mean, np.float32).reshape(shape)
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.moveaxis(x, -3, -1)
