"""Receptive fields of layers: from the model's graph where it allows, else measured from input
gradients.

For a (B, C, H, W) layer, the map position (row, col) depends on a box of input pixels. For
convolutions, pooling and element-wise layers that box is an affine function of the position:

    rows  offset[0] + row * stride[0] + [0, size[0])
    cols  offset[1] + col * stride[1] + [0, size[1])

(in input pixels, the end excluded; the box may stick out of the image). ``receptive_fields``
first derives ``stride``, ``offset`` and ``size`` from the traced graph (``analytic``:
convolutions, pooling, residual adds, slicing and padding; one forward pass of one image).
Layers the graph does not settle are measured by a probe: it backpropagates the sum over
channels of one map position to random inputs and takes the bounding box of the input pixels
with a nonzero gradient, for two neighbouring positions. So it covers whatever the network does
between the input and the layer (padding, dilation, pooling, residual branches), without a
table of layer types. Both give the theoretical field (every pixel that can influence the
position), not the smaller "effective" field where most of the gradient mass lies. Results are
cached per model, layer and input size.

Token (B, T, C) layers, such as the blocks of a vision transformer, get a field covering the
whole image: after one attention layer every token depends on every pixel. Vector (B, C) layers
likewise. So does any layer behind global pooling, because the gradient then truly reaches every
pixel. The channel gates of squeeze-and-excitation (EfficientNet, MobileNet V3) also reach every
pixel, but they only scale a position: the graph leaves them out and gives the gated map's own
field, where the probe (on a model the graph cannot follow) gives the whole image.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ...capture import Capture, LayerError, mappable_layers, model_device

__all__ = ["FIELD_METHODS", "ReceptiveField", "clear_field_cache", "receptive_fields"]

FIELD_METHODS = ("auto", "analytic", "probe")

# model -> {(layer, (C, H, W), probe settings): ReceptiveField}
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def clear_field_cache(model: nn.Module | None = None) -> None:
    """Forget the cached receptive fields of ``model`` (default: of every model), e.g. after
    changing its architecture in place."""
    if model is None:
        _CACHE.clear()
    else:
        _CACHE.pop(model, None)

# Probe inputs grow by multiples of this, so the input size modulo any stride up to 64 stays the
# same and layers whose padding depends on the input size ("same" padding) align as natively.
_ALIGN = 64


@dataclass(frozen=True)
class ReceptiveField:
    """Where the positions of one layer's map look in the input.

    ``stride``, ``offset`` and ``size`` are (rows, cols) in input pixels: position (row, col)
    sees rows ``offset[0] + row * stride[0]`` up to (excluded) that plus ``size[0]``, and likewise
    for columns. ``input_shape`` (H, W) and ``map_shape`` (rows, cols of the layer's map) record
    the input size the field was measured for. ``whole_image`` fields (token and vector layers,
    layers behind global operations) have stride 0 and offset 0 and cover ``input_shape``.
    """

    stride: tuple[int, int]
    offset: tuple[int, int]
    size: tuple[int, int]
    input_shape: tuple[int, int] | None = None
    map_shape: tuple[int, int] | None = None
    whole_image: bool = False

    @classmethod
    def covering(cls, height: int, width: int, map_shape=None) -> "ReceptiveField":
        """A field that sees the whole (height, width) image from every position."""
        return cls((0, 0), (0, 0), (int(height), int(width)), (int(height), int(width)),
                   None if map_shape is None else tuple(map_shape), True)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of position (row, col); bottom and right excluded."""
        top = self.offset[0] + int(row) * self.stride[0]
        left = self.offset[1] + int(col) * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]

    def boxes(self, rows, cols) -> np.ndarray:
        """``box`` for arrays of rows and columns: int64 (n, 4) of (top, left, bottom, right)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        if rows.shape != cols.shape:
            raise ValueError(f"got {rows.size} rows but {cols.size} columns")
        top = self.offset[0] + rows * self.stride[0]
        left = self.offset[1] + cols * self.stride[1]
        return np.stack([top, left, top + self.size[0], left + self.size[1]], axis=1)

    def center(self, row: int, col: int) -> tuple[float, float]:
        """The centre of the box of (row, col), in input pixel coordinates (pixel i spans
        [i, i + 1), so the centre of pixel i is i + 0.5)."""
        top, left, bottom, right = self.box(row, col)
        return (top + bottom) / 2, (left + right) / 2


class _LayerReached(Exception):
    """Raised inside a hook to end a forward pass once the wanted layer has run."""


class _Axis:
    """The fit of one axis: stride, offset, size, and whether it was clipped or global."""

    def __init__(self, stride, offset, size, clipped=False, whole=False):
        self.stride, self.offset, self.size = stride, offset, size
        self.clipped, self.whole = clipped, whole


def _fit_axis(positions, intervals, length) -> _Axis:
    """Fit ``offset + p * stride + [0, size)`` to the measured [start, end) of positions p along
    an axis of ``length`` pixels, using only edges the border did not clip."""
    p0, p1 = positions[0], positions[-1]
    (t0, b0), (t1, b1) = intervals[0], intervals[-1]
    if all(t == 0 and b == length for t, b in intervals):
        return _Axis(0, 0, length, whole=True)
    step = p1 - p0
    if step == 0:  # a single position along this axis: any stride fits
        stride = 0
        clipped_stride = False
    elif t0 > 0 and t1 > 0:
        stride, clipped_stride = (t1 - t0) // step, False
    elif b0 < length and b1 < length:
        stride, clipped_stride = (b1 - b0) // step, False
    else:
        stride, clipped_stride = (t1 - t0) // step, True
    free = [b - t for t, b in intervals if t > 0 and b < length]
    size = free[0] if free else max(b - t for t, b in intervals)
    if t0 > 0:
        offset = t0 - p0 * stride
    elif b0 < length:
        offset = b0 - size - p0 * stride
    else:
        offset = t0 - p0 * stride
    return _Axis(stride, offset, size, clipped=clipped_stride or not free)


class _Probe:
    """Forward passes that stop at one layer, and the input boxes its positions depend on."""

    def __init__(self, model, channels, batch, dtype, device, seed):
        self.model = model
        self.channels, self.batch = channels, batch
        self.dtype, self.device = dtype, device
        self.generator = torch.Generator().manual_seed(seed)
        self.target = None
        self.output = None

    def on_output(self, name, output):
        if name == self.target:
            self.output = output
            raise _LayerReached

    def forward(self, name, x):
        self.target, self.output = name, None
        try:
            self.model(x)
        except _LayerReached:
            pass
        finally:
            self.target = None
        out, self.output = self.output, None
        if out is None:
            raise LayerError(f"layer {name!r} did not run during the forward pass")
        return out

    def inputs(self, count, height, width):
        x = torch.randn(count, self.channels, height, width, generator=self.generator)
        return x.to(device=self.device, dtype=self.dtype).requires_grad_(True)

    def output_shape(self, name, height, width):
        """Shape of the layer output for a single input of (height, width)."""
        with torch.no_grad():
            return tuple(self.forward(name, self.inputs(1, height, width).detach()).shape)

    def boxes(self, name, height, width, positions, tries=3):
        """For each (row, col) in ``positions``: the (top, left, bottom, right) bounding box of the
        input pixels with a nonzero gradient, over ``batch`` random images (several images, so
        that ReLU and max-pool sparsity in one image does not hide pixels). One position at a
        time: memory is that of ``batch`` images."""
        return [self._box(name, height, width, position, tries) for position in positions]

    def _box(self, name, height, width, position, tries):
        row, col = position
        for _ in range(tries):
            x = self.inputs(self.batch, height, width)
            out = self.forward(name, x)
            target = out[:, :, row, col].sum()
            if target.grad_fn is None:
                raise ValueError(f"layer {name!r} does not depend on the input: it has no "
                                 "receptive field")
            (grad,) = torch.autograd.grad(target, x, allow_unused=True)
            if grad is None:
                raise ValueError(f"layer {name!r} does not depend on the input: it has no "
                                 "receptive field")
            seen = grad.ne(0).any(1).any(0).cpu()
            del out, target, grad, x
            if seen.any():
                return _bounding_box(seen)
        raise RuntimeError(f"layer {name!r}: no input pixel changes the sum of the channels at "
                           f"position {position} for random inputs (dead units?)")


def _bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _probe_positions(map_shape) -> list[tuple[int, int]]:
    """The centre of the map and its diagonal neighbour (the one before it if at the end)."""
    positions = []
    for n in map_shape:
        centre = n // 2
        positions.append((centre, centre + 1 if centre + 1 < n else max(centre - 1, 0)))
    return [(positions[0][0], positions[1][0]), (positions[0][1], positions[1][1])]


def _fit(positions, boxes, height, width):
    rows = _fit_axis([p[0] for p in positions], [(b[0], b[2]) for b in boxes], height)
    cols = _fit_axis([p[1] for p in positions], [(b[1], b[3]) for b in boxes], width)
    return rows, cols


def _field(rows: _Axis, cols: _Axis, input_shape, map_shape) -> ReceptiveField:
    height, width = input_shape
    if rows.whole and cols.whole:
        return ReceptiveField.covering(height, width, map_shape)
    if rows.whole:  # global along one axis only: cover that axis of the native image
        rows = _Axis(0, 0, height)
    if cols.whole:
        cols = _Axis(0, 0, width)
    return ReceptiveField((rows.stride, cols.stride), (rows.offset, cols.offset),
                          (rows.size, cols.size), tuple(input_shape), tuple(map_shape))


def _clip(box, height, width):
    top, left, bottom, right = box
    return max(top, 0), max(left, 0), min(bottom, height), min(right, width)


def _probe_size(length: int, scale: float) -> int:
    extra = max(scale - 1, 0) * length
    return length + _ALIGN * max(math.ceil(extra / _ALIGN), 1)


def receptive_fields(model: nn.Module, layers=None, input_shape=(3, 224, 224), *,
                     method: str = "auto", probe_scale: float = 3.0, max_probe: int = 512,
                     batch: int = 2, seed: int = 0, cache: bool = True,
                     progress: bool = True) -> dict[str, ReceptiveField]:
    """The receptive field of each layer in ``layers`` (default: ``mappable_layers``) for
    inputs of ``input_shape`` (C, H, W), as ``{layer: ReceptiveField}`` in the given order.

    ``method="auto"`` (default) derives each field from the model's graph
    (``patches.analytic``: convolutions, pooling, residual adds, slicing, padding) and measures
    with the probe only the layers the graph does not settle (a model that cannot be traced,
    attention, reshapes); ``"analytic"`` raises for such layers; ``"probe"`` measures all.
    Fields are cached per model, layer and input size (``cache=False`` recomputes;
    ``clear_field_cache``), and probing shows a progress bar.

    The probe, per (B, C, H, W) layer: the gradient of the sum over channels at the centre of
    the map and at its diagonal neighbour, with respect to ``batch`` random images each (one
    position at a time, so memory stays small), gives two input boxes, and from them the
    stride, offset and size. Near the centre of a native-size input the box of a deep layer may
    be clipped by the border, so the boxes are first measured on a larger input (about
    ``probe_scale`` times the size, doubled up to ``max_probe`` pixels a side while the box
    still touches the border); the forward pass stops at the layer, so a classifier head that
    only accepts the native size never runs. The result is checked against boxes measured on a
    native-size input, and if the larger input fails or disagrees (the network is not fully
    convolutional up to the layer, e.g. it has adaptive pooling) the native measurement is used;
    a warning says when that is clipped by the border. A box that covers even the largest probe
    input whole (global pooling, squeeze-and-excitation) gives a whole-image field, with a
    warning. ``input_shape`` may also be (H, W) for 3 channels.

    Token (B, T, C) and vector (B, C) layers get a field covering the whole image (see
    ``ReceptiveField.covering``): after self-attention every token depends on every pixel.

    The model is left exactly as it was (mode, parameters, ``requires_grad`` flags, ``.grad``
    and the global RNG): the passes run in eval mode inside ``Capture`` or ``ModelGuard``, only
    the inputs require gradients, and gradients are taken with ``torch.autograd.grad``.
    """
    if method not in FIELD_METHODS:
        raise ValueError(f"method must be one of {FIELD_METHODS}, got {method!r}")
    if layers is None:
        layers = mappable_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        shape = (3,) + shape
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    _check_channels_first(model, shape)
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    settings = (method, float(probe_scale), int(max_probe), int(batch), int(seed))
    known = _CACHE.setdefault(model, {}) if cache else {}
    fields = {name: known[(name, shape, settings)] for name in layers
              if (name, shape, settings) in known}
    todo = [name for name in layers if name not in fields]
    if todo and method != "probe":
        from .analytic import analytic_fields

        derived = analytic_fields(model, todo, shape)
        fields.update({name: f for name, f in derived.items() if f is not None})
        todo = [name for name in todo if name not in fields]
        if todo and method == "analytic":
            raise ValueError(f"the model's graph does not give the receptive fields of {todo} "
                             "(it cannot be traced, or an operation on the way is not a "
                             "convolution, pooling or element-wise one): use method='auto' or "
                             "'probe'")
    if todo:
        fields.update(_probe_fields(model, todo, shape, probe_scale, max_probe, batch, seed,
                                    progress))
    for name in layers:
        known[(name, shape, settings)] = fields[name]
    return {name: fields[name] for name in layers}


def _check_channels_first(model: nn.Module, shape: tuple) -> None:
    """Refuse an (H, W, C) ``shape``: its last size fits the model's first convolution (or, with
    no convolution, is 1, 3 or 4 channels) and its first does not."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = {conv.in_channels} if conv is not None else {1, 3, 4}
    if shape[2] in channels and shape[0] not in channels:
        raise ValueError(f"input_shape {shape} looks like (H, W, C): give (C, H, W), e.g. "
                         f"{(shape[2], shape[0], shape[1])}")


