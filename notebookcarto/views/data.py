"""Atlas-wide data the views share: layers, classes, example patches, clusters, concepts,
feature visualisations.

Large arrays travel as binary array traits (``traits.Array``: dtype, shape and the bytes) and
patches as WebP (or PNG) sprite sheets, never as JSON lists. One ``AtlasData`` model serves all
linked views.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import anywidget
import numpy as np
import traitlets as t

from . import adapters
from ._common import NO_VIEW_ESM
from .traits import Array, Option

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["AtlasData", "heat_colours", "relevance_csr", "sprite_sheets", "square_tiles",
           "usable_format"]


def _image_bytes(image: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if fmt == "webp":
        picture.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        picture.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def usable_format(fmt: str) -> str:
    """``fmt`` ('webp' or 'png'), or 'png' where Pillow cannot write WebP."""
    if fmt not in ("webp", "png"):
        raise ValueError(f"image_format must be 'webp' or 'png', got {fmt!r}")
    if fmt == "webp":
        from PIL import features

        if not features.check("webp"):
            return "png"  # Pillow built without libwebp
    return fmt


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """uint8 heat values -> RGBA uint8 overlay: transparent at 0, dark red through orange to
    pale yellow and mostly opaque at 255."""
    v = heat.astype(np.float32) / 255.0
    rgba = np.empty(heat.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = np.clip(120 + 400 * v, 0, 255)
    rgba[..., 1] = np.clip(255 * (v - 0.35) * 1.6, 0, 255)
    rgba[..., 2] = np.clip(255 * (v - 0.8) * 5, 0, 255)
    rgba[..., 3] = np.clip(215 * v ** 1.5, 0, 255)  # faint where the neuron is weak
    return rgba


def sprite_sheets(patches: np.ndarray, rows: int, fmt: str = "webp", quality: int = 88,
                  heat: bool = False) -> list[bytes]:
    """(neurons, k, s, s[, 3]) patches -> images of ``rows`` neurons each, one neuron per row of
    k patches side by side (heat maps become RGBA overlays)."""
    n, k, s = patches.shape[:3]
    sheets = []
    for start in range(0, n, rows):
        block = patches[start:start + rows]
        if heat:
            block = heat_colours(block)
        # (r, k, s, s, c) -> (r * s, k * s, c)
        image = np.ascontiguousarray(block.transpose(0, 2, 1, 3, 4)).reshape(
            block.shape[0] * s, k * s, block.shape[-1])
        sheets.append(_image_bytes(image, fmt, quality))
    return sheets


def square_tiles(images: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) images -> (n, 1, S, S, 3) with S = max(H, W), centred on black (the layout
    ``sprite_sheets`` takes, one image a row)."""
    n, h, w = images.shape[:3]
    size = max(h, w)
    out = np.zeros((n, 1, size, size, 3), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, 0, top:top + h, left:left + w] = images
    return out


def relevance_csr(atlas: "Atlas", max_per_layer: int | None = None):
    """Summit's A per class, each layer scaled by its largest count for that class, as CSR
    (indptr (K+1,), neuron index, value in (0, 1]). Only neurons with A > 0 are stored; with
    ``max_per_layer`` only the largest that many per layer and class."""
    k = len(atlas.class_names) if atlas.stats.num_classes else 0
    indptr, index, value = [0], [], []
    counts = []
    start = 0
    for name, layer in atlas.stats.layers.items():
        counts.append((start, layer.aggregation.counts.cpu().numpy().astype(np.float64)))
        start += layer.channels
    parts = 0
    for c in range(k):
        for offset, a in counts:
            row = a[c]
            top = row.max() if row.size else 0
            if top <= 0:
                continue
            nz = np.flatnonzero(row > 0)
            if max_per_layer is not None and len(nz) > max_per_layer:
                nz = nz[np.argsort(-row[nz], kind="stable")[:max_per_layer]]
                nz.sort()
            index.append(nz + offset)
            value.append(row[nz] / top)
        indptr.append(indptr[-1] + sum(len(v) for v in index[parts:]))
        parts = len(index)
    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return np.asarray(indptr, np.uint32), cat(index, np.uint32), cat(value, np.float32)


