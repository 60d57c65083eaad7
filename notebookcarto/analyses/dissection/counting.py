"""The two passes of a dissection: per-unit thresholds T_k, then the counts I, A, G and the
top images of every unit."""

from __future__ import annotations

import math

import torch

from ...capture import model_device
from ...stats.quantile import QuantileSketch, TopValues
from ...stats.reducers import LayerBatch, TopImages
from .batches import CHUNK_ELEMENTS, chunks, forward, resample

NO_MASKS = ("the data set has no concept masks or image-level labels (for the chosen concepts): "
            "dissection needs annotated images; check sample(i).masks / .labels")


def thresholds_pass(model, data, layers, *, estimator, method, quantile, k, seed, chosen,
                batch_size, num_workers, progress, exact_limit):
    """Pass 1: one quantile estimator per layer; T = the (1 - quantile) quantile per unit.
    Returns (thresholds, layers whose exact estimator was too small)."""
    q = 1.0 - quantile
    sketches: dict[str, QuantileSketch | TopValues] = {}
    annotated = False
    for batch, outputs in forward(model, data, layers, batch_size, num_workers, progress,
                                   "dissection: thresholds"):
        if not annotated:
            concepts = chosen.remap[batch.mask_concepts.to(chosen.remap.device)]
            labels = chosen.remap[batch.labels.to(chosen.remap.device)]
            has_pixels = batch.masks.flatten(2).any(2).to(concepts.device)
            annotated = bool(((concepts < chosen.k) & has_pixels).any()
                             or (labels < chosen.k).any())
        for i, name in enumerate(layers):
            z = outputs[name]
            if name not in sketches:
                c = z.shape[1]
                positions = (z.shape[2] * z.shape[3] if method == "original"
                             else math.prod(batch.mask_shape))
                t = TopValues.needed(len(data) * positions, q)
                if estimator == "exact" or (estimator == "auto" and t * c <= exact_limit):
                    sketches[name] = TopValues(c, t, device=z.device)
                else:
                    sketches[name] = QuantileSketch(c, k=k, device=z.device, seed=seed * 1000 + i)
            estimate = sketches[name]
            if method == "original":
                estimate.update(z, dim=1)
            elif isinstance(estimate, TopValues) and estimate.floor is not None:
                _add_resampled_tail(estimate, z, batch.mask_shape)
            else:
                per_image = z.shape[1] * math.prod(batch.mask_shape)
                for part in chunks(z.shape[0], per_image):
                    estimate.update(resample(z[part], batch.mask_shape), dim=1)
    if not annotated:
        raise ValueError(NO_MASKS)
    thresholds, failed = {}, []
    for name, s in sketches.items():
        if isinstance(s, TopValues) and TopValues.needed(s.count, q) > s.t:
            failed.append(name)
        else:
            thresholds[name] = s.quantile(q)
    return thresholds, failed


