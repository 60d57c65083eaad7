"""The one adapter between a user's data and every pass of the library.

Any of these can be mapped: a tensor of images (N, C, H, W); a tuple ``(images, labels)`` of
tensors (a tuple, not a list: a list is read as a list of batches); a map-style data set whose
items are an image tensor, an ``(image, label, ...)`` sequence or a dict; a ``DataLoader`` (used
as it is); an iterable data set; any other iterable of batches (a list, a generator), read as a
loader. Dict items and batches name their images by ``image_key`` (default: the first of
"image", "pixel_values") and their labels by ``label_key`` (default: the first of "label",
"labels", "target"; none found means no labels).

``ImageData(source)`` gives batches with image ids (positions in loader order, from
``index_offset``) to the streaming passes, and single images by id to the passes that revisit
exemplars (cluster refinement, heat maps), with the same rules and the same errors everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import (DataLoader, Dataset, DistributedSampler, IterableDataset,
                              SequentialSampler, Subset)
from tqdm.auto import tqdm

from .shard import World, sampler_ids, shard_ids

__all__ = ["IMAGE_KEYS", "LABEL_KEYS", "MAX_ID", "Batch", "ImageData", "find_normalization",
           "image_data", "model_input", "own_loader", "warn_if_normalized"]

IMAGE_KEYS = ("image", "pixel_values")
LABEL_KEYS = ("label", "labels", "target")
# the largest image id: the top-image reducer orders by (value, id) in one int64 key
MAX_ID = 2 ** 32 - 2


@dataclass
class Batch:
    """One batch: images (B, C, H, W) float, labels (B,) int64 or None, image ids (B,) int64."""

    images: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor


def model_input(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's parameters (None for a model without any)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


class ImageData:
    """A user's images (and labels) as batches with image ids, and single images by id.

    ``source``: a tensor, a tuple of tensors, a map-style or iterable data set, or a
    ``DataLoader`` (see the module docstring). Data sets are read in order in batches of
    ``batch_size`` (``num_workers`` loader processes); a loader is used as it is. Images by id
    (``images(ids)``) need a tensor, a data set or a loader over a data set in order.
    ``model``, when given, is what the images must suit: they must have its parameters' dtype
    (checked batch by batch, with a message that says how to fix it).
    """

    def __init__(self, source, *, batch_size: int = 64, num_workers: int = 0,
                 image_key: str | None = None, label_key: str | None = None,
                 model: nn.Module | None = None):
        if isinstance(source, ImageData):
            raise TypeError("source is already an ImageData: pass it as it is")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.image_key, self.label_key = image_key, label_key
        self.expect = model_input(model) if model is not None else None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.loader, self.dataset = _loader_and_dataset(source, batch_size, num_workers)
        self.own = not isinstance(source, DataLoader) and self.dataset is not None

    # -- batches --------------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of images, where the source tells."""
        if self.dataset is not None:
            return len(self.dataset)
        dataset = getattr(self.loader, "dataset", None)  # a shuffled loader still has one
        if dataset is not None and not isinstance(dataset, IterableDataset):
            return len(dataset)
        raise TypeError("this data (an iterable data set or loader) has no length")

    @property
    def n_images(self) -> int | None:
        """The number of images, or None where the source does not tell."""
        try:
            return len(self)
        except TypeError:
            return None

    @property
    def n_batches(self) -> int | None:
        return _length(self.loader)

    def batches(self, *, index_offset: int = 0, device=None, labels: str = "optional",
                progress: bool = False, desc: str = "", world: World | None = None,
                skip: int = 0) -> Iterator[Batch]:
        """Batches in order, images (and labels) on ``device``, ids from ``index_offset``.

        ``labels``: "optional" (every batch has labels or none does), "required" (a batch
        without labels raises before the model runs; the message names ``desc``). ``world``:
        read only this process's shard (``datasets.shard``), ids staying global; a shard may be
        empty. ``skip``: leave out the first ``skip`` batches (a resumed pass); a data set the
        library reads is not even read there, a loader's batches are read and dropped."""
        if self.dataset is not None and not isinstance(self.dataset, _Tensors) and len(self):
            self.image(0)  # a first item the loader could not even batch gets a clear error
        source, ids, keep = self._plan(world, skip)
        labelled, seen, position = None, 0, 0
        # an iterator, not the loader: tqdm given a DataLoader starts a second pass over it,
        # which draws from the global RNG once more than the user's own loop would
        bar = tqdm(iter(source), total=_length(source), desc=desc, disable=not progress)
        for i, raw in enumerate(bar):
            if i < skip and not self.own:
                position += self._parts(raw, f"batch {i}")[0].shape[0]
                continue
            x, y = self.split(raw, i)
            if y is None and labels == "required":
                raise ValueError(f"batch {i} has no labels: {desc or 'this pass'} counts per "
                                 "class, so the data must give (image, label) items")
            if labelled is None:
                labelled = y is not None
            elif labelled != (y is not None):
                raise ValueError(f"batch {i}: some batches have labels and others do not")
            n = x.shape[0]
            index = (torch.arange(position, position + n) if ids is None
                     else ids[position:position + n]) + index_offset
            if keep is not None and not keep[position:position + n].all():
                kept = keep[position:position + n]
                x, y, index = x[kept], None if y is None else y[kept], index[kept]
            position += n
            if not len(index):
                continue
            if int(index.max()) > MAX_ID:
                raise ValueError(f"batch {i}: image id {int(index.max())} is above {MAX_ID}, the "
                                 "largest the statistics can keep: use a smaller index_offset")
            seen += len(index)
            if device is not None:
                x = x.to(device, non_blocking=True)
                y = None if y is None else y.to(device, non_blocking=True)
                index = index.to(device)
            yield Batch(x, y, index)
        if not seen and world is None and not skip:
            raise ValueError("the loader yielded no batches: give it at least one image")

    def _plan(self, world: World | None, skip: int):
        """(what to iterate, global ids of its items in order or None for positions, which
        items to keep or None)."""
        if self.own:
            ids = shard_ids(len(self.dataset), world)[skip * self.batch_size:]
            if world is None and not skip:
                return self.loader, None, None
            if isinstance(self.dataset, _Tensors):
                return _TensorBatches(self.dataset, self.batch_size, ids), ids, None
            return own_loader(Subset(self.dataset, ids.tolist()), self.batch_size,
                              self.num_workers), ids, None
        if world is None:
            return self.loader, None, None
        sampler = getattr(self.loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler):
            raise ValueError(f"this pass runs on rank {world.rank} of {world.size} "
                             "(torch.distributed is initialised) but the loader does not shard "
                             "the data: give the data set itself (the library shards it), or a "
                             "DataLoader with sampler=DistributedSampler(dataset); or pass "
                             "distributed='off' to read all of it in every process")
        ids, keep = sampler_ids(sampler, len(self.loader.dataset), world)
        return self.loader, ids, keep

    def split(self, batch, i: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images and labels of one batch, checked."""
        x, y = self._parts(batch, f"batch {i}")
        x = self._check_images(x, f"batch {i}", batched=True)
        return x, _check_labels(y, x.shape[0], f"batch {i}")

    # -- single images --------------------------------------------------------------------------
    def images(self, ids) -> torch.Tensor:
        """Images by id, stacked: (n, C, H, W) as the model sees them."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.dataset is None:
            raise TypeError("images by id need a tensor, a data set or a loader over a data set "
                            "in order: this data is an iterable stream")
        if isinstance(self.dataset, _Tensors):
            return self.dataset.images[torch.as_tensor(ids, dtype=torch.long)]
        return torch.stack([self.image(i) for i in ids]) if ids else torch.zeros(0)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` (C, H, W), as the model sees it."""
        if self.dataset is None:
            raise TypeError("images by id need a tensor, a data set or a loader over a data set "
                            "in order: this data is an iterable stream")
        n = len(self.dataset)
        if not 0 <= i < n:
            raise IndexError(f"image id {i} is out of range: the data set has {n} images")
        x, _ = self._parts(self.dataset[i], f"item {i}")
        return self._check_images(x, f"item {i}", batched=False)

    @property
    def first_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the first image."""
        if self.dataset is not None:
            return tuple(self.image(0).shape)
        return tuple(next(iter(self.batches())).images.shape[1:])

    # -- rules ----------------------------------------------------------------------------------
    def _parts(self, item, where: str):
        if isinstance(item, Mapping):
            return self._from_dict(item, where)
        if isinstance(item, (tuple, list)):
            if not item:
                raise ValueError(f"{where} is an empty sequence: items must hold an image")
            return item[0], (item[1] if len(item) > 1 else None)
        return item, None

    def _from_dict(self, item: Mapping, where: str):
        keys = list(item)
        image_keys = (self.image_key,) if self.image_key else IMAGE_KEYS
        found = next((k for k in image_keys if k in item), None)
        if found is None:
            wanted = f"image_key={self.image_key!r}" if self.image_key else \
                f"none of {list(IMAGE_KEYS)}"
            raise KeyError(f"{where} is a dict with keys {keys}: {wanted} names its images; "
                           "pass image_key='<key>' to say which key holds the images")
        if self.label_key is not None:
            if self.label_key not in item:
                raise KeyError(f"{where} is a dict with keys {keys} but label_key="
                               f"{self.label_key!r} is not one of them")
            return item[found], item[self.label_key]
        label = next((k for k in LABEL_KEYS if k in item), None)
        return item[found], (None if label is None else item[label])

    def _check_images(self, x, where: str, batched: bool) -> torch.Tensor:
        shape = "(B, C, H, W)" if batched else "(C, H, W)"
        rank = 4 if batched else 3
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim == rank):
            got = (f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
                   else type(x).__name__)
            hint = ("add torchvision.transforms.ToTensor() to the data set's transform"
                    if hasattr(x, "getpixel") else
                    "Convert images with torchvision's ToTensor() or x.float() / 255")
            raise ValueError(f"{where}: images must be a float tensor of shape {shape}, got "
                             f"{got}. {hint}.")
        dtype = self.expect
        if dtype is not None and x.dtype != dtype:
            raise ValueError(f"{where}: images are {x.dtype} but the model's parameters are "
                             f"{dtype}: convert the images with x.to({dtype}) (or the model with "
                             f"model.to({x.dtype}))")
        return x


def _check_labels(y, n: int, where: str):
    if y is None:
        return None
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integer class indices, got {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels (one per image), got shape "
                         f"{tuple(y.shape)}")
    return y.long()


class _Tensors(Dataset):
    """Images (and labels) held as tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i] if self.labels is None else (self.images[i], self.labels[i])


def _loader_and_dataset(source, batch_size: int, num_workers: int):
    """(the loader to iterate, the data set for images by id or None)."""
    if isinstance(source, torch.Tensor):
        source = _Tensors(source, None)
    elif (isinstance(source, tuple) and 1 <= len(source) <= 2
          and all(isinstance(t, torch.Tensor) for t in source)):
        images, labels = source[0], (source[1] if len(source) == 2 else None)
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"(images, labels) hold {len(images)} images but {len(labels)} "
                             "labels: give one label per image")
        source = _Tensors(images, labels)
    if isinstance(source, DataLoader):
        dataset = source.dataset
        ordered = (not isinstance(dataset, IterableDataset)
                   and isinstance(source.sampler, SequentialSampler))
        return source, (dataset if ordered else None)
    if isinstance(source, IterableDataset):
        return own_loader(source, batch_size, num_workers), None
    if isinstance(source, _Tensors):
        return _TensorBatches(source, batch_size), source
    if isinstance(source, Dataset) or (hasattr(source, "__getitem__")
                                       and hasattr(source, "__len__")
                                       and not isinstance(source, (list, tuple, str, bytes,
                                                                   Mapping))):
        return own_loader(source, batch_size, num_workers), source
    if hasattr(source, "__iter__") and not isinstance(source, (str, bytes, Mapping)):
        return source, None  # an iterable of batches (a list, a generator), read as a loader
    raise TypeError(f"cannot read images from a {type(source).__name__}: give a tensor "
                    "(N, C, H, W), a tuple (images, labels), a data set, a DataLoader or an "
                    "iterable of batches")


def own_loader(dataset, batch_size, num_workers: int = 0) -> DataLoader:
    """The library's own loader over a data set, in order. It draws its workers' seeds from a
    generator of its own, so reading the data leaves the global RNG as it was."""
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                      generator=torch.Generator().manual_seed(0))


def _length(loader) -> int | None:
    return len(loader) if hasattr(loader, "__len__") else None


class _TensorBatches:
    """Batches of held tensors by slicing (no collation), of all images or of ``ids``."""

    def __init__(self, data: _Tensors, batch_size: int, ids: torch.Tensor | None = None):
        self.data, self.batch_size, self.ids = data, batch_size, ids

    def __len__(self) -> int:
        n = len(self.data) if self.ids is None else len(self.ids)
        return -(-n // self.batch_size)

    def __iter__(self):
        images, labels, b = self.data.images, self.data.labels, self.batch_size
        if self.ids is None:
            for s in range(0, len(images), b):
                yield images[s:s + b] if labels is None else (images[s:s + b], labels[s:s + b])
            return
        for s in range(0, len(self.ids), b):
            part = self.ids[s:s + b]
            yield images[part] if labels is None else (images[part], labels[part])


def image_data(source, **options) -> ImageData:
    """``source`` as an ``ImageData`` (one that already is one is returned as it is)."""
    return source if isinstance(source, ImageData) else ImageData(source, **options)


def find_normalization(source) -> tuple[tuple, tuple] | None:
    """``(mean, std)`` of a torchvision ``Normalize`` in the data set's transform (looking
    through loaders, ``Subset`` and ``Compose``), or None."""
    seen = 0
    while seen < 8:  # loaders and subsets nest a few levels at most
        seen += 1
        if isinstance(source, ImageData):
            source = source.dataset
        elif isinstance(source, DataLoader):
            source = source.dataset
        elif isinstance(source, torch.utils.data.Subset):
            source = source.dataset
        else:
            break
    transform = getattr(source, "transform", None)
    steps = list(getattr(transform, "transforms", [transform] if transform else []))
    for step in steps:
        if type(step).__name__ == "Normalize" and hasattr(step, "mean"):
            return tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
    return None


def warn_if_normalized(x: torch.Tensor, where: str) -> None:
    """Warn once that float images outside [0, 1] will be clipped for display."""
    if x.is_floating_point() and (x.min() < -0.01 or x.max() > 1.01):
        warnings.warn(f"{where}: image values lie in [{float(x.min()):.2f}, {float(x.max()):.2f}],"
                      " outside [0, 1], and no normalisation was given or found in the data "
                      "set's transform: pass mean=... and std=... to show the pixels as they were",
                      stacklevel=3)