def _probe_fields(model, layers, shape, probe_scale, max_probe, batch, seed, progress):
    """The probe's fields of ``layers`` (see ``receptive_fields``)."""
    channels, height, width = shape
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    fields = {}
    with torch.inference_mode(False), torch.enable_grad():
        probe = _Probe(model, channels, batch, dtype, model_device(model), seed)
        with Capture(model, layers, on_output=probe.on_output, detach=False) as capture:
            for name in tqdm(capture.layers, desc="receptive fields (probe)",
                             disable=not progress):
                fields[name] = _measure(probe, name, height, width, probe_scale, max_probe)
    return fields


def _measure(probe: _Probe, name: str, height: int, width: int, scale: float,
             limit: int) -> ReceptiveField:
    out_shape = probe.output_shape(name, height, width)
    if len(out_shape) != 4:
        return ReceptiveField.covering(height, width)
    map_shape = out_shape[2:]
    positions = _probe_positions(map_shape)
    native = probe.boxes(name, height, width, positions)
    field = _probe_larger(probe, name, height, width, scale, limit, map_shape)
    if field is not None and all(_clip(field.box(*p), height, width) == b
                                 for p, b in zip(positions, native)):
        return field
    rows, cols = _fit(positions, native, height, width)
    if (rows.clipped or cols.clipped) and not (rows.whole and cols.whole):
        warnings.warn(f"receptive field of layer {name!r}: the native {height}x{width} input "
                      "clips it and a larger input could not be used (the network is not fully "
                      "convolutional up to this layer), so its size is a lower bound",
                      stacklevel=3)
    return _field(rows, cols, (height, width), map_shape)


