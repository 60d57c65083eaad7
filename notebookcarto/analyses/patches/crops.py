"""Example patches: the part of a top image that a neuron's maximum looked at.

For a neuron's top images (``Atlas.top_images``), the argmax position of the channel's map and
the layer's ``ReceptiveField`` give the input box that produced the maximum. ``crop_patches``
cuts those boxes out as uint8 (n, h, w, 3) arrays for a gallery. Where a box leaves the image it
either pads with a fill colour (every patch has the full receptive-field size and the argmax stays
at its centre) or, with ``fill=None``, clips the box to the image (what a display wants once the
fields of deep layers grow as large as the image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ...datasets.items import find_normalization, image_data, warn_if_normalized
from .fields import ReceptiveField

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["crop_patches", "image_getter", "neuron_patches"]


def _to_uint8_image(item, mean=None, std=None) -> np.ndarray:
    """One image as uint8 (H, W, 3).

    Accepts a torch tensor (C, H, W) or (H, W), a numpy array (H, W, C) or (H, W), or a PIL
    image. Float images are taken as normalised with ``mean``/``std`` (per channel; none:
    already in [0, 1]) and mapped to 0..255; integer images are taken as 0..255. One channel is
    repeated to three, a fourth (alpha) channel dropped.
    """
    if isinstance(item, torch.Tensor):
        x = item.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
        if x.ndim == 3:
            x = np.moveaxis(x, 0, -1)  # tensors are channels first
    else:
        x = np.asarray(item)  # numpy arrays and PIL images are channels last
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image (C, H, W) tensor or (H, W, C) array with 1, 3 or 4 "
                         f"channels, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        channels = x.shape[2]
        if mean is not None or std is not None:
            m = np.broadcast_to(np.asarray(0.0 if mean is None else mean, np.float32), (channels,))
            s = np.broadcast_to(np.asarray(1.0 if std is None else std, np.float32), (channels,))
            x = x.astype(np.float32) * s + m
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        if x.dtype == np.bool_ or x.min() < 0 or x.max() > 255:
            raise ValueError(f"integer images must hold values in 0..255, got dtype {x.dtype} "
                             f"with range {x.min()}..{x.max()}")
        x = x.astype(np.uint8)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x[:, :, :3])


def image_getter(data, mean=None, std=None) -> Callable[[int], np.ndarray]:
    """A function ``id -> uint8 (H, W, 3)`` image for data with images by id (a data set, a
    tensor, an ordered loader; see ``notebookcarto.datasets.items``).

    A data set with an ``image_uint8(i)`` method (e.g. the playground) uses it, unless ``mean``
    or ``std`` are given. Otherwise float (C, H, W) images normalised with ``mean``/``std`` are
    mapped back to pixels; without them, a torchvision ``Normalize`` in the data set's transform
    gives them, and images outside [0, 1] with no normalisation known get a warning (they would
    show saturated).
    """
    if mean is None and std is None and callable(getattr(data, "image_uint8", None)):
        return data.image_uint8
    if mean is None and std is None:
        found = find_normalization(data)
        if found is not None:
            mean, std = found
    items = image_data(data)
    checked = mean is not None or std is not None

    def get(i: int) -> np.ndarray:
        nonlocal checked
        image = items.image(int(i))
        if not checked:
            warn_if_normalized(image, f"image {int(i)}")
            checked = True
        return _to_uint8_image(image, mean, std)

    return get


def _fill_colour(fill) -> np.ndarray:
    colour = np.asarray(fill)
    if colour.ndim == 0:
        colour = np.repeat(colour, 3)
    if (colour.shape != (3,) or not np.issubdtype(colour.dtype, np.number)
            or colour.min() < 0 or colour.max() > 255):
        raise ValueError(f"fill must be a value in 0..255 or three of them (RGB), got {fill!r}")
    return colour.astype(np.uint8)


def _out_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive number of pixels or (height, width), got {size}")
    return size


def _resize(patch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (height, width) with Pillow: uint8 (h, w, 3) images, or float (h, w)
    maps (Pillow's 32-bit float mode, same filter), so a patch and its heat map are resized the
    same way and stay aligned."""
    if patch.shape[:2] == size:
        return patch
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
    if patch.dtype == np.uint8:
        return np.asarray(Image.fromarray(patch).resize((size[1], size[0]), bilinear),
                          dtype=np.uint8)
    if patch.ndim != 2:
        raise ValueError(f"float maps to resize must be (h, w), got shape {patch.shape}")
    plane = Image.fromarray(np.ascontiguousarray(patch, dtype=np.float32), mode="F")
    return np.asarray(plane.resize((size[1], size[0]), bilinear), dtype=np.float32)


def _crop(image: np.ndarray, box, colour) -> np.ndarray:
    """The box (top, left, bottom, right) of an (H, W, ...) array, ``colour`` where it leaves
    the array."""
    top, left, bottom, right = box
    height, width = image.shape[:2]
    patch = np.empty((bottom - top, right - left) + image.shape[2:], dtype=image.dtype)
    patch[:] = colour
    t, b = max(top, 0), min(bottom, height)
    l, r = max(left, 0), min(right, width)
    if t < b and l < r:
        patch[t - top:b - top, l - left:r - left] = image[t:b, l:r]
    return patch


def _clip_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """The part of a (top, left, bottom, right) box that lies inside a height x width image.

    A box wholly outside the image (which a measured receptive field never gives) keeps the
    nearest row or column of the image, so the result always holds at least one pixel."""
    top, left, bottom, right = (int(v) for v in box)
    t, b = min(max(top, 0), height - 1), max(min(bottom, height), 1)
    l, r = min(max(left, 0), width - 1), max(min(right, width), 1)
    return t, l, max(b, t + 1), max(r, l + 1)