def _active_maps(z: torch.Tensor, floor: torch.Tensor, shape, maxima=None):
    """Resampled maps of the (image, unit) pairs whose raw maximum exceeds ``floor`` (C,): no
    other pair can exceed it after bilinear resampling (a convex combination of raw values).
    Yields (images, units, resampled maps (H, W, n)) in chunks."""
    maxima = z.amax((2, 3)) if maxima is None else maxima
    image, unit = (maxima > floor).nonzero(as_tuple=True)
    step = max(1, CHUNK_ELEMENTS // math.prod(shape))
    for s in range(0, len(image), step):
        i, u = image[s:s + step], unit[s:s + step]
        # the pairs as the channels of one image: channels-last resampling is fastest
        up = resample(z[i, u].unsqueeze(0), shape)[0]  # (n, H, W)
        yield i, u, up.permute(1, 2, 0)  # (H, W, n): contiguous when resampled


def _add_resampled_tail(estimate: TopValues, z: torch.Tensor, shape):
    """2020 method, exact estimator: add the resampled values above the floor."""
    floor = estimate.floor
    channels, values = [], []
    for _, unit, up in _active_maps(z, floor, shape):
        above = up > floor[unit]
        channels.append(unit[above.nonzero()[:, 2]])
        values.append(up[above])
    if channels:
        estimate.add(torch.cat(channels), torch.cat(values), z.shape[0] * math.prod(shape))
    else:
        estimate.add(floor.new_zeros(0, dtype=torch.long), floor.new_zeros(0),
                     z.shape[0] * math.prod(shape))


SPARSE_DENSITY = 0.05  # share of raw positions above threshold up to which the tally goes sparse


def _tally_dense(z, t, shape, masks, part):
    """(b, M + 1, C) counts for images ``part``: every resampled map, thresholded, times the
    masks (a matrix product of booleans; the last mask row, all True, counts M_k's pixels)."""
    fired = (resample(z[part], shape) > t.view(1, -1, 1, 1)).flatten(2)  # (b, C, P)
    # exact integer counts in float32 (P < 2**24)
    return torch.bmm(masks[part].float(), fired.transpose(1, 2).float()).long()


def _tally_sparse(z, t, shape, pixel_masks, maxima):
    """The same (B, M + 1, C) counts from the fired pixels only: resample the maps of active
    (image, unit) pairs, threshold, and look up which masks hold each fired pixel
    (``pixel_masks``: (B, P, M + 1) bool, the masks pixel by pixel)."""
    b, c = z.shape[:2]
    rows = pixel_masks.shape[2]
    out = torch.zeros(b * rows * c, dtype=torch.long, device=z.device)
    width = shape[1]
    for image, unit, up in _active_maps(z, t, shape, maxima):
        y, x, pair = (up > t[unit]).nonzero(as_tuple=True)
        if len(pair) == 0:
            continue
        i, u = image[pair], unit[pair]
        fired, row = pixel_masks[i, y * width + x].nonzero(as_tuple=True)
        out += torch.bincount((i[fired] * rows + row) * c + u[fired], minlength=out.numel())
    return out.view(b, rows, c)


def tally_pass(model, data, layers, thresholds, chosen, top_n, batch_size, num_workers, progress):
    """Pass 2: I, A, G and the top images of every unit."""
    device = model_device(model)
    k, g = chosen.k, len(chosen.categories)
    inter: dict[str, torch.Tensor] = {}
    area: dict[str, torch.Tensor] = {}
    top: dict[str, TopImages] = {}
    ground = torch.zeros(k + 1, dtype=torch.long, device=device)
    for batch, outputs in forward(model, data, layers, batch_size, num_workers, progress,
                                   "dissection: IoU"):
        masks, concepts, labels, pixels, carried = chosen.batch(batch, device)
        positions = math.prod(batch.mask_shape)
        ground.index_add_(0, concepts.flatten(), pixels.flatten())
        ground.index_add_(0, labels.flatten(),
                          torch.full((labels.numel(),), positions, dtype=torch.long,
                                     device=device))
        index = batch.index.to(device)
        pixel_masks = None
        for name in layers:
            z = outputs[name]
            c = z.shape[1]
            if name not in inter:
                t = thresholds[name]
                if t.shape != (c,):
                    raise ValueError(f"layer {name!r} has {c} units but {tuple(t.shape)} "
                                     "thresholds were given")
                thresholds[name] = t.to(device=device, dtype=torch.float32)
                inter[name] = torch.zeros(k + 1, c, dtype=torch.long, device=device)
                area[name] = torch.zeros(g + 1, c, dtype=torch.float64, device=device)
                top[name] = TopImages(c, top_n, device=device)
            maxima = z.amax((2, 3)).float()
            top[name].update(LayerBatch(maxima, torch.zeros_like(maxima, dtype=torch.long),
                                        index))  # positions are not kept
            t = thresholds[name]
            raw_share = int(torch.count_nonzero(z > t.view(1, c, 1, 1))) / z.numel()
            if raw_share <= SPARSE_DENSITY:
                if pixel_masks is None:
                    pixel_masks = masks.transpose(1, 2).contiguous()
                parts = [(slice(None), _tally_sparse(z, t, batch.mask_shape, pixel_masks,
                                                     maxima))]
            else:
                parts = [(part, _tally_dense(z, t, batch.mask_shape, masks, part))
                         for part in chunks(z.shape[0], c * positions)]
            for part, both in parts:
                counts = both[:, -1]  # pixels of M_k per image
                inter[name].index_add_(0, concepts[part].flatten(), both[:, :-1].reshape(-1, c))
                lab = labels[part]
                inter[name].index_add_(0, lab.flatten(), counts.unsqueeze(1).expand(
                    -1, lab.shape[1], -1).reshape(-1, c))
                area[name] += carried[part].double().T @ counts.double()
    return {
        "intersection": {n: v[:k].T.cpu().numpy() for n, v in inter.items()},
        "area": {n: v[:g].T.round().long().cpu().numpy() for n, v in area.items()},
        "ground": ground[:k].cpu().numpy(),
        "top_images": {n: r.index.cpu().numpy() for n, r in top.items()},
        "top_values": {n: r.values.cpu().numpy() for n, r in top.items()},
    }

