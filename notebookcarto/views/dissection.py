"""DissectionPanel: Network Dissection's results beside the other views.

Detectors per layer and category (the dissection's ``summary()``), the units with their best
concept and IoU (``units()``: sortable by IoU, concept or unit, filtered by layer and category,
detectors only or all), and the top images of the selected unit with its mask overlaid (the
``DissectionGallery``, when attached). A click on a unit selects its neuron in every linked
view; a neuron selected elsewhere shows its masks here.
"""

from __future__ import annotations

import numpy as np
import traitlets as t

from . import adapters
from .base import View
from .data import sprite_sheets, usable_format
from .traits import Array, Option, check_options

__all__ = ["SORTS", "DissectionPanel", "resize_images"]

SORTS = ("iou", "concept", "unit")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(n, k, H, W, 3) uint8 images -> (n, k, size, size, 3), resampled with Pillow's box
    filter when they are larger (smaller ones are kept, then padded to ``size``)."""
    from PIL import Image

    n, k, h, w = images.shape[:4]
    if h == w == size:
        return images
    out = np.zeros((n, k, size, size, 3), np.uint8)
    for i in range(n):
        for j in range(k):
            picture = Image.fromarray(images[i, j])
            if max(h, w) > size:
                picture = picture.resize((size, size), Image.Resampling.BOX)
            tile = np.asarray(picture)
            out[i, j, :tile.shape[0], :tile.shape[1]] = tile
    return out


class DissectionPanel(View):
    """Network Dissection's detectors, units and masks (see the module docstring).

    ``sort`` ('iou', 'concept' or 'unit'), ``layer`` and ``category`` (filters, "" for all)
    and ``detectors_only`` set the unit table; ``mask_px`` the size the gallery's images are
    sent at. Without a dissection the panel says which analysis makes one.
    """

    _view = t.Unicode("dissection").tag(sync=True)
    layers = t.List(t.Unicode()).tag(sync=True)
    concepts = t.List(t.Unicode()).tag(sync=True)
    categories = t.List(t.Unicode()).tag(sync=True)
    threshold = t.Float(0.0).tag(sync=True)
    summary = t.List(t.Dict()).tag(sync=True)
    unit_concept = Array("int32", ndim=1).tag(sync=True)  # (neurons,), -1: none
    unit_category = Array("int32", ndim=1).tag(sync=True)
    unit_iou = Array("float32", ndim=1).tag(sync=True)  # NaN: not dissected
    unit_detector = Array("uint8", ndim=1).tag(sync=True)
    # the gallery: sprite sheets of mask_rows units each, one row of mask_k images a unit
    mask_k = t.Int(0).tag(sync=True)
    mask_size = t.Int(0).tag(sync=True)
    mask_format = Option(("webp", "png"), default_value="webp").tag(sync=True)
    mask_rows = t.Int(0).tag(sync=True)
    mask_sheets = t.List(t.Bytes()).tag(sync=True)
    mask_row = Array("int32", ndim=1).tag(sync=True)  # (neurons,) row in the sheets, -1: none
    mask_ids = Array("int32", ndim=2).tag(sync=True)  # (rows, mask_k) image ids, -1: none
    sort = Option(SORTS, default_value="iou").tag(sync=True)
    layer = t.Unicode("").tag(sync=True)
    category = t.Unicode("").tag(sync=True)
    detectors_only = t.Bool(True).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    SORTS = SORTS

    def __init__(self, atlas, *, sort: str = "iou", detectors_only: bool = True,
                 mask_px: int = 72, image_format: str = "webp", height: int = 0,
                 state=None, data=None):
        check_options(type(self), sort=sort)
        if mask_px < 16:
            raise ValueError(f"mask_px must be at least 16, got {mask_px}")
        traits, notes = {}, []
        units = adapters.dissection_units(atlas)
        if units is None:
            notes.append(adapters.note("dissection"))
        else:
            traits.update(layers=units["layers"], concepts=units["concepts"],
                          categories=units["categories"], threshold=units["threshold"],
                          summary=adapters.dissection_summary(atlas),
                          unit_concept=units["concept"], unit_category=units["category"],
                          unit_iou=units["iou"], unit_detector=units["detector"])
            traits.update(self._masks(atlas, mask_px, image_format, notes))
        super().__init__(atlas, state=state, data=data, sort=sort, height=height,
                         detectors_only=detectors_only, notes=notes, **traits)

    @staticmethod
    def _masks(atlas, size: int, image_format: str, notes: list) -> dict:
        masks = adapters.dissection_masks(atlas)
        if masks is None:
            notes.append(adapters.note("dissection_gallery") + " to see each unit's masks")
            return {}
        images, ids, neurons = masks
        fmt = usable_format(image_format)
        images = resize_images(images, min(size, images.shape[2]))
        rows = max(1, min(128, 16000 // images.shape[2]))
        row = np.full(len(atlas.neuron_ids), -1, np.int32)
        row[neurons] = np.arange(len(neurons), dtype=np.int32)
        return dict(mask_k=images.shape[1], mask_size=images.shape[2], mask_format=fmt,
                    mask_rows=rows, mask_sheets=sprite_sheets(images, rows, fmt),
                    mask_row=row, mask_ids=ids.astype(np.int32))
