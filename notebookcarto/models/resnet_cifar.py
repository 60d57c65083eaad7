"""CIFAR-style ResNet (He et al. 2016, section 4.2) with option-A shortcuts.

Layout for depth 6n+2: a 3x3 stem (``conv1``, ``bn1``), three stages
``layer1..layer3`` of n ``BasicBlock``s with 16, 32, 64 channels (the first
block of stages 2 and 3 halves the resolution), global average pooling and a
``linear`` classifier. Every block output ``layerX.Y`` is taken after the
ReLU that follows the residual add, so hooks on blocks see post-ReLU maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "PadShortcut", "load_resnet20", "resnet20"]




class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad channels.

    The new channels are split evenly between the front and the back, so the
    input channels sit in the middle. No parameters.
    """

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if planes < in_planes or (planes - in_planes) % 2:
            raise ValueError(
                f"option-A shortcut needs an even channel increase, got {in_planes} -> {planes}"
            )
        self.stride = stride
        self.pad = (planes - in_planes) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads the last dims first: (W left, W right, H top, H bottom, C front, C back).
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut; ReLU after the residual add."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with ``depth = 6n + 2`` layers (20, 32, 44, 56, 110...)."""

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.linear = nn.Linear(64, num_classes)
        self._init_weights()

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """A randomly initialised CIFAR ResNet-20 (0.27M parameters)."""
    return CifarResNet(20, num_classes)


def _state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """Pull the tensors out of a raw state dict or a {'state_dict': ...} wrapper."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"{path} holds a {type(checkpoint).__name__}, not a state dict; "
            "save weights with torch.save(model.state_dict(), path)"
        )
    out = {}
    for key, value in checkpoint.items():
        key = str(key)
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def _check_keys(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise a readable error when ``state`` does not fit ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f" ... ({len(keys)} in all)" if len(keys) > 5 else ""
            parts.append(f"{label}: {', '.join(keys[:5])}{more}")
    raise ValueError(
        f"checkpoint {path} does not fit CIFAR ResNet-{getattr(model, 'depth', '?')}; "
        + "; ".join(parts)
        + ". Use a checkpoint saved from this architecture (keys like conv1.weight, "
        "layer1.0.conv1.weight, linear.weight; a 'module.' prefix is fine)."
    )


def load_resnet20(path: str | Path, map_location: str | torch.device = "cpu") -> CifarResNet:
    """Load pretrained CIFAR-10 ResNet-20 weights from ``path`` and return the model in eval
    mode. The file may hold a raw state dict or a dict with a ``state_dict`` key; a ``module.``
    prefix (from DataParallel) is stripped. Loading is strict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: pass the path to a CIFAR "
                                "ResNet-20 checkpoint (e.g. resnet20-cifar10.th)")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    state = _state_dict_of(checkpoint, path)
    model = resnet20()
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's counter; it is unused in eval.
    for key in model.state_dict():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    _check_keys(model, state, path)
    model.load_state_dict(state, strict=True)
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    return model.eval()