def _clip(image: np.ndarray, box) -> np.ndarray:
    """The part of the box (top, left, bottom, right) that lies inside the image."""
    t, l, b, r = _clip_box(box, *image.shape[:2])
    return image[t:b, l:r]


def _cut(array: np.ndarray, rf: ReceptiveField, row: int, col: int, fill) -> np.ndarray:
    """The region of an (H, W, ...) input-sized array that a patch shows: the whole array for a
    whole-image field, else the field's box of (row, col), clipped to the array (``fill`` None)
    or padded with ``fill``. Patches and their heat maps both go through here."""
    if rf.whole_image:
        return array
    if fill is None:
        return _clip(array, rf.box(row, col))
    return _crop(array, rf.box(row, col), fill)


def crop_patches(images, rf: ReceptiveField, image_ids, rows, cols, *, size=None,
                 fill=127) -> np.ndarray:
    """Crop the receptive-field box of map position (rows[i], cols[i]) from image image_ids[i].

    ``images`` is a function ``id -> image`` (e.g. a data set's ``image_uint8``; uint8 (H, W, 3)
    arrays, or anything ``image_getter`` understands) or an indexable data set (wrapped with
    ``image_getter``; use that directly to undo a normalisation). Where a box leaves the image
    the patch holds ``fill`` (a grey level or an RGB triple), so each patch is the full
    receptive field, ``rf.size``, with the argmax position at its centre. ``fill=None`` clips
    the box to the image instead (no padding; better for display when fields are as large as
    the image, where a padded patch is a small off-centre picture in a wide frame) and resizes
    each patch to ``size``, or to the field's size capped by the image's. A whole-image field
    (token and vector layers) gives the whole image. ``size`` (pixels, or (height, width))
    resizes every patch bilinearly (Pillow).

    Returns uint8 (n, h, w, 3). Images must have the size the field was measured for
    (``rf.input_shape``), i.e. the size the model saw.
    """
    ids = np.asarray(image_ids).reshape(-1)
    rows = np.asarray(rows).reshape(-1)
    cols = np.asarray(cols).reshape(-1)
    if not (len(ids) == len(rows) == len(cols)):
        raise ValueError(f"got {len(ids)} image ids, {len(rows)} rows and {len(cols)} columns: "
                         "give one row and one column per image")
    if not isinstance(rf, ReceptiveField):
        raise TypeError(f"rf must be a ReceptiveField (see receptive_fields), got "
                        f"{type(rf).__name__}")
    colour, out = (None if fill is None else _fill_colour(fill)), _out_size(size)
    get = images if callable(images) else image_getter(images)
    patches = []
    for image_id, row, col in zip(ids.tolist(), rows.tolist(), cols.tolist()):
        if not rf.whole_image and rf.map_shape is not None and not (
                0 <= row < rf.map_shape[0] and 0 <= col < rf.map_shape[1]):
            raise ValueError(f"position ({row}, {col}) is outside the layer's "
                             f"{rf.map_shape[0]}x{rf.map_shape[1]} map")
        image = _to_uint8_image(get(image_id))
        if rf.input_shape is not None and image.shape[:2] != tuple(rf.input_shape):
            raise ValueError(f"image {image_id} is {image.shape[0]}x{image.shape[1]} but the "
                             f"receptive field was measured for {rf.input_shape[0]}x"
                             f"{rf.input_shape[1]} inputs: give the images as the model saw them")
        patch = _cut(image, rf, row, col, colour)
        if colour is None and not rf.whole_image:
            out = out or (min(rf.size[0], image.shape[0]), min(rf.size[1], image.shape[1]))
        patches.append(patch if out is None else _resize(patch, out))
    if not patches:
        empty = out or (rf.input_shape if rf.whole_image and rf.input_shape else rf.size)
        return np.zeros((0, *empty, 3), dtype=np.uint8)
    shapes = {p.shape for p in patches}
    if len(shapes) > 1:
        raise ValueError(f"the patches have different shapes {sorted(shapes)}: pass size=... "
                         "to resize them to one")
    return np.stack(patches)


def neuron_patches(atlas: "Atlas", neuron: str, images, rf, *, n_patches: int = 9, size=None,
                   fill=127) -> np.ndarray:
    """Patches of a neuron's ``n_patches`` top images (best first; fewer if the atlas holds
    fewer), cropped around the argmax with ``crop_patches``. ``images`` is what
    ``crop_patches`` takes; ``rf`` is the layer's ``ReceptiveField`` or the dict
    ``receptive_fields`` returns."""
    n = n_patches
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_patches must be a whole number of patches, at least 1, got {n!r}")
    layer, _ = atlas.parse_neuron(neuron)
    if isinstance(rf, Mapping):
        if layer not in rf:
            raise KeyError(f"no receptive field for layer {layer!r}: the dict has {list(rf)}")
        rf = rf[layer]
    top = atlas.top_images(neuron).head(int(n))
    shape = tuple(atlas.stats.shapes[layer])
    if "row" in top:
        if (not rf.whole_image and rf.map_shape is not None
                and tuple(rf.map_shape) != shape):
            raise ValueError(f"layer {layer!r} has a {shape[0]}x{shape[1]} map in the atlas but "
                             f"the receptive field is for a {rf.map_shape[0]}x{rf.map_shape[1]} "
                             "map: measure it for this layer and the input size of the atlas")
        rows, cols = top["row"].to_numpy(), top["col"].to_numpy()
    else:
        if not rf.whole_image:
            raise ValueError(f"layer {layer!r} has no (row, col) map positions, so its patches "
                             "need a whole-image receptive field")
        rows = cols = np.zeros(len(top), dtype=np.int64)
    return crop_patches(images, rf, top["image"].to_numpy(), rows, cols, size=size, fill=fill)
