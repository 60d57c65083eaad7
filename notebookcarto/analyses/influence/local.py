"""The gradient estimator on crops: the same numbers as the dense batched backward pass, for
blocks whose outputs depend on a small window of their input (convolutions, pooling, residual
and inception blocks).

The gradient estimator needs, for every image b and later channel j, the gradient of
z_j(p_bj) (the value at channel j's spatial argmax p_bj) with respect to the earlier map x.
Done densely, that is one backward pass through the whole block per later channel: about
C_later times the block's cost, 37x a forward pass of a CIFAR ResNet-20 before any overhead.
But z_j(p) depends only on the window of x around stride * p that the block's receptive
field covers (5x5 for two 3x3 convolutions). So the block is run again, with gradients, on the
crops of x that the (image, channel) rows read, batched (rows whose crops coincide share one),
and a backward pass from each row gives that row's influence exactly.

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
# rows at most that share one crop's forward pass: more take more, and smaller, backward passes
_PIECE_ROWS = 8


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

    def crops(self, image: torch.Tensor, positions: torch.Tensor):
        """The distinct crops that rows read (images (R,), output positions (R, 2)): their
        images (U,), their starts (U, 2) and each row's crop (R,)."""
        start = self.starts(positions)
        h, w = self.in_size
        key, crop = torch.unique((image * h + start[:, 0]) * w + start[:, 1], return_inverse=True)
        return key // (h * w), torch.stack([key // w % h, key % w], 1), crop

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
                    channel: torch.Tensor, position: torch.Tensor, *, rows: int) -> torch.Tensor:
    """Influence rows on crops: (R, C_x), row r = sum over positions of x[image_r] times the
    gradient of the block's channel ``channel_r`` at output ``position_r`` ((R, 2): row,
    column). Rows whose crops coincide share the crop's forward pass, in pieces of up to
    ``_PIECE_ROWS`` rows: pieces of k rows run together, up to ``rows`` crops a batched forward
    pass, then k backward passes, the i-th from the i-th row of each piece.

    Tried and dropped: packing rows with disjoint windows into one backward pass over the full
    map (the channels' maxima cluster: an 8x8 map of a CIFAR ResNet-20 needs about 40 packed
    passes for its 64 rows), and batched backward passes (``is_grads_batched``): torch loops
    over the cotangents in convolution and BatchNorm backward and then concatenates them."""
    out = torch.empty(len(image), x.shape[1], dtype=torch.float32, device=x.device)
    crop_image, start, crop = window.crops(image, position)
    at = position - start[crop] // torch.tensor(window.stride, device=x.device)
    piece, piece_crop = _pieces(crop, _PIECE_ROWS)
    counts = torch.bincount(piece)
    order = torch.argsort(piece, stable=True)  # the rows, piece by piece
    first = counts.cumsum(0) - counts
    for w in torch.unique(counts).tolist():
        group = (counts == w).nonzero()[:, 0]
        for p0 in range(0, len(group), rows):
            ids = group[p0:p0 + rows]
            of = order[first[ids, None] + torch.arange(w, device=x.device)]  # (pieces, w) rows
            c = piece_crop[ids]
            crops = _gather(x, crop_image[c], start[c], window.size).requires_grad_()
            with torch.enable_grad():
                z = segment(crops)
            each = torch.arange(len(ids), device=x.device)
            for k in range(w):
                rk = of[:, k]
                cot = torch.zeros_like(z)
                cot[each, channel[rk], at[rk, 0], at[rk, 1]] = 1
                g, = torch.autograd.grad(z, crops, cot, retain_graph=k < w - 1)
                out[rk] = (g * crops.detach()).sum((2, 3)).float()
    return out


def _pieces(crop: torch.Tensor, most: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop's rows in pieces of at most ``most``: each row's piece (R,), each piece's
    crop (P,)."""
    counts = torch.bincount(crop)
    order = torch.argsort(crop, stable=True)
    first = counts.cumsum(0) - counts
    slot = torch.empty_like(crop)  # the row's place among its crop's rows
    slot[order] = torch.arange(len(crop), device=crop.device) - first[crop[order]]
    per = int(counts.max()) // most + 1
    key, piece = torch.unique(crop * per + slot // most, return_inverse=True)
    return piece, key // per


def _gather(x, image, start, size) -> torch.Tensor:
    """(N, C, size) crops of ``x`` at ``start`` ((N, 2) rows and columns) in images ``image``,
    channels last (faster convolutions and BatchNorm on small maps on CPU)."""
    iy = (start[:, 0, None] + torch.arange(size[0], device=x.device))[:, :, None]
    ix = (start[:, 1, None] + torch.arange(size[1], device=x.device))[:, None, :]
    return x[image[:, None, None], :, iy, ix].permute(0, 3, 1, 2)


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
    local = local_influence(segment, x, window, image, channel, position, rows=len(grid))
    dense = _dense_rows(segment, x, channel, position)
    scale = float(dense.abs().max()) if dense.numel() else 0.0
    agree = bool(torch.allclose(local, dense, rtol=1e-3, atol=1e-5 + 1e-4 * scale))
    crop_image, start, _ = window.crops(image, position)
    crops = _gather(x, crop_image, start, window.size).requires_grad_()
    saved = _SavedBytes(nn.Module())
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        segment(crops)
    return agree, saved.total // len(crops)


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
