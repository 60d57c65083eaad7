"""Example patches of every neuron, stored in the Atlas for the views.

``attach_patches`` measures the receptive fields of the atlas's layers, crops each neuron's ``k``
best top images around the argmax over that field (``example_patches``) and stores them, with the
activation map over each patch (for the gallery's heatmap overlay), as the section ``"patches"``:

    meta    size, k, layers, input_shape, heatmap_layers
    arrays  patches  (neurons, k, size, size, 3) uint8   the patches, best first
            heatmaps (neurons, k, size, size)    uint8   the neuron's map over each patch,
                                                          255 = the neuron's largest top value
            values   (neurons, k) float32                spatial max of each patch's image (NaN: none)
            images   (neurons, k) int64                  image id of each patch (-1: none)

NeuroCartography cropped a fixed +-15 % of the map around the argmax, which is too small for deep
layers and too large for shallow ones; here the crop is the measured receptive field of the layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..capture import Capture, model_device
from .patches import _to_uint8_image, example_patches, image_getter
from .receptive_field import ReceptiveField, receptive_fields


def _model_input(item) -> torch.Tensor:
    """The model input of a data set item: a (C, H, W) float tensor."""
    if isinstance(item, dict):
        item = item["image"]
    elif isinstance(item, (tuple, list)):
        item = item[0]
    if not isinstance(item, torch.Tensor):
        item = torch.as_tensor(np.asarray(item))
    if item.ndim != 3:
        raise ValueError(f"dataset items must hold a (C, H, W) image tensor as the model sees it, "
                         f"got shape {tuple(item.shape)}")
    return item


def _top(atlas, layer: str, k: int):
    """(index, values, rows, cols) of the first k top images of every channel of a layer."""
    top = atlas.stats.layers[layer].top
    index = top.index[:, :k].cpu().numpy().astype(np.int64)
    values = top.values[:, :k].float().cpu().numpy().astype(np.float32)
    positions = top.positions[:, :k].cpu().numpy().astype(np.int64)
    shape = tuple(atlas.stats.shapes[layer])
    if len(shape) == 2:
        rows, cols = np.divmod(positions, shape[1])
    else:
        rows = cols = np.zeros_like(positions)
    pad = k - index.shape[1]
    if pad > 0:  # the atlas keeps fewer top images than k
        index = np.pad(index, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=np.nan)
        rows = np.pad(rows, ((0, 0), (0, pad)))
        cols = np.pad(cols, ((0, 0), (0, pad)))
    values = np.where(index >= 0, values, np.nan).astype(np.float32)
    return index, values, rows, cols


def _heat_crops(maps: torch.Tensor, rf: ReceptiveField, rows, cols, size: int) -> torch.Tensor:
    """Crop the receptive-field box of (rows[i], cols[i]) out of map i upsampled to the input.

    maps: (n, h, w) float. Returns (n, size, size) float; zero where the box leaves the image."""
    height, width = rf.input_shape
    up = F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)
    up = up[:, 0]
    if rf.whole_image:
        crops = up
    else:
        ph, pw = rf.size
        padded = F.pad(up, (pw, pw, ph, ph))
        boxes = rf.boxes(rows, cols)
        crops = torch.stack([padded[i, t + ph:b + ph, l + pw:r + pw]
                             for i, (t, l, b, r) in enumerate(boxes.tolist())])
    return F.interpolate(crops[:, None], size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0]


def attach_patches(atlas, model: torch.nn.Module, dataset, *, k: int = 9, size: int | None = None,
                   input_shape=None, mean=None, std=None, fill=127, heatmaps: bool = True,
                   rf: dict | None = None, batch_size: int = 64, progress: bool = True) -> dict:
    """Compute every neuron's ``k`` example patches and store them as ``atlas.sections["patches"]``.

    ``dataset`` must be the data set the atlas was built from, in the loader's order (image ids are
    positions in it); its items are images or (image, label) pairs as the model sees them.
    ``input_shape`` (C, H, W) defaults to the shape of ``dataset[0]``'s image; the receptive fields
    are measured for it (or taken from ``rf``, a ``receptive_fields`` dict). Patches are resized to
    ``size`` x ``size`` pixels (default: the input height, at most 64). ``mean``/``std`` undo a
    normalisation for display (see ``image_getter``); ``fill`` colours the parts of a box outside
    the image. With ``heatmaps`` the top images run through the model once more (in batches of
    ``batch_size``, on the model's device) to crop each neuron's activation map over its patches.

    Returns the section dict (also stored in the atlas). See the module docstring for its format.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number of patches, at least 1, got {k!r}")
    if len(dataset) < atlas.stats.n_images:
        raise ValueError(f"the atlas was built over {atlas.stats.n_images} images but the data set "
                         f"has {len(dataset)}: pass the data set the atlas was built from")
    if input_shape is None:
        input_shape = tuple(_model_input(dataset[0]).shape)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 2:
        input_shape = (3,) + input_shape
    if size is None:
        size = min(input_shape[1], 64)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    layers = atlas.layers
    if rf is None:
        rf = receptive_fields(model, layers, input_shape)
    missing = [name for name in layers if name not in rf]
    if missing:
        raise KeyError(f"no receptive field for layers {missing}: measure them with "
                       "receptive_fields(model, atlas.layers, input_shape)")
    getter = image_getter(dataset, mean, std)
    cache: dict[int, np.ndarray] = {}

    def pixels(i):  # each image is decoded once, however many neurons use it
        if i not in cache:
            cache[i] = _to_uint8_image(getter(i))
        return cache[i]

    n_total = len(atlas.neuron_ids)
    patches = np.zeros((n_total, k, size, size, 3), dtype=np.uint8)
    patches[:] = np.asarray(fill, dtype=np.uint8)
    values = np.full((n_total, k), np.nan, dtype=np.float32)
    images = np.full((n_total, k), -1, dtype=np.int64)
    tops, start = {}, 0
    for name in tqdm(layers, desc="patches", disable=not progress):
        index, vals, rows, cols = _top(atlas, name, k)
        channels = index.shape[0]
        tops[name] = (start, index, vals, rows, cols)
        valid = index >= 0
        if valid.any():
            crops = example_patches(pixels, rf[name], index[valid], rows[valid], cols[valid],
                                    size=size, fill=fill)
            block = patches[start:start + channels]
            block[valid] = crops
        values[start:start + channels] = vals
        images[start:start + channels] = index
        start += channels
    meta = {"size": size, "k": int(k), "layers": layers, "input_shape": list(input_shape),
            "heatmap_layers": []}
    arrays = {"patches": patches, "values": values, "images": images}
    if heatmaps:
        heat, meta["heatmap_layers"] = _heatmaps(atlas, model, dataset, rf, tops, size,
                                                 batch_size, progress)
        arrays["heatmaps"] = heat
    section = {"meta": meta, "arrays": arrays}
    atlas.sections["patches"] = section
    return section


def _heatmaps(atlas, model, dataset, rf, tops, size, batch_size, progress):
    """(neurons, k, size, size) uint8 maps over the patches, and the layers that have them."""
    n_total = len(atlas.neuron_ids)
    k = next(iter(tops.values()))[1].shape[1]
    heat = np.zeros((n_total, k, size, size), dtype=np.uint8)
    map_layers = [name for name in tops if len(atlas.stats.shapes[name]) == 2]
    if not map_layers:
        return heat, []
    # which (layer, channel, rank) needs which image
    needs: dict[int, list] = {}
    for name in map_layers:
        _, index, _, _, _ = tops[name]
        for c, r in zip(*np.nonzero(index >= 0)):
            needs.setdefault(int(index[c, r]), []).append((name, int(c), int(r)))
    ids = sorted(needs)
    maps = {name: {} for name in map_layers}  # (c, r) -> (h, w) map
    device = model_device(model)
    with Capture(model, map_layers) as capture, torch.inference_mode():
        for s in tqdm(range(0, len(ids), batch_size), desc="heatmaps", disable=not progress):
            batch = ids[s:s + batch_size]
            x = torch.stack([_model_input(dataset[i]) for i in batch]).to(device)
            model(x)
            for b, i in enumerate(batch):
                for name, c, r in needs[i]:
                    maps[name][(c, r)] = capture.outputs[name][b, c].float()
    for name in map_layers:
        start, index, vals, rows, cols = tops[name]
        keys = sorted(maps[name])
        if not keys:
            continue
        stack = torch.stack([maps[name][key] for key in keys]).cpu()
        cs = np.array([key[0] for key in keys])
        rs = np.array([key[1] for key in keys])
        crops = _heat_crops(stack, rf[name], rows[cs, rs], cols[cs, rs], size).numpy()
        # scale by the neuron's best top value, so the overlay compares across its patches
        top_value = np.where(index >= 0, vals, -np.inf).max(axis=1)[cs]
        scale = np.where(top_value > 0, top_value, 1.0)[:, None, None]
        scaled = np.clip(crops / scale, 0, 1) * 255
        heat[start + cs, rs] = np.rint(scaled).astype(np.uint8)
    return heat, map_layers
