"""Receptive fields computed from the model's graph, without a probe pass.

The model is traced with ``torch.fx`` (symbolic tracing, each module's output recorded), one
zero image runs through the traced graph for the shapes (``ShapeProp``, model left as it was),
and every node's field is derived from its inputs' fields:

* convolution and pooling (modules or functions) with kernel k, stride s, padding p and
  dilation d: ``stride' = stride * s``, ``offset' = offset - p * stride``,
  ``size' = size + (k - 1) * d * stride``;
* element-wise operations (activations, BatchNorm, dropout, residual adds, products,
  concatenation of channels): the smallest box holding all inputs' boxes (their strides must
  agree);
* spatial subsampling by slicing (``x[:, :, ::2, ::2]``, option-A shortcuts) and ``F.pad``;
* reductions over the spatial axes (global pooling, the squeeze of squeeze-and-excitation):
  the whole image;
* a global gate, such as the excitation of squeeze-and-excitation (a whole-image (B, C, 1, 1)
  tensor broadcast over a map in an element-wise operation), is left out: it scales each
  position by a number per channel without moving where the position looks, so the field is
  that of the gated map. (The gradient probe counts the gate, and would give the whole image.)

Anything else (a reshape, attention, a permutation of axes, an adaptive pooling to more than one
cell) leaves the field unknown, and ``receptive_fields`` measures those layers with the
gradient probe instead. On the networks the probe handles, both give the same field (tested);
this one takes one forward pass of one image.
"""

from __future__ import annotations

import operator
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...capture import ModelGuard, model_device, split_call
from .fields import ReceptiveField

__all__ = ["analytic_fields"]

WHOLE = "whole"  # depends on every pixel
CONST = "const"  # depends on no pixel (parameters, buffers, constants)

_ELEMENTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.AlphaDropout, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold,
)
_ELEMENTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.iadd,
    operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid,
    torch.tanh, torch.clamp, torch.where, torch.maximum, torch.minimum, torch.neg, torch.abs,
    F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu, F.mish,
    F.sigmoid, F.tanh, F.dropout, F.batch_norm, F.hardtanh,
}
_ELEMENTWISE_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "sigmoid",
    "sigmoid_", "tanh", "clamp", "clamp_", "clamp_min", "clamp_min_", "contiguous", "float",
    "half", "bfloat16", "to", "type_as", "clone", "detach", "neg", "abs", "exp", "__add__",
    "__mul__", "__radd__", "__rmul__",
}
# Element-wise functions of other libraries, by name (torchvision's wrapped ops)
_ELEMENTWISE_NAMES = {"stochastic_depth"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min"}
_MAX_POOLS = {F.max_pool2d, torch.max_pool2d}
_POOLS = _MAX_POOLS | {F.avg_pool2d, torch._C._nn.avg_pool2d}


class _Tracer(fx.Tracer):
    """Symbolic tracing that records the output node of every module call, by module path."""

    def __init__(self):
        super().__init__()
        self.outputs = defaultdict(list)  # path -> [node of each call]

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        node = getattr(out, "node", None)
        if node is not None:
            self.outputs[self.path_of_module(m)].append(node)
        return out


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return int(v), int(v)


def _window(field, kernel, stride, padding, dilation=1):
    """The field of a sliding window (convolution or pooling) over ``field``."""
    out = []
    for (s, o, z), k, st, p, d in zip(field, _pair(kernel), _pair(stride), _pair(padding),
                                      _pair(dilation)):
        out.append((s * st, o - p * s, z + (k - 1) * d * s))
    return tuple(out)


def _union(fields):
    """The smallest box holding every input's box, or None when strides disagree."""
    spatial = [f for f in fields if f not in (CONST,)]
    if not spatial:
        return CONST
    if any(f is None for f in spatial):
        return None
    if any(f == WHOLE for f in spatial):
        return WHOLE
    out = []
    for axis in range(2):
        strides = {f[axis][0] for f in spatial}
        if len(strides) > 1:
            return None
        top = min(f[axis][1] for f in spatial)
        bottom = max(f[axis][1] + f[axis][2] for f in spatial)
        out.append((strides.pop(), top, bottom - top))
    return tuple(out)


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _input_nodes(node) -> list:
    flat = []
    for a in list(node.args) + list(node.kwargs.values()):
        flat += list(a) if isinstance(a, (tuple, list)) else [a]
    return [a for a in flat if isinstance(a, fx.Node)]


def _tensor_inputs(node, fields):
    return [fields.get(a, CONST) for a in _input_nodes(node)]


def _gated_inputs(node, fields):
    """The inputs' fields of an element-wise node, without global gates: an input that depends
    on the whole image but has a single position, broadcast over a larger map (the channel
    scale of squeeze-and-excitation), scales each position without moving where it looks."""
    out = _shape(node)
    wide = out is not None and len(out) == 4 and out[-2:] != (1, 1)
    inputs, gates = [], []
    for a in _input_nodes(node):
        field, shape = fields.get(a, CONST), _shape(a)
        if wide and field == WHOLE and shape is not None and len(shape) == 4 \
                and shape[-2:] == (1, 1):
            gates.append(field)
        else:
            inputs.append(field)
    return inputs if any(f != CONST for f in inputs) else inputs + gates


def _padding(module_or_value, kernel, dilation):
    """Explicit padding (rows, cols) for a padding argument ("same", "valid" or numbers)."""
    if isinstance(module_or_value, str):
        if module_or_value == "valid":
            return (0, 0)
        k, d = _pair(kernel), _pair(dilation)
        return tuple((d[i] * (k[i] - 1)) // 2 for i in range(2))
    return _pair(module_or_value)


def _module_field(module, field, node):
    if field in (CONST, None) or field == WHOLE:
        return field
    if isinstance(module, nn.Conv2d):
        pad = _padding(module.padding, module.kernel_size, module.dilation)
        return _window(field, module.kernel_size, module.stride, pad, module.dilation)
    if isinstance(module, nn.MaxPool2d):
        return _window(field, module.kernel_size, module.stride or module.kernel_size,
                       module.padding, module.dilation)
    if isinstance(module, nn.AvgPool2d):
        return _window(field, module.kernel_size, module.stride or module.kernel_size,
                       module.padding)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        shape = _shape(node)
        return WHOLE if shape is not None and shape[-2:] == (1, 1) else None
    if isinstance(module, _ELEMENTWISE_MODULES):
        return field
    return None


def _function_field(node, fields):
    target, args, kwargs = node.target, node.args, node.kwargs
    inputs = _tensor_inputs(node, fields)
    if target in _ELEMENTWISE_FUNCTIONS or getattr(target, "__name__", "") in _ELEMENTWISE_NAMES:
        return _union(_gated_inputs(node, fields))
    if target in (torch.cat, torch.concat):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return _union(inputs) if dim in (1, -3) else None
    first = fields.get(args[0], CONST) if args and isinstance(args[0], fx.Node) else CONST
    if first in (CONST, None) or first == WHOLE:
        return first if target is not operator.getitem else _getitem(node, first)
    if target in _POOLS:
        def get(i, key, default):
            return kwargs.get(key, args[i] if len(args) > i else default)

        kernel = get(1, "kernel_size", None)
        stride = get(2, "stride", None) or kernel
        return _window(first, kernel, stride, get(3, "padding", 0),
                       get(4, "dilation", 1) if target in _MAX_POOLS else 1)
    if target is F.pad:
        pad = kwargs.get("pad", args[1] if len(args) > 1 else ())
        pad = list(pad) + [0] * (4 - len(pad))
        (sr, orow, zr), (sc, ocol, zc) = first
        return ((sr, orow - pad[2] * sr, zr), (sc, ocol - pad[0] * sc, zc))
    if target is operator.getitem:
        return _getitem(node, first)
    if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        shape = _shape(node)
        return WHOLE if shape is not None and shape[-2:] == (1, 1) else None
    if target in (torch.mean, torch.sum, torch.amax, torch.amin):
        return _reduction(node, args[1] if len(args) > 1 else kwargs.get("dim"), first)
    return None


def _getitem(node, field):
    """Indexing a (B, C, H, W) tensor: channel and batch picks keep the field; slices of the
    spatial axes subsample it."""
    index = node.args[1]
    if field in (CONST, None) or field == WHOLE:
        return field
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is Ellipsis or i is None for i in index) or len(index) > 4:
        return None
    out = list(field)
    for axis, item in enumerate(index[2:4]):
        if not isinstance(item, slice):
            return None
        start, step = item.start or 0, item.step or 1
        if start < 0 or step < 1:
            return None
        s, o, z = out[axis]
        out[axis] = (s * step, o + start * s, z)
    if any(not isinstance(i, slice) and i is not Ellipsis for i in index[:2]):
        return None  # a picked batch or channel index changes the rank
    return tuple(out)


def _reduction(node, dim, field):
    dims = {dim} if isinstance(dim, int) else set(dim or ())
    if dim is None:
        return WHOLE
    if {2, 3} <= {d % 4 for d in dims}:
        return WHOLE
    return None if dims & {2, 3, -1, -2} else field


def _method_field(node, fields):
    inputs = _tensor_inputs(node, fields)
    first = inputs[0] if inputs else CONST
    if node.target in _ELEMENTWISE_METHODS:
        return _union(_gated_inputs(node, fields))
    if node.target in _REDUCTIONS:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return _reduction(node, dim, first) if first not in (CONST, None) else first
    return None


def analytic_fields(model: nn.Module, layers, input_shape) -> dict[str, ReceptiveField | None]:
    """``{layer: ReceptiveField or None}`` from the model's graph (see the module docstring),
    for inputs of ``input_shape`` (C, H, W); None where the graph does not tell (the layer is
    then for the probe), and all None when the model cannot be traced symbolically."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
        traced = fx.GraphModule(tracer.root, graph)
    except Exception:  # data-dependent control flow and the like: the probe measures all
        return {name: None for name in layers}
    channels, height, width = (int(v) for v in input_shape)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros(1, channels, height, width, dtype=dtype, device=model_device(model))
    try:
        with ModelGuard(model), torch.no_grad():
            model.eval()
            fx.passes.shape_prop.ShapeProp(traced).propagate(x)
    except Exception:
        return {name: None for name in layers}
    modules = dict(traced.named_modules())
    fields = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            fields[node] = ((1, 0, 1), (1, 0, 1)) if len(_shape(node) or ()) == 4 else None
        elif node.op == "get_attr":
            fields[node] = CONST
        elif node.op == "call_module":
            inputs = _tensor_inputs(node, fields)
            fields[node] = _module_field(modules[node.target], _union(inputs[:1]), node)
        elif node.op == "call_function":
            fields[node] = _function_field(node, fields)
        elif node.op == "call_method":
            fields[node] = _method_field(node, fields)
        else:
            fields[node] = None
        shape = _shape(node)
        if fields[node] not in (CONST, None, WHOLE) and (shape is None or len(shape) != 4):
            fields[node] = None  # the bookkeeping holds for (B, C, H, W) maps only
    out = {}
    for name in layers:
        base, call = split_call(name)
        calls = tracer.outputs.get(base, [])
        node = calls[call or 0] if len(calls) > (call or 0) else None
        out[name] = None if node is None else _receptive_field(fields.get(node), node,
                                                               (height, width))
    return out


def _receptive_field(field, node, image) -> ReceptiveField | None:
    shape = _shape(node)
    if field is None or field == CONST or shape is None:
        return None
    if field == WHOLE:
        return ReceptiveField.covering(*image, shape[-2:] if len(shape) == 4 else None)
    (sr, orow, zr), (sc, ocol, zc) = field
    return ReceptiveField((sr, sc), (orow, ocol), (zr, zc), tuple(image), tuple(shape[-2:]))