class AtlasData(anywidget.AnyWidget):
    """The atlas data every view reads (one model shared by linked views; renders nothing).

    Build it with ``AtlasData.from_atlas(atlas)``.
    """

    _esm = NO_VIEW_ESM
    layers = t.List(t.Unicode()).tag(sync=True)
    layer_sizes = t.List(t.Int()).tag(sync=True)
    class_names = t.List(t.Unicode()).tag(sync=True)
    notes = t.Dict().tag(sync=True)
    # example patches: sprite sheets of sheet_rows neurons, one row of patch_k patches each (the
    # sheets are encoded image files, so they travel as plain bytes, one buffer a sheet)
    patch_k = t.Int(0).tag(sync=True)
    patch_size = t.Int(0).tag(sync=True)
    patch_format = Option(("webp", "png"), default_value="webp").tag(sync=True)
    sheet_rows = t.Int(0).tag(sync=True)
    patch_sheets = t.List(t.Bytes()).tag(sync=True)
    heat_sheets = t.List(t.Bytes()).tag(sync=True)
    patch_values = Array("float32", ndim=2).tag(sync=True)  # (neurons, patch_k), NaN: no image
    # per-neuron labels (-1: none)
    cluster = Array("int32", ndim=1).tag(sync=True)
    concept = Array("int32", ndim=1).tag(sync=True)
    concept_names = t.List(t.Unicode()).tag(sync=True)
    concept_source = t.Unicode("").tag(sync=True)
    iou = Array("float32", ndim=1).tag(sync=True)  # the dissection's best IoU, NaN: none
    stream = Array("int32", ndim=1).tag(sync=True)  # residual stream, an index of stream_names
    stream_names = t.List(t.Unicode()).tag(sync=True)
    neighbors = Array("uint32", ndim=2).tag(sync=True)  # (neurons, n_neighbors)
    n_neighbors = t.Int(0).tag(sync=True)
    # Summit's A per class, scaled per layer, as CSR
    rel_indptr = Array("uint32", ndim=1).tag(sync=True)
    rel_index = Array("uint32", ndim=1).tag(sync=True)
    rel_value = Array("float32", ndim=1).tag(sync=True)
    # feature visualisations: fv_rows images a sprite sheet, one a row, in the order of fv_keys
    # (the ids of neurons, classes and graph nodes: "layer:channel", "class:<k>", "cluster:<n>")
    fv_keys = t.List(t.Unicode()).tag(sync=True)
    fv_labels = t.List(t.Unicode()).tag(sync=True)
    fv_method = t.Unicode("").tag(sync=True)
    fv_size = t.Int(0).tag(sync=True)
    fv_format = Option(("webp", "png"), default_value="webp").tag(sync=True)
    fv_rows = t.Int(0).tag(sync=True)
    fv_sheets = t.List(t.Bytes()).tag(sync=True)

    @classmethod
    def from_atlas(cls, atlas: "Atlas", *, image_format: str = "webp", quality: int = 88,
                   sheet_rows: int = 128, n_neighbors: int = 10, neighbor_limit: int = 100_000,
                   relevance_per_layer: int | None = None) -> "AtlasData":
        """Everything the views need from ``atlas``. Patches become sprite sheets of
        ``sheet_rows`` neurons (``image_format`` 'webp' or 'png', WebP ``quality``); with a
        neuron embedding, the ``n_neighbors`` nearest neighbours (cosine) of each neuron are
        precomputed for atlases of up to ``neighbor_limit`` neurons (larger ones use the 2-D
        projection in the browser); ``relevance_per_layer`` caps the class relevance kept per
        class and layer. Feature visualisations, when attached, travel as sprite sheets of
        the same format."""
        fmt = usable_format(image_format)
        sizes = [layer.channels for layer in atlas.stats.layers.values()]
        notes = {}
        state = dict(layers=atlas.layers, layer_sizes=sizes,
                     class_names=list(atlas.class_names) if atlas.stats.num_classes else [])
        patches = adapters.patches(atlas)
        if patches is not None:
            k, size = patches.n_patches, patches.size
            rows = max(1, min(sheet_rows, 16000 // size))
            state.update(patch_k=k, patch_size=size, patch_format=fmt, sheet_rows=rows,
                         patch_sheets=sprite_sheets(patches.patches, rows, fmt, quality),
                         patch_values=np.asarray(patches.values, np.float32))
            if patches.heatmaps is not None:
                state["heat_sheets"] = sprite_sheets(patches.heatmaps, rows, fmt, quality,
                                                     heat=True)
        else:
            notes["patches"] = adapters.note("patches")
        cluster = adapters.cluster_labels(atlas)
        if cluster is not None:
            state["cluster"] = cluster.astype(np.int32)
        else:
            notes["clusters"] = adapters.note("clusters")
        labels, names, source = adapters.concept_labels(atlas)
        if labels is not None:
            state.update(concept=labels, concept_names=names, concept_source=source)
        streams = adapters.stream_labels(atlas)
        if streams is not None:
            state.update(stream=streams[0], stream_names=streams[1])
        units = adapters.dissection_units(atlas)
        if units is not None:
            state["iou"] = units["iou"]
        else:
            notes["dissection"] = adapters.note("dissection")
        near = adapters.neighbours(atlas, n_neighbors, neighbor_limit)
        if near is not None:
            state.update(neighbors=near, n_neighbors=near.shape[1])
        visuals = adapters.feature_visualizations(atlas)
        if visuals is not None:
            keys, labels, images, method = visuals
            tiles = square_tiles(images)
            rows = max(1, min(sheet_rows, 16000 // tiles.shape[2]))
            state.update(fv_keys=keys, fv_labels=labels, fv_method=method,
                         fv_size=tiles.shape[2], fv_format=fmt, fv_rows=rows,
                         fv_sheets=sprite_sheets(tiles, rows, fmt, quality))
        if atlas.stats.num_classes:
            indptr, index, value = relevance_csr(atlas, relevance_per_layer)
            state.update(rel_indptr=indptr, rel_index=index, rel_value=value)
        return cls(notes=notes, **state)
