"""The two per-image influence estimators: Summit's conv estimator (``conv_influence``) and the
activation-times-gradient estimator (``gradient_influence``); see the package docstring for what
each measures."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...capture import as_channels
from ..backend import choose_backend

__all__ = ["CHUNK_ELEMENTS", "conv_influence", "default_chunk", "gradient_influence"]

# Values per intermediate tensor: small on CPU (the grouped conv's output stays in cache and
# batched backward passes stay cheap), large on GPUs (fewer, fuller kernel launches).
CHUNK_ELEMENTS = {"cpu": 2 ** 20, "cuda": 2 ** 26}


def default_chunk(device: torch.device | str) -> int:
    """The default ``chunk_elements`` for a device."""
    return CHUNK_ELEMENTS.get(torch.device(device).type, CHUNK_ELEMENTS["cpu"])


# -- the conv estimator -------------------------------------------------------------------------

def conv_influence(x: torch.Tensor, weight: torch.Tensor, *, stride: int | tuple = 1,
                   padding: int | tuple | str = 0, dilation: int | tuple = 1, groups: int = 1,
                   scale: torch.Tensor | None = None, padding_mode: str = "zeros",
                   chunk_elements: int | None = None, backend: str = "auto") -> torch.Tensor:
    """Summit's per-image influence through one convolution: (B, C_out, C_in).

    ``x`` (B, C_in, H, W) is the conv's input, ``weight`` (C_out, C_in / groups, kh, kw) its
    kernel; ``stride``, ``padding`` (int, pair or "same" / "valid"), ``dilation``, ``groups``
    and ``padding_mode`` as in ``nn.Conv2d`` (``stride`` is the total stride at which output
    positions are evaluated). ``scale`` (C_out,), if given, multiplies each output channel's
    kernel (a folded BatchNorm). Entry [b, j, i] is the max over positions of x[b, i]
    convolved with the kernel slice that joins input i to output j, alone. In a grouped
    convolution (``groups`` > 1: ResNeXt; depthwise when ``groups`` = C_in: MobileNet,
    EfficientNet) output j reads only the inputs of its own group: every other entry is -inf
    (no connection, never among the top inputs).

    A 1x1 kernel needs no convolution: x[b, i] * K[j, i] peaks at K[j, i] times the maximum of
    x[b, i] over the sampled positions (times the minimum where K[j, i] < 0), exactly. Other
    kernels, by ``backend``: ``"torch"`` runs one grouped convolution (one group per input
    channel) per chunk of input channels and images, holding about ``chunk_elements`` values
    (default: ``default_chunk``) before the max; ``"numba"`` (CPU only) computes the same
    numbers in one compiled loop that keeps only running maxima: on CPU the grouped conv is
    bound by memory (it writes C_in x C_out maps per image) and runs several times slower.
    ``"auto"``: numba on CPU, torch elsewhere.
    """
    if x.ndim != 4 or weight.ndim != 4 or groups < 1 or weight.shape[1] * groups != x.shape[1] \
            or weight.shape[0] % groups:
        raise ValueError(f"need x (B, C_in, H, W) and weight (C_out, C_in / groups, kh, kw) with "
                         f"C_in and C_out divisible by groups={groups}, got {tuple(x.shape)} and "
                         f"{tuple(weight.shape)}")
    backend = choose_backend(backend, x.device)
    kh, kw = weight.shape[2:]
    stride, dilation = _pair(stride), _pair(dilation)
    x, padding = _pad_input(x, padding, padding_mode, (kh, kw), dilation)
    if scale is not None:
        weight = weight * scale.to(weight.dtype).view(-1, 1, 1, 1)
    h_out = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"the kernel ({kh}x{kw}) does not fit the input {tuple(x.shape[2:])}")
    taps = _taps(weight, groups)  # (C_in, kh, kw, C_out / groups)
    if kh == kw == 1:
        per_input = _pointwise_maxima(x, taps, stride, padding, (h_out, w_out))
    elif backend == "numba":
        # imported on first use: numba takes about half a second to import
        from .kernel import conv_max_numba
        per_input = conv_max_numba(x, taps, stride=stride, padding=padding, dilation=dilation,
                                   out_size=(h_out, w_out))
    else:
        per_input = _grouped_conv_maxima(x, taps, stride, padding, dilation, (h_out, w_out),
                                         chunk_elements or default_chunk(x.device))
    return _by_output(per_input, groups)


def _taps(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in / G, kh, kw) -> (C_in, kh, kw, C_out / G): for each input channel, the kernel
    slices of the outputs of its group."""
    c_out, c_in_g, kh, kw = weight.shape
    w = weight.reshape(groups, c_out // groups, c_in_g, kh, kw)
    return w.permute(0, 2, 3, 4, 1).reshape(groups * c_in_g, kh, kw, c_out // groups)


def _by_output(per_input: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C_in, C_out / G) maxima within groups -> (B, C_out, C_in), -inf across groups."""
    b, c_in, c_out_g = per_input.shape
    if groups == 1:
        return per_input.transpose(1, 2).contiguous()
    c_in_g = c_in // groups
    out = torch.full((b, groups, c_out_g, groups, c_in_g), -torch.inf, dtype=per_input.dtype,
                     device=per_input.device)
    # the diagonal blocks (b, C_out / G, C_in / G, G): output group g reads input group g
    out.diagonal(dim1=1, dim2=3).copy_(per_input.view(b, groups, c_in_g, c_out_g)
                                       .permute(0, 3, 2, 1))
    return out.view(b, groups * c_out_g, c_in)


def _pointwise_maxima(x, taps, stride, padding, out_size) -> torch.Tensor:
    """A 1x1 kernel: the max over positions of x_i * K[j, i] is K[j, i] * max x_i, or
    K[j, i] * min x_i for a negative K[j, i] (monotone rounding keeps this exact)."""
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    x = x[:, :, ::stride[0], ::stride[1]][:, :, :out_size[0], :out_size[1]].flatten(2)
    high, low = x.amax(2, keepdim=True).float(), x.amin(2, keepdim=True).float()
    k = taps[:, 0, 0, :].to(torch.float32)[None]  # (1, C_in, C_out / G)
    return torch.where(k >= 0, k * high, k * low)


def _grouped_conv_maxima(x, taps, stride, padding, dilation, out_size, chunk_elements):
    """The torch back end: one grouped conv per chunk of input channels (and images)."""
    b, c_in = x.shape[:2]
    _, kh, kw, c_out_g = taps.shape
    # group i holds the C_out / G kernel slices of input channel i
    grouped = taps.permute(0, 3, 1, 2).reshape(c_in * c_out_g, 1, kh, kw).to(x.dtype)
    per_map = c_out_g * out_size[0] * out_size[1]  # elements per image and input channel
    n_in = int(min(c_in, max(1, chunk_elements // max(1, b * per_map))))
    n_img = b if n_in > 1 else int(min(b, max(1, chunk_elements // per_map)))
    out = torch.empty(b, c_in, c_out_g, dtype=torch.float32, device=x.device)
    for i0 in range(0, c_in, n_in):
        i1 = min(i0 + n_in, c_in)
        w = grouped[i0 * c_out_g:i1 * c_out_g]
        for b0 in range(0, b, n_img):
            b1 = min(b0 + n_img, b)
            y = F.conv2d(x[b0:b1, i0:i1], w, stride=stride, padding=padding, dilation=dilation,
                         groups=i1 - i0)
            out[b0:b1, i0:i1] = y.view(b1 - b0, i1 - i0, c_out_g, -1).amax(3)
    return out


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad_input(x, padding, padding_mode, kernel, dilation):
    """Apply string padding and non-zero padding modes explicitly: (x, numeric padding)."""
    if padding == "valid":
        return x, (0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(reversed(kernel), reversed(dilation)):  # F.pad wants the last dim first
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        mode = "constant" if padding_mode == "zeros" else padding_mode
        return F.pad(x, pads, mode=mode), (0, 0)
    padding = _pair(padding)
    if padding_mode != "zeros" and any(padding):
        pads = [padding[1], padding[1], padding[0], padding[0]]
        return F.pad(x, pads, mode=padding_mode), (0, 0)
    return x, padding


# -- the gradient estimator ---------------------------------------------------------------------

def gradient_influence(z: torch.Tensor, x: torch.Tensor, *, wrt: torch.Tensor | None = None,
                       skip_tokens: int = 0, chunk_elements: int | None = None,
                       retain_graph: bool = False) -> torch.Tensor:
    """First-order influence of each channel of ``x`` on the spatial maximum of each channel of
    ``z``: (B, C_z, C_x), entry [b, j, i] = sum over positions of x[b, i] * d max(z[b, j]) / d x.

    ``z`` must be computed from ``x`` (or from ``wrt``, a tensor whose gradient equals the
    gradient with respect to ``x``, e.g. a zero added to it). Maps may be (B, C, H, W), token
    sequences (B, T, C) (the first ``skip_tokens`` tokens are not positions of a channel) or
    vectors (B, C). Images must not interact (a model in eval mode). Each batched backward pass
    covers as many output channels as fit in ``chunk_elements`` (default: ``default_chunk``).
    """
    return _gradient_influences(z, [x], [x if wrt is None else wrt], skip_tokens=skip_tokens,
                                chunk_elements=chunk_elements, retain_graph=retain_graph)[0]


def _gradient_influences(z, xs, wrts, *, skip_tokens, chunk_elements=None, rows=None,
                         retain_graph=False):
    """``gradient_influence`` of one later map on several earlier maps in one backward pass;
    ``rows`` later channels per batched backward pass (default: from ``chunk_elements``)."""
    if not z.requires_grad:
        raise ValueError("the later map does not depend on the earlier one (it needs no gradient)")
    zc = as_channels(z, skip_tokens=skip_tokens)
    b, c_out, p_out = zc.shape
    positions = zc.argmax(2)  # (B, C_out): where each channel's spatial maximum lies
    xcs = [as_channels(x.detach(), skip_tokens=skip_tokens) for x in xs]
    if rows is None:
        chunk_elements = chunk_elements or default_chunk(z.device)
        widest = max([c_out * p_out] + [xc.shape[1] * xc.shape[2] for xc in xcs])
        rows = chunk_elements // max(1, b * widest)
    n = int(min(c_out, max(1, rows)))
    outs = [torch.empty(b, c_out, xc.shape[1], dtype=torch.float32, device=z.device) for xc in xcs]
    images = torch.arange(b, device=z.device)
    for j0 in range(0, c_out, n):
        j1 = min(j0 + n, c_out)
        rows = torch.arange(j1 - j0, device=z.device)
        cot = torch.zeros(j1 - j0, b, c_out, p_out, dtype=z.dtype, device=z.device)
        cot[rows[:, None], images[None], (j0 + rows)[:, None], positions[:, j0:j1].T] = 1
        last = j1 == c_out and not retain_graph
        cot = _from_channels(cot, z, skip_tokens)
        if j1 - j0 == 1:  # a plain backward pass: vmap over one cotangent only adds overhead
            grads = torch.autograd.grad(z, wrts, cot[0], retain_graph=not last, allow_unused=True)
            grads = [None if g is None else g.unsqueeze(0) for g in grads]
        else:
            grads = torch.autograd.grad(z, wrts, cot, is_grads_batched=True,
                                        retain_graph=not last, allow_unused=True)
        for out, xc, g in zip(outs, xcs, grads):
            if g is None:
                raise ValueError("the later map does not depend on one of the earlier maps")
            gc = _grad_channels(g, skip_tokens)
            out[:, j0:j1] = torch.einsum("nbip,bip->bni", gc, xc).float()
    return outs


def _from_channels(cot: torch.Tensor, z: torch.Tensor, skip_tokens: int) -> torch.Tensor:
    """(N, B, C, P) cotangents in channel layout -> (N, *z.shape)."""
    if z.ndim == 4:
        return cot.reshape(cot.shape[0], *z.shape)
    if z.ndim == 3:
        return F.pad(cot.transpose(2, 3), (0, 0, skip_tokens, 0))
    return cot.squeeze(3)


def _grad_channels(g: torch.Tensor, skip_tokens: int) -> torch.Tensor:
    """(N, *x.shape) batched gradients -> (N, B, C, P)."""
    if g.ndim == 5:
        return g.flatten(3)
    if g.ndim == 4:
        return g[:, :, skip_tokens:].transpose(2, 3)
    return g.unsqueeze(3)
