"""Address layers by their module path, as in ``model.named_modules()``.

A layer name may carry a call suffix ``"name#k"`` to address the k-th call (from 0) of a module
that runs several times in one forward pass.
"""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["BLOCK_TYPES", "mappable_layers", "resolve_layers", "split_call"]

# Block types worth mapping, by class name: residual, inception and transformer blocks.
BLOCK_TYPES = (
    "BasicBlock",
    "Bottleneck",
    "Inception",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "EncoderBlock",
    "TransformerEncoderLayer",
    "ConvBlock",
    "Block",
)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU)


def split_call(name: str) -> tuple[str, int | None]:
    """Split ``"layer#k"`` into ``("layer", k)``; a plain name gives ``(name, None)``."""
    if "#" not in name:
        return name, None
    base, _, call = name.rpartition("#")
    if not call.isdigit():
        raise ValueError(f"layer {name!r}: the part after '#' must be a call index such as '#0'")
    return base, int(call)


def resolve_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """Map each requested layer name to its module, in the given order.

    Raises ``KeyError`` for an unknown name, listing the closest valid names.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("no layers given: pass module paths such as 'layer1.0' "
                         "(see notebookcarto.mappable_layers(model) for suggestions)")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer names repeat in {layers}: give each layer once")
    modules = dict(model.named_modules())
    resolved = {}
    for name in layers:
        base, _ = split_call(name)
        if base not in modules or base == "":
            close = difflib.get_close_matches(base, [m for m in modules if m], n=5, cutoff=0.4)
            hint = f" Closest valid names: {', '.join(close)}." if close else ""
            raise KeyError(f"unknown layer {base!r}: the model has no module at that path "
                           f"(names as in model.named_modules()).{hint}")
        resolved[name] = modules[base]
    return resolved


def mappable_layers(model: nn.Module) -> list[str]:
    """Suggest the layers worth mapping: convolutional, inception and transformer blocks.

    Blocks are recognised by class name (outermost match wins, so a block's sub-blocks are not
    listed). Models without such blocks fall back to activation modules that follow a convolution.
    """
    names = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(n + ".") for n in names):
            continue
        kind = type(module).__name__
        if kind in BLOCK_TYPES and "Aux" not in kind:
            names.append(name)
    if names:
        return names
    after_conv = False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            after_conv = True
        elif isinstance(module, ACTIVATIONS) and after_conv:
            names.append(name)
            after_conv = False
    return names
