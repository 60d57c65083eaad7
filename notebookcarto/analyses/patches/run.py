"""Example patches of every neuron, for the galleries and the views.

``example_patches`` measures the receptive fields of the atlas's layers, crops each neuron's
``n_patches`` best top images around the argmax over that field (``crop_patches``) and returns
them, with the activation map over each patch (for the gallery's heatmap overlay), as a
``Patches`` result.

NeuroCartography cropped a fixed +-15 % of the map around the argmax, which is too small for deep
layers and too large for shallow ones; here the crop is the receptive field of the layer (derived
from the model's graph where it can be, measured by a probe elsewhere; see ``fields``).
Where that field leaves the image (always, once it is larger than the image, as in the deep layers
of CIFAR networks) the box is clipped to the image by default and resized to ``size``, rather than
padded, which would show a small off-centre picture in a grey frame. Each heat map is cut from the
activation map, upsampled to the input with every map position placed at the centre of its
receptive field, with exactly the patch's box and resized by the same filter, so the overlay lies
on the pixels it describes (a plain upsampling puts position j at (j + 1/2) * stride instead,
(stride - 1) / 2 pixels off for the usual "same"-padded strided convolutions).

Under ``torch.distributed`` (``datasets.shard``) each rank reads, crops and maps only the top
images of its shard, and the ranks gather each other's patches: every slot is filled by the one
rank that holds its image, so the result is the one process's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ...capture import Capture, model_device
from ...datasets.items import image_data
from ...datasets.shard import World, current_world, sampler_ids, shard_ids
from ...stats.collective import agree, gather_tensors, together
from .crops import _cut, _fill_colour, _resize, _to_uint8_image, crop_patches, image_getter
from .fields import ReceptiveField, receptive_fields
from .result import Patches

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["example_patches"]


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


def _axis_weights(n_map: int, n_pixels: int, stride: int, offset: int, size: int,
                  whole: bool) -> np.ndarray:
    """(n_pixels, n_map) bilinear weights that upsample one axis of a map to the input.

    Map position j sits at the centre of its receptive field, ``offset + j * stride + size / 2``
    (pixel i spans [i, i + 1)); pixels beyond the first or last centre take the edge value.
    Without a usable stride (whole-image fields, a single position) the positions are spread
    evenly over the axis, as bilinear interpolation with align_corners=False does."""
    if whole or stride <= 0:
        stride = n_pixels / n_map
        first = stride / 2
    else:
        first = offset + size / 2
    u = np.clip((np.arange(n_pixels) + 0.5 - first) / stride, 0, n_map - 1)
    j0 = np.floor(u).astype(np.int64)
    j1 = np.minimum(j0 + 1, n_map - 1)
    w = u - j0
    weights = np.zeros((n_pixels, n_map), dtype=np.float32)
    np.add.at(weights, (np.arange(n_pixels), j0), 1 - w)
    np.add.at(weights, (np.arange(n_pixels), j1), w)
    return weights


def _heat_crops(maps: torch.Tensor, rf: ReceptiveField, rows, cols, size: int, fill,
                chunk: int = 256) -> np.ndarray:
    """Cut from map i (upsampled to the input) the region the patch of (rows[i], cols[i]) shows,
    with the same box (``_cut``: clipped when ``fill`` is None, else padded with zeros) and the
    same resize to ``size`` x ``size`` as the patch.

    maps: (n, h, w) float on the CPU. Returns float32 (n, size, size)."""
    height, width = rf.input_shape
    n, h, w = maps.shape
    along_rows = torch.from_numpy(_axis_weights(h, height, rf.stride[0], rf.offset[0],
                                                rf.size[0], rf.whole_image))
    along_cols = torch.from_numpy(_axis_weights(w, width, rf.stride[1], rf.offset[1],
                                                rf.size[1], rf.whole_image))
    pad = None if fill is None else 0.0
    out = np.zeros((n, size, size), dtype=np.float32)
    for s in range(0, n, chunk):  # in chunks: input-sized maps of a whole layer can be large
        up = torch.einsum("ih,nhw,jw->nij", along_rows, maps[s:s + chunk].float(),
                          along_cols).numpy()
        for j in range(up.shape[0]):
            region = _cut(up[j], rf, int(rows[s + j]), int(cols[s + j]), pad)
            out[s + j] = _resize(region, (size, size))
    return out


def example_patches(atlas: "Atlas", model: torch.nn.Module, data, *, n_patches: int = 9,
                    size: int | None = None, input_shape=None, mean=None, std=None, fill=None,
                    heatmaps: bool = True, rf: dict | None = None, batch_size: int = 64,
                    progress: bool = True, distributed: str = "auto") -> Patches | None:
    """Every neuron's ``n_patches`` example patches, as a ``Patches`` result.

    ``data`` must be the data set the atlas was built from, in the same order (image ids are
    positions in it); its items are images or (image, label) pairs as the model sees them (see
    ``notebookcarto.datasets.items``). ``input_shape`` (C, H, W) defaults to the shape of the
    first image; the receptive fields are measured for it (or taken from ``rf``, a
    ``receptive_fields`` dict). Patches are resized to ``size`` x ``size`` pixels (default: the
    input height, at most 64). ``mean``/``std`` undo a normalisation for display; by default
    they are read from a torchvision ``Normalize`` in the data set's transform (see
    ``image_getter``). Where a receptive field leaves the image, ``fill=None`` (the default)
    clips the box to the image and resizes what is left to ``size``; a grey level or an RGB
    triple pads the box with that colour instead (the full field, with the argmax at its
    centre). With ``heatmaps`` the top images run through the model once more (in batches of
    ``batch_size``, on the model's device) to cut each neuron's activation map over its patches:
    the same box as the patch (zeros where a padded box leaves the image), resized the same way.

    Under ``torch.distributed`` (``distributed="auto"``, see ``datasets.shard``) each process
    reads only the top images of its shard (ids ``rank::size`` of a data set, or those of a
    loader's ``DistributedSampler``) and every rank gets the patches of all (``"rank0"``: rank
    0 only, the others get None; ``"off"``: each process reads every image itself).
    """
    if isinstance(n_patches, bool) or not isinstance(n_patches, (int, np.integer)) or n_patches < 1:
        raise ValueError(f"n_patches must be a whole number of patches, at least 1, got "
                         f"{n_patches!r}")
    k = int(n_patches)
    world = current_world(distributed)
    data, mine = _shard(data, world)
    progress = progress and (world is None or world.rank == 0)
    items = image_data(data, model=model)
    if len(items) < atlas.stats.n_images:
        raise ValueError(f"the atlas was built over {atlas.stats.n_images} images but the data set "
                         f"has {len(items)}: pass the data set the atlas was built from")
    if input_shape is None:
        input_shape = items.first_shape
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 2:
        input_shape = (3,) + input_shape
    if size is None:
        size = min(input_shape[1], 64)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    colour = None if fill is None else _fill_colour(fill)
    layers = atlas.layers
    if rf is None:  # from the model's graph; probed (with a progress bar) only where needed
        rf = receptive_fields(model, layers, input_shape, progress=progress)
    missing = [name for name in layers if name not in rf]
    if missing:
        raise KeyError(f"no receptive field for layers {missing}: measure them with "
                       "receptive_fields(model, atlas.layers, input_shape)")
    with together("patches", world):
        patches, values, images, heat, heat_layers = _read(
            atlas, model, data, items, rf, k, size, colour, mean, std, heatmaps, batch_size,
            progress, mine)
    if world is not None:
        agree(None, "patches", world)
        if not _gathered(patches, heat, _owned(images, mine), world):
            return None
    return Patches(patches=patches, values=values, images=images, heatmaps=heat,
                   layers=list(layers), input_shape=list(input_shape),
                   heatmap_layers=heat_layers,
                   fill=None if colour is None else [int(v) for v in colour],
                   params={"mean": _listed(mean), "std": _listed(std),
                           "batch_size": int(batch_size)})


def _read(atlas, model, data, items, rf, k, size, colour, mean, std, heatmaps, batch_size,
          progress, mine):
    """(patches, values, images, heat maps or None, heat-map layers): the slots whose image this
    rank reads (``mine``: a mask over image ids, None for all) filled, the others empty."""
    getter = image_getter(data, mean, std)
    cache: dict[int, np.ndarray] = {}

    def pixels(i):  # each image is decoded once, however many neurons use it
        if i not in cache:
            cache[i] = _to_uint8_image(getter(i))
        return cache[i]

    n_total = len(atlas.neuron_ids)
    patches = np.zeros((n_total, k, size, size, 3), dtype=np.uint8)
    patches[:] = 127 if colour is None else colour  # slots without an image
    values = np.full((n_total, k), np.nan, dtype=np.float32)
    images = np.full((n_total, k), -1, dtype=np.int64)
    tops, start = {}, 0
    for name in tqdm(atlas.layers, desc="patches", disable=not progress):
        index, vals, rows, cols = _top(atlas, name, k)
        channels = index.shape[0]
        tops[name] = (start, index, vals, rows, cols)
        read = _owned(index, mine)
        if read.any():
            crops = crop_patches(pixels, rf[name], index[read], rows[read], cols[read],
                                 size=size, fill=colour)
            block = patches[start:start + channels]
            block[read] = crops
        values[start:start + channels] = vals
        images[start:start + channels] = index
        start += channels
    heat, heat_layers = None, []
    if heatmaps:
        heat, heat_layers = _heatmaps(atlas, model, items, rf, tops, size, colour, batch_size,
                                      progress, mine)
    return patches, values, images, heat, heat_layers


def _shard(data, world: World | None):
    """(the data to read images by id from, a mask over image ids: those this rank reads, or
    None for all). A loader with a ``DistributedSampler`` gives its shard's ids and its data set
    (ids are positions in it); any other data is read ``rank::size``."""
    if world is None:
        return data, None
    sampler = data.sampler if isinstance(data, DataLoader) else None
    if isinstance(sampler, DistributedSampler):
        ids, keep = sampler_ids(sampler, len(data.dataset), world)
        mine = np.zeros(len(data.dataset), dtype=bool)
        mine[ids[keep].numpy()] = True
        return data.dataset, mine
    n = len(image_data(data))
    mine = np.zeros(n, dtype=bool)
    mine[shard_ids(n, world).numpy()] = True
    return data, mine


def _owned(index: np.ndarray, mine: np.ndarray | None) -> np.ndarray:
    """Which slots of ``index`` (image ids, -1: none) hold an image this rank reads."""
    valid = index >= 0
    return valid if mine is None else valid & mine[np.where(valid, index, 0)]


def _gathered(patches, heat, owned, world: World) -> bool:
    """Fill every rank's slots into ``patches`` and ``heat`` (in place) from the rank that read
    their image; False on the ranks that do not keep the result."""
    slots = np.flatnonzero(owned)
    flat_patches = patches.reshape(-1, *patches.shape[2:])
    mine = [torch.from_numpy(slots), torch.from_numpy(flat_patches[slots])]
    if heat is not None:
        flat_heat = heat.reshape(-1, *heat.shape[2:])
        mine.append(torch.from_numpy(flat_heat[slots]))
    per_rank = gather_tensors(mine, world)
    if per_rank is None:
        return False
    for parts in per_rank:
        theirs = parts[0].numpy()
        flat_patches[theirs] = parts[1].numpy()
        if heat is not None:
            flat_heat[theirs] = parts[2].numpy()
    return True


def _listed(value):
    """A mean/std argument as JSON: None, or a list of floats."""
    return None if value is None else [float(v) for v in np.atleast_1d(value)]


def _heatmaps(atlas, model, items, rf, tops, size, fill, batch_size, progress, mine=None):
    """(neurons, k, size, size) uint8 maps over the patches, and the layers that have them; only
    of the images in ``mine`` (a mask over image ids, None for all), zeros elsewhere."""
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
        for c, r in zip(*np.nonzero(_owned(index, mine))):
            needs.setdefault(int(index[c, r]), []).append((name, int(c), int(r)))
    ids = sorted(needs)
    maps = {name: {} for name in map_layers}  # (c, r) -> (h, w) map
    device = model_device(model)
    with Capture(model, map_layers, copy=True) as capture, torch.inference_mode():
        for s in tqdm(range(0, len(ids), batch_size), desc="heatmaps", disable=not progress):
            batch = ids[s:s + batch_size]
            x = items.images(batch).to(device)
            model(x)
            for name in map_layers:
                picks = [(b, c, r) for b, i in enumerate(batch) for layer, c, r in needs[i]
                         if layer == name]
                if not picks:
                    continue
                bs, cs, _ = zip(*picks)
                # a gathered copy on the CPU: views would keep every batch's whole output alive
                chosen = capture.outputs[name][list(bs), list(cs)].float().cpu()
                for j, (_, c, r) in enumerate(picks):
                    maps[name][(c, r)] = chosen[j]
    for name in map_layers:
        start, index, vals, rows, cols = tops[name]
        keys = sorted(maps[name])
        if not keys:
            continue
        stack = torch.stack([maps[name][key] for key in keys])
        cs = np.array([key[0] for key in keys])
        rs = np.array([key[1] for key in keys])
        crops = _heat_crops(stack, rf[name], rows[cs, rs], cols[cs, rs], size, fill)
        # scale by the neuron's best top value, so the overlay compares across its patches
        top_value = np.where(index >= 0, vals, -np.inf).max(axis=1)[cs]
        scale = np.where(top_value > 0, top_value, 1.0)[:, None, None]
        scaled = np.clip(crops / scale, 0, 1) * 255
        heat[start + cs, rs] = np.rint(scaled).astype(np.uint8)
    return heat, map_layers
