"""Galleries of a unit's top images with its mask M_k overlaid."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...capture import Capture, model_device
from ...datasets.concept_data import ConceptData
from .batches import check_map, resample
from .result import Dissection, DissectionGallery

__all__ = ["dissection_gallery", "overlay_mask", "unit_gallery"]


def overlay_mask(image: np.ndarray, mask: np.ndarray, darken: float = 0.35,
                 outline=(255, 214, 0)) -> np.ndarray:
    """uint8 (H, W, 3) image with the region outside ``mask`` darkened and the mask's border
    drawn in ``outline`` (None: no border)."""
    image = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(mask, dtype=bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask of shape {mask.shape} for an image of shape {image.shape[:2]}")
    out = np.where(mask[..., None], image, np.rint(image * darken)).astype(np.uint8)
    if outline is not None:
        padded = np.pad(mask, 1, constant_values=False)
        inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
        out[mask & ~inner] = np.asarray(outline, dtype=np.uint8)
    return out


def _overlays(model, data, result: Dissection, layer: str, pairs, darken, outline):
    """Overlays for (channel, image id) pairs of one layer, in order: uint8 (n, H, W, 3)."""
    device = model_device(model)
    ids = sorted({int(i) for _, i in pairs})
    pictures = {i: np.asarray(data.image_uint8(i), dtype=np.uint8) for i in ids}
    shapes = {p.shape for p in pictures.values()}
    if len(shapes) > 1:
        raise ValueError(f"the gallery images have different sizes {sorted(shapes)}")
    maps: dict[int, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}
    wanted: dict[int, list[int]] = {}
    for c, i in pairs:
        wanted.setdefault(int(i), []).append(int(c))
    with Capture(model, [layer], on_output=captured.__setitem__, copy=True), torch.inference_mode():
        for start in range(0, len(ids), 64):
            chunk = ids[start:start + 64]
            images = torch.stack([data.sample(i).image for i in chunk]).to(device)
            model(images)
            z = captured[layer]
            check_map(layer, z)
            for row, i in enumerate(chunk):
                maps[i] = z[row].float().cpu()
    threshold = torch.as_tensor(result.thresholds[layer])
    out = []
    for c, i in pairs:
        picture = pictures[int(i)]
        up = resample(maps[int(i)][int(c)][None, None], picture.shape[:2])[0, 0]
        out.append(overlay_mask(picture, (up > threshold[int(c)]).numpy(), darken, outline))
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), dtype=np.uint8)


def unit_gallery(model: nn.Module, data: ConceptData, result: Dissection, neuron: str, *,
                 n_images: int | None = None, darken: float = 0.35,
                 outline=(255, 214, 0)) -> tuple[np.ndarray, np.ndarray]:
    """A unit's top images (best first, at most ``n_images``; default all kept) with its mask
    M_k = (activation resampled to the image size > T_k) overlaid: the outside darkened, the
    border drawn. Returns (uint8 (n, H, W, 3), image ids (n,))."""
    layer, _, channel = str(neuron).rpartition(":")
    result._check_layer(layer)
    c = int(channel)
    ids = result.top_images[layer][c]
    ids = ids[ids >= 0][:n_images]
    images = _overlays(model, data, result, layer, [(c, i) for i in ids], darken, outline)
    return images, ids


def dissection_gallery(model: nn.Module, data: ConceptData, result: Dissection, *,
                       n_images: int = 10, darken: float = 0.35,
                       outline=(255, 214, 0)) -> DissectionGallery:
    """Galleries of every dissected unit: its ``n_images`` top images with its mask overlaid
    (``unit_gallery``), as a ``DissectionGallery`` (zeros and id -1 where a unit has fewer)."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    images, image_ids = {}, {}
    for layer in result.layers:
        top = result.top_images[layer][:, :n_images]
        pairs = [(c, int(i)) for c in range(top.shape[0]) for i in top[c] if i >= 0]
        overlays = _overlays(model, data, result, layer, pairs, darken, outline)
        size = overlays.shape[1:] if len(overlays) else (1, 1, 3)
        images[layer] = np.zeros((top.shape[0], n_images, *size), dtype=np.uint8)
        image_ids[layer] = np.full((top.shape[0], n_images), -1, dtype=np.int64)
        slot = np.zeros(top.shape[0], dtype=np.int64)
        for (c, i), image in zip(pairs, overlays):
            images[layer][c, slot[c]] = image
            image_ids[layer][c, slot[c]] = i
            slot[c] += 1
    params = {"n_images": n_images, "darken": float(darken),
              "outline": None if outline is None else [int(v) for v in outline]}
    return DissectionGallery(list(result.layers), images, image_ids, params)
