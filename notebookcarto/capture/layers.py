"""Address layers by their module path, as in ``model.named_modules()``.

A layer name may carry a call suffix ``"name#k"`` to address the k-th call (from 0) of a module
that runs several times in one forward pass.
"""

from __future__ import annotations

import difflib
import warnings

import numpy as np
from torch import nn

__all__ = ["BLOCK_TYPES", "layer_list", "mappable_layers", "resolve_layers", "split_call"]

# Block types worth mapping, by class name: residual, inception, dense, inverted-residual and
# transformer blocks. Their outputs are what the network passes on; the layers inside them
# (the activations of a bottleneck) are intermediate.
BLOCK_TYPES = (
    "BasicBlock",
    "Bottleneck",
    "ResBottleneckBlock",  # RegNet
    "Inception",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "_DenseBlock",  # DenseNet: a dense block's output is its concatenated features
    "_Transition",
    "MBConv",  # EfficientNet
    "FusedMBConv",
    "InvertedResidual",  # MobileNet V2 / V3, ShuffleNet V2
    "_InvertedResidual",  # MNASNet
    "CNBlock",  # ConvNeXt
    "Fire",  # SqueezeNet
    "EncoderBlock",
    "TransformerEncoderLayer",
    "ConvBlock",
    "Block",
)
GRANULARITIES = ("blocks", "stages", "activations")
MAX_LAYERS = 32
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
    """Map each requested layer to its module, in the given order. Layers are module paths
    (``"layer1.0"``, ``"name#k"`` for a call) or the model's submodules themselves.

    Raises ``KeyError`` for an unknown name, listing the closest valid names.
    """
    layers = layer_list(layers)
    if not layers:
        raise ValueError("no layers given: pass module paths such as 'layer1.0' "
                         "(see notebookcarto.mappable_layers(model) for suggestions)")
    modules = dict(model.named_modules())
    layers = [_layer_name(model, modules, layer) for layer in layers]
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer names repeat in {layers}: give each layer once")
    calls: dict[str, list] = {}
    for name in layers:
        calls.setdefault(split_call(name)[0], []).append(name)
    for base, names in calls.items():
        if len(names) > 1 and base in names:
            raise ValueError(f"layers {names} name the same module {base!r} twice: give "
                             f"{base!r} once, or only its calls '{base}#0', '{base}#1', ...")
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


def layer_list(layers) -> list:
    """Layers given as one path or module, or as several, as a list."""
    if isinstance(layers, (str, nn.Module)):
        return [layers]
    try:
        return list(layers)
    except TypeError:
        raise TypeError(f"layers must be module paths or modules of the model, got a "
                        f"{type(layers).__name__}") from None


def _layer_name(model: nn.Module, modules: dict, layer) -> str:
    """A layer given as a path or as a submodule -> its path."""
    if isinstance(layer, str):
        return layer
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer and name:
                return name
        raise KeyError(f"the {type(layer).__name__} given as a layer is not a submodule of this "
                       "model: pass its path as in model.named_modules()")
    raise TypeError(f"layers must be module paths (str) or modules of the model, got "
                    f"{type(layer).__name__} {layer!r}")


def mappable_layers(model: nn.Module, granularity: str = "blocks", *,
                    max_layers: int | None = MAX_LAYERS) -> list[str]:
    """Suggest the layers worth mapping, in the order of ``model.named_modules()``.

    ``granularity``:

    * ``"blocks"`` (default): the outputs of residual, inception, dense, inverted-residual
      (MobileNet, EfficientNet), ConvNeXt and transformer blocks, recognised by class name
      (``BLOCK_TYPES``; the outermost match wins, so a block's sub-blocks and inner activations
      are not listed: DenseNet-121 gives its 4 dense blocks and 3 transitions, not 120 inner
      activations). Models without such blocks fall back to ``"activations"``.
    * ``"stages"``: the last block of each stage, a run of blocks with the same parent module
      and output width (a ResNet's ``layer1``; MobileNet's blocks of equal width).
    * ``"activations"``: activation modules that follow a convolution (the finest choice).

    At most ``max_layers`` layers (None: no limit); beyond it an evenly spaced selection that
    keeps the last layer, with a warning.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if max_layers is not None and (isinstance(max_layers, bool)
                                   or not isinstance(max_layers, int) or max_layers < 1):
        raise ValueError(f"max_layers must be a whole number >= 1 or None, got {max_layers!r}")
    names = [] if granularity == "activations" else _blocks(model)
    if names and granularity == "stages":
        names = _stage_ends(model, names)
    if not names:
        names = _activations(model)
    if max_layers is not None and len(names) > max_layers:
        picks = np.linspace(0, len(names) - 1, max_layers).round().astype(int)
        chosen = [names[i] for i in sorted(set(picks.tolist()))]
        warnings.warn(f"mappable_layers: {len(names)} {granularity} found, keeping "
                      f"{len(chosen)} evenly spaced ones (max_layers={max_layers}); pass "
                      "max_layers=None for all, or granularity='stages' for fewer",
                      stacklevel=2)
        names = chosen
    return names


def _blocks(model: nn.Module) -> list[str]:
    names = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(n + ".") for n in names):
            continue
        kind = type(module).__name__
        if kind in BLOCK_TYPES and "Aux" not in kind:
            names.append(name)
    return names


def _stage_ends(model: nn.Module, blocks: list[str]) -> list[str]:
    """The last block of each run of consecutive blocks with the same parent path and the same
    output width (the ``out_channels`` of the block's last convolution)."""
    modules = dict(model.named_modules())

    def stage(name):
        convs = [m for m in modules[name].modules() if isinstance(m, nn.Conv2d)]
        return name.rpartition(".")[0], convs[-1].out_channels if convs else None

    keys = [stage(name) for name in blocks]
    return [name for k, name in enumerate(blocks) if k + 1 == len(blocks) or keys[k + 1] != keys[k]]


def _activations(model: nn.Module) -> list[str]:
    names = []
    after_conv = False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            after_conv = True
        elif isinstance(module, ACTIVATIONS) and after_conv:
            names.append(name)
            after_conv = False
    return names
