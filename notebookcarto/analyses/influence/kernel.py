"""The conv estimator's CPU back end: one compiled loop (numba) that keeps only running maxima.

The grouped convolution writes C_in x C_out maps per image before taking their maxima, which
on CPU is bound by memory; this loop computes, for each image and input channel, one output row
for all output channels at a time and folds it into the maxima, so the intermediate maps never
exist. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

from ..backend import torch_threads_kept

__all__ = ["conv_max_numba"]


@numba.njit(parallel=True, cache=True)
def _kernel(xp, wt, sy, sx, dy, dx, h_out, w_out, out):
    # xp (B, C_in, Hp, Wp) padded input, wt (C_in, kh, kw, C_out), out (B, C_in, C_out)
    n_img, c_in = xp.shape[0], xp.shape[1]
    kh, kw, c_out = wt.shape[1], wt.shape[2], wt.shape[3]
    for t in numba.prange(n_img * c_in):
        b, i = t // c_in, t % c_in
        row = np.empty((w_out, c_out), dtype=np.float32)  # one output row, all j
        best = np.full(c_out, -np.inf, dtype=np.float32)
        for y in range(h_out):
            row[:] = 0.0
            for a in range(kh):
                yy = y * sy + a * dy
                for c in range(kw):
                    taps = wt[i, a, c]
                    for x in range(w_out):
                        v = xp[b, i, yy, x * sx + c * dx]
                        for j in range(c_out):
                            row[x, j] += v * taps[j]
            for x in range(w_out):
                for j in range(c_out):
                    best[j] = max(best[j], row[x, j])
        out[b, i, :] = best


def conv_max_numba(x: torch.Tensor, taps: torch.Tensor, *, stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int],
                   out_size: tuple[int, int]) -> torch.Tensor:
    """(B, C_in, C_out): entry [b, i, j] is the max over the ``out_size`` output positions of
    x[b, i] (zero-padded by ``padding``) convolved with ``taps[i, :, :, j]`` alone, in float32.

    ``x`` (B, C_in, H, W) on CPU; ``taps`` (C_in, kh, kw, C_out): each input channel's kernel
    slices, one per output channel it feeds (all outputs of a full conv, those of its group in
    a grouped one), with any folded scale already applied; ``stride``, ``padding`` and
    ``dilation`` as (rows, columns) pairs. Runs on as many threads as torch uses (at most
    numba's own limit).
    """
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    xp = x.detach().to(torch.float32).contiguous().numpy()
    wt = taps.detach().to(torch.float32).contiguous().numpy()
    out = np.empty((x.shape[0], x.shape[1], taps.shape[3]), np.float32)
    wanted = torch.get_num_threads()
    with torch_threads_kept():  # numba's first call starts its threading layer
        threads = numba.get_num_threads()
        numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
        try:
            _kernel(xp, wt, stride[0], stride[1], dilation[0], dilation[1], *out_size, out)
        finally:
            numba.set_num_threads(threads)
    return torch.from_numpy(out)