def _probe_sizes(length: int, scale: float, limit: int) -> list[int]:
    """Probe sizes along one axis: about ``scale`` times ``length``, then doubling up to
    ``limit``; every size differs from ``length`` by a multiple of 64."""
    sizes = [_probe_size(length, scale)]
    while _probe_size(sizes[-1], 2) <= limit:
        sizes.append(_probe_size(sizes[-1], 2))
    return sizes


def _probe_larger(probe, name, height, width, scale, limit, map_shape):
    """The field measured on larger inputs, or None if they cannot be used. Inputs grow while
    the box still touches their border; a box that covers even the largest input whole is taken
    as a dependence on the whole image."""
    heights, widths = _probe_sizes(height, scale, limit), _probe_sizes(width, scale, limit)
    attempts = max(len(heights), len(widths))
    for attempt in range(attempts):
        big_h = heights[min(attempt, len(heights) - 1)]
        big_w = widths[min(attempt, len(widths) - 1)]
        try:
            out_shape = probe.output_shape(name, big_h, big_w)
            if len(out_shape) != 4 or out_shape[2:] == tuple(map_shape):
                return None
            positions = _probe_positions(out_shape[2:])
            boxes = probe.boxes(name, big_h, big_w, positions)
        except Exception:  # any failure on a larger input: measure at the native size
            return None
        rows, cols = _fit(positions, boxes, big_h, big_w)
        if not (rows.clipped or cols.clipped or rows.whole or cols.whole):
            return _field(rows, cols, (height, width), map_shape)
    if rows.whole and cols.whole:
        warnings.warn(f"layer {name!r} depends on the whole of a {big_h}x{big_w} probe input: "
                      "taking its receptive field as the whole image (global pooling, attention "
                      "or squeeze-and-excitation; or a field larger than max_probe)",
                      stacklevel=4)
        return ReceptiveField.covering(height, width, map_shape)
    warnings.warn(f"receptive field of layer {name!r} still touches the border of a "
                  f"{big_h}x{big_w} probe input; raise max_probe for its full size", stacklevel=4)
    return _field(rows, cols, (height, width), map_shape)
