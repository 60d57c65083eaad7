"""Galleries of a unit's top images with its mask M_k overlaid."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...capture import Capture, model_device
from ...datasets.concept_data import ConceptData
from .batches import check_map, resample
from .result import Dissection


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


def unit_gallery(model: nn.Module, data: ConceptData, result: Dissection, neuron: str,
                 n: int | None = None, darken: float = 0.35, outline=(255, 214, 0)):
    """A unit's top images (best first, at most ``n``; default all kept) with its mask
    M_k = (activation resampled to the image size > T_k) overlaid: the outside darkened, the
    border drawn. Returns (uint8 (n, H, W, 3), image ids (n,))."""
    layer, _, channel = str(neuron).rpartition(":")
    result._check_layer(layer)
    c = int(channel)
    ids = result.top_images[layer][c]
    ids = ids[ids >= 0][:n]
    images = _overlays(model, data, result, layer, [(c, i) for i in ids], darken, outline)
    return images, ids


def attach_gallery(atlas, model: nn.Module, data: ConceptData, result: Dissection,
                   n: int = 10, darken: float = 0.35, outline=(255, 214, 0)) -> np.ndarray:
    """Galleries of every dissected unit into the atlas's "dissection" section: arrays
    ``gallery`` (neurons, n, H, W, 3) uint8 (zeros for units without images) and
    ``gallery_images`` (neurons, n) int64 (-1 for none). Returns the gallery."""
    if "dissection" not in atlas.sections:
        raise KeyError("the atlas has no 'dissection' section: run attach_dissection first")
    position = {name: i for i, name in enumerate(atlas.neuron_ids)}
    gallery, ids_out = None, np.full((len(position), n), -1, dtype=np.int64)
    for layer in result.layers:
        top = result.top_images[layer][:, :n]
        pairs = [(c, int(i)) for c in range(top.shape[0]) for i in top[c] if i >= 0]
        images = _overlays(model, data, result, layer, pairs, darken, outline)
        if gallery is None and len(images):
            gallery = np.zeros((len(position), n, *images.shape[1:]), dtype=np.uint8)
        if len(images) and images.shape[1:] != gallery.shape[2:]:
            raise ValueError("gallery images of different layers have different sizes")
        slot = {}
        for (c, i), image in zip(pairs, images):
            row = position[f"{layer}:{c}"]
            r = slot.get(row, 0)
            gallery[row, r] = image
            ids_out[row, r] = i
            slot[row] = r + 1
    if gallery is None:
        gallery = np.zeros((len(position), n, 1, 1, 3), dtype=np.uint8)
    atlas.sections["dissection"]["arrays"]["gallery"] = gallery
    atlas.sections["dissection"]["arrays"]["gallery_images"] = ids_out
    return gallery

