"""The gradient estimator on crops: the same numbers as the dense batched backward pass, for
blocks whose outputs depend on a small window of their input (convolutions, pooling, residual
and inception blocks).

The gradient estimator needs, for every image b and later channel j, the gradient of
z_j(p_bj) (the value at channel j's spatial argmax p_bj) with respect to the earlier map x.
Done densely, that is one backward pass through the whole block per later channel: about
C_later times the block's cost, 37x a forward pass of a CIFAR ResNet-20 before any overhead.
But z_j(p) depends only on the window of x around stride * p that the block's receptive
field covers (5x5 for two 3x3 convolutions). So the block is run again, with gradients, on one
crop of x per (image, channel) row, batched, and the crop's gradient gives that row's
influence exactly.

A crop gives the same value as the full map when it holds the whole window and starts on the
block's stride grid; at the map's borders the crop is shifted inside the map, so that its edge
is the map's own edge and the block pads it as it pads the map. The window is measured in the
probe (the gradient's support from a central position, on the probe's images and noisy copies
of them), and the crops are checked against dense backward passes at the corners, edges and
centre before the pass; blocks that fail (attention, squeeze-and-excitation, global pooling,
token maps) keep the dense estimator.

The block is the chain of module calls that computes the later layer from the earlier one
(``find_segment``), called directly with their hooks set aside for the call (``plain_calls``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ...capture import split_call
from .probe import Record, _SavedBytes

__all__ = ["Segment", "Window", "check_window", "find_segment", "find_window",
           "local_influence", "plain_calls"]

# a crop larger than this share of the map gains little over the dense estimator
_MAX_SHARE = 0.5


@contextlib.contextmanager
def plain_calls(modules):
    """Call ``modules`` (and their submodules) without their forward and backward hooks: the
    crops must not reach the pass's own hooks nor the user's. Put back on exit."""
    saved = []
    for root in modules:
        for module in root.modules():
            for key, hooks in vars(module).items():
                if "hooks" in key and isinstance(hooks, dict) and hooks:
                    saved.append((hooks, dict(hooks)))
                    hooks.clear()
    try:
        yield
    finally:
        for hooks, items in saved:
            hooks.update(items)


@dataclass
class Segment:
    """The module calls that compute the later layer from the earlier one, in order."""

    paths: list[str]
    modules: list[nn.Module]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with plain_calls(self.modules):
            for module in self.modules:
                x = module(x)
                if isinstance(x, (tuple, list)):
                    x = x[0]
        return x


def find_segment(rec: Record, earlier: str, later: str) -> Segment | None:
    """The chain of module calls from the earlier layer's output to the later layer's: each
    takes the previous one's output as its only argument (the outermost such call that ends
    before the later layer does, then the later layer itself). None where there is none (the
    later layer reads other tensors too, a functional op lies between, ...)."""
    base, index = split_call(later)
    ends = [c for c in rec.calls if c.path == base and c.index == (index or 0)]
    flow = rec.flows.get(earlier)
    if not ends or flow is None:
        return None
    last, t, chain = ends[0], flow, []
    begin = rec.ended[earlier]
    while len(chain) < len(rec.calls):
        nxt = [c for c in rec.calls
               if c.input is t and c.start > begin and 0 <= c.end <= last.end]
        if last in nxt:
            chain.append(last)
            return Segment([c.path for c in chain], [c.module for c in chain])
        if not nxt:
            return None
        call = max(nxt, key=lambda c: (c.end, -c.start))
        if call.output is None:
            return None
        chain.append(call)
        t, begin = call.output, call.end
    return None


@dataclass
class Window:
    """Where a block's output position p reads its input: rows and columns from
    ``stride * p + lo`` to ``stride * p + hi``; ``size`` is the crop (that window, rounded to
    the stride grid) and ``in_size`` the full map's size. A crop as large as the map on an axis does not crop it.
    ``per_crop``: the bytes autograd keeps per crop (measured by ``check_window``)."""

    stride: tuple[int, int]
    lo: tuple[int, int]
    hi: tuple[int, int]  # the window's last row and column, from stride * p
    size: tuple[int, int]
    in_size: tuple[int, int]
    per_crop: int = 0

    def starts(self, positions: torch.Tensor) -> torch.Tensor:
        """(R, 2) output positions -> (R, 2) crop starts, on the stride grid and inside the map."""
        out = []
        for axis in range(2):
            s, lo, size, full = (self.stride[axis], self.lo[axis], self.size[axis],
                                 self.in_size[axis])
            if size >= full:
                out.append(torch.zeros_like(positions[:, axis]))
                continue
            a = (s * positions[:, axis] + lo).clamp(min=0) // s * s
            out.append(a.clamp(max=full - size))
        return torch.stack(out, 1)

    def describe(self) -> dict:
        return {"crop": list(self.size), "of": list(self.in_size), "stride": list(self.stride)}


def find_window(segment: Segment, x: torch.Tensor, z: torch.Tensor) -> Window | None:
    """The block's input window (``Window``), from the support of the gradient of its central
    output position (all channels, random positive weights) on ``x`` and a noisy copy of it;
    None when the block is not worth cropping (token maps, a window over half the map)."""
    if x.ndim != 4 or z.ndim != 4:
        return None
    (big_h, big_w), (h, w) = x.shape[2:], z.shape[2:]
    stride = (max(1, round(big_h / h)), max(1, round(big_w / w)))
    gen = torch.Generator(device=x.device).manual_seed(0)
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    inputs = torch.cat([x, x * (1 + 0.5 * noise)]).requires_grad_()
    with torch.enable_grad():
        out = segment(inputs)
        if out.shape[2:] != z.shape[2:]:
            return None
        centre = (h // 2, w // 2)
        cot = torch.zeros_like(out)
        cot[:, :, centre[0], centre[1]] = (torch.rand(out.shape[1], generator=gen,
                                                      device=x.device) + 0.5).to(out.dtype)
        g, = torch.autograd.grad(out, inputs, cot, allow_unused=True)
    if g is None:
        return None
    support = g.abs().sum((0, 1)) > 0
    rows, cols = support.any(1).nonzero()[:, 0], support.any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return None
    lo = (int(rows.min()) - stride[0] * centre[0], int(cols.min()) - stride[1] * centre[1])
    hi = (int(rows.max()) - stride[0] * centre[0], int(cols.max()) - stride[1] * centre[1])
    size = tuple(_crop_size(hi[a] - lo[a] + 1, stride[a], (big_h, big_w)[a]) for a in range(2))
    if size[0] * size[1] > _MAX_SHARE * big_h * big_w:
        return None
    return Window(stride, lo, hi, size, (big_h, big_w))


def _crop_size(span: int, stride: int, full: int) -> int:
    """Covers ``span`` from any start on the stride grid, and ends on the map's edge when
    shifted inside it (``full - size`` on the grid)."""
    size = span + stride - 1
    size += (full - size) % stride
    return min(size, full)


def local_influence(segment: Segment, x: torch.Tensor, window: Window, image: torch.Tensor,
                    channel: torch.Tensor, position: torch.Tensor, *, rows: int,
                    saved: _SavedBytes | None = None) -> torch.Tensor:
    """Influence rows on crops: (R, C_x), row r = sum over positions of x[image_r] times the
    gradient of the block's channel ``channel_r`` at output ``position_r`` ((R, 2): row,
    column). ``rows`` crops run per batched forward and backward pass; ``saved``, if given,
    meters what autograd keeps.

    Tried and dropped: rows whose crops coincide sharing one forward pass (one backward pass
    each), and packing rows with disjoint windows into one backward pass over the full map.
    On CPU neither pays on a CIFAR ResNet-20: the shared groups are small batches whose
    overhead outweighs the forward passes saved, and the channels' maxima cluster so that an
    8x8 map needs about 40 packed passes for its 64 rows."""
    n = len(image)
    out = torch.empty(n, x.shape[1], dtype=torch.float32, device=x.device)
    stride = torch.tensor(window.stride, device=x.device)
    hooks = (torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack) if saved
             else contextlib.nullcontext())
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        pos = position[r0:r1]
        start = window.starts(pos)
        at = pos - start // stride  # the output position inside the crop
        crops = _gather(x, image[r0:r1], start, window.size).requires_grad_()
        with torch.enable_grad(), hooks:
            z = segment(crops)
            picked = z[torch.arange(r1 - r0, device=x.device), channel[r0:r1], at[:, 0], at[:, 1]]
            g, = torch.autograd.grad(picked.sum(), crops)
        out[r0:r1] = (g * crops.detach()).sum((2, 3)).float()
    return out


def _gather(x, image, start, size) -> torch.Tensor:
    """(N, C, size) crops of ``x`` at ``start`` ((N, 2) rows and columns) in images ``image``."""
    iy = (start[:, 0, None] + torch.arange(size[0], device=x.device))[:, :, None]
    ix = (start[:, 1, None] + torch.arange(size[1], device=x.device))[:, None, :]
    return x[image[:, None, None], :, iy, ix].permute(0, 3, 1, 2).contiguous()


def check_window(segment: Segment, x: torch.Tensor, window: Window) -> tuple[bool, int]:
    """Compare crops with plain backward passes on one image ``x`` (1, C, H, W): at the
    output's corners, edge midpoints, centre and one position in from two corners, for the
    first and the last channel by turns. ``(agree, bytes autograd keeps per crop)``."""
    x = x.detach()
    with torch.no_grad():
        z = segment(x)
    h, w = z.shape[2:]
    spots = {(py, px) for py in (0, h // 2, h - 1) for px in (0, w // 2, w - 1)}
    spots |= {(min(1, h - 1), min(1, w - 1)), (max(h - 2, 0), max(w - 2, 0))}
    last = z.shape[1] - 1  # the first and the last channel, by turns
    grid = torch.tensor([(last * (i % 2), py, px) for i, (py, px) in enumerate(sorted(spots))],
                        device=x.device)
    channel, position = grid[:, 0], grid[:, 1:]
    image = torch.zeros(len(grid), dtype=torch.long, device=x.device)
    saved = _SavedBytes(nn.Module())
    local = local_influence(segment, x, window, image, channel, position, rows=len(grid),
                            saved=saved)
    dense = _dense_rows(segment, x, channel, position)
    scale = float(dense.abs().max()) if dense.numel() else 0.0
    agree = bool(torch.allclose(local, dense, rtol=1e-3, atol=1e-5 + 1e-4 * scale))
    return agree, saved.total // max(1, len(grid))


def _dense_rows(segment, x, channel, position):
    """The same rows from the full map, one plain backward pass each."""
    xr = x.clone().requires_grad_()
    out = []
    with torch.enable_grad():
        z = segment(xr)
        for r, (j, (py, px)) in enumerate(zip(channel.tolist(), position.tolist())):
            g, = torch.autograd.grad(z[0, j, py, px], xr, retain_graph=r < len(channel) - 1)
            out.append((g[0] * x[0]).sum((1, 2)).float())
    return torch.stack(out)
