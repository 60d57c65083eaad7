"""Concept data: images annotated with concepts, for Network Dissection.

The interface (``ConceptData``) is small. A concept data set has

- ``concepts``: a list of ``Concept(name, category)``, names unique (e.g. "red" in "colour");
- ``len(data)`` images;
- ``sample(i)`` -> ``ConceptSample``:
  ``image``: float tensor (C, H, W), exactly what the model takes;
  ``masks``: bool (M, h, w), one pixel mask per annotated concept, at any resolution (h, w)
  (the *mask resolution*, e.g. half the image size in Broden);
  ``mask_concepts``: (M,) the concept index of each mask;
  ``labels``: concept indices of image-level labels (scene, texture, ...): each covers the
  whole image;
  ``mask_shape``: (h, w) where masks and labels are counted; defaults to the masks' shape, or
  the image's (H, W) when there are no masks;
- optionally ``image_uint8(i)`` -> uint8 (H, W, 3), the picture for galleries (the default
  maps ``sample(i).image`` from [0, 1]).

A concept appears at most once per image (as a mask or as a label). An image *carries* a
concept when its mask has a pixel or it is one of its labels.

Implementations here: ``PlaygroundConcepts`` (the concept playground, every concept as a
pixel mask), ``BrodenFolder`` (a folder in the Broden layout: index.csv, label.csv, images and
mask PNGs) and ``ConceptTensors`` (everything in memory, e.g. for tests or to render a data set
once with ``ConceptTensors.from_data``). To adapt another data set, subclass ``ConceptData``
and implement ``__len__`` and ``sample``.
"""

from __future__ import annotations

import csv
import difflib
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .playground import Concept, ConceptPlayground

__all__ = ["BrodenFolder", "ConceptBatch", "ConceptData", "ConceptSample", "ConceptTensors",
           "PlaygroundConcepts", "check_concepts", "check_sample", "decode_broden_mask"]


@dataclass
class ConceptSample:
    """One annotated image (see the module docstring)."""

    image: torch.Tensor
    masks: np.ndarray | torch.Tensor | None = None
    mask_concepts: list[int] | np.ndarray | torch.Tensor = field(default_factory=list)
    labels: list[int] | np.ndarray | torch.Tensor = field(default_factory=list)
    mask_shape: tuple[int, int] | None = None


@dataclass
class ConceptBatch:
    """Samples collated for one pass (one mask shape per batch; padding entries are -1)."""

    index: torch.Tensor  # (B,) int64 image ids
    images: torch.Tensor  # (B, C, H, W) float
    masks: torch.Tensor  # (B, M, h, w) bool, M = most masks in an image of the batch
    mask_concepts: torch.Tensor  # (B, M) int64, -1 for padding
    labels: torch.Tensor  # (B, L) int64, -1 for padding
    mask_shape: tuple[int, int]


class ConceptData:
    """Base class of concept data sets: subclasses set ``concepts`` and implement ``__len__``
    and ``sample(i)``; see the module docstring for the contract."""

    concepts: list[Concept] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, i: int) -> ConceptSample:
        raise NotImplementedError

    # -- provided ------------------------------------------------------------------------
    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def categories(self) -> list[str]:
        """Category names in order of first appearance."""
        return list(dict.fromkeys(c.category for c in self.concepts))

    def concept_index(self, names) -> list[int]:
        """Indices of concepts given by name, with a clear error for unknown names."""
        lookup = {c.name: k for k, c in enumerate(self.concepts)}
        out, unknown = [], []
        for name in [names] if isinstance(names, str) else list(names):
            if name in lookup:
                out.append(lookup[name])
            else:
                unknown.append(name)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(str(name), list(lookup), n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                hints.append(f"{name!r}{hint}")
            raise KeyError(f"unknown concept(s) {', '.join(hints)}: this data set has "
                           f"{len(lookup)} concepts; see data.concept_names")
        return out

    def image_uint8(self, i: int) -> np.ndarray:
        """The image as uint8 (H, W, 3), taking ``sample(i).image`` as RGB in [0, 1]."""
        x = self.sample(i).image.detach().float().cpu()
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return (x[:3].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    def load_batch(self, indices) -> list[ConceptBatch]:
        """Samples ``indices`` checked and collated, one ConceptBatch per mask shape."""
        samples = [check_sample(self.sample(int(i)), len(self.concepts), int(i)) for i in indices]
        groups: dict[tuple, list] = {}
        for i, s in zip(indices, samples):
            groups.setdefault(s.mask_shape, []).append((int(i), s))
        return [_collate(group, shape) for shape, group in groups.items()]

    def check(self):
        """Check that the concepts are well formed: names unique, categories non-empty."""
        check_concepts(self.concepts)
        return self


def check_concepts(concepts) -> list[Concept]:
    """The concepts as a list, raising if names repeat or an entry is not a Concept."""
    concepts = list(concepts)
    for c in concepts:
        if not isinstance(c, Concept) or not c.name or not c.category:
            raise TypeError(f"concepts must be Concept(name, category) with non-empty strings, "
                            f"got {c!r}")
    names = [c.name for c in concepts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"concept names must be unique, {repeated} repeat: prefix them with "
                         "their category (e.g. 'colour/red')")
    if not concepts:
        raise ValueError("the data set has no concepts: it needs at least one Concept")
    return concepts


def _int_list(values, what: str, i: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values if values is not None else [], dtype=np.int64))
    if t.ndim != 1:
        raise ValueError(f"item {i}: {what} must be a 1-D list of concept indices, got shape "
                         f"{tuple(t.shape)}")
    return t


def check_sample(sample: ConceptSample, n_concepts: int, i: int = 0) -> ConceptSample:
    """Check one sample against the contract and return it normalised (torch tensors: bool
    masks (M, h, w), int64 index lists, a (h, w) tuple ``mask_shape``)."""
    if not isinstance(sample, ConceptSample):
        raise TypeError(f"item {i}: sample() must return a ConceptSample, got "
                        f"{type(sample).__name__}")
    image = sample.image
    if not (isinstance(image, torch.Tensor) and image.is_floating_point() and image.ndim == 3):
        got = (f"{image.dtype} tensor of shape {tuple(image.shape)}"
               if isinstance(image, torch.Tensor) else type(image).__name__)
        raise ValueError(f"item {i}: the image must be a float tensor (C, H, W), got {got}")
    concepts = _int_list(sample.mask_concepts, "mask_concepts", i)
    labels = _int_list(sample.labels, "labels", i)
    masks = sample.masks
    if masks is None:
        if len(concepts):
            raise ValueError(f"item {i}: {len(concepts)} mask concepts but no masks")
        shape = tuple(sample.mask_shape if sample.mask_shape is not None else image.shape[1:])
        masks = torch.zeros((0, *shape), dtype=torch.bool)
    else:
        masks = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
        if masks.ndim != 3:
            raise ValueError(f"item {i}: masks must be (M, h, w), one 2-D mask per concept, got "
                             f"shape {tuple(masks.shape)}")
        if masks.dtype != torch.bool:
            if masks.is_floating_point() or not bool(((masks == 0) | (masks == 1)).all()):
                raise ValueError(f"item {i}: masks must be boolean (or 0/1 integers), got "
                                 f"{masks.dtype}")
            masks = masks.bool()
        if masks.shape[0] != len(concepts):
            raise ValueError(f"item {i}: {masks.shape[0]} masks but {len(concepts)} mask "
                             "concepts: give one concept index per mask")
        shape = tuple(masks.shape[1:])
        if sample.mask_shape is not None and tuple(sample.mask_shape) != shape:
            raise ValueError(f"item {i}: masks of shape {shape} do not match mask_shape "
                             f"{tuple(sample.mask_shape)}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"item {i}: mask_shape must be (h, w) with positive sides, got {shape}")
    every = torch.cat([concepts, labels])
    if len(every) and (int(every.min()) < 0 or int(every.max()) >= n_concepts):
        bad = int(every.min()) if int(every.min()) < 0 else int(every.max())
        raise ValueError(f"item {i}: concept index {bad} is out of range for {n_concepts} "
                         "concepts")
    if len(torch.unique(every)) != len(every):
        raise ValueError(f"item {i}: a concept appears more than once (as two masks, two labels "
                         "or a mask and a label); merge its masks into one")
    return ConceptSample(image=image, masks=masks, mask_concepts=concepts, labels=labels,
                         mask_shape=(int(shape[0]), int(shape[1])))


def _pad(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def _collate(group: list[tuple[int, ConceptSample]], shape) -> ConceptBatch:
    images = [s.image for _, s in group]
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        raise ValueError(f"images in one batch have different sizes {sorted(sizes)}: resize "
                         "them to one size in the data set (e.g. with a transform)")
    m = max(s.masks.shape[0] for _, s in group)
    masks = torch.zeros((len(group), m, *shape), dtype=torch.bool)
    for b, (_, s) in enumerate(group):
        masks[b, : s.masks.shape[0]] = s.masks
    return ConceptBatch(index=torch.tensor([i for i, _ in group], dtype=torch.long),
                        images=torch.stack(images), masks=masks,
                        mask_concepts=_pad([s.mask_concepts for _, s in group]),
                        labels=_pad([s.labels for _, s in group]), mask_shape=tuple(shape))


# ---------------------------------------------------------------------------------------------
class PlaygroundConcepts(ConceptData):
    """The concept playground as concept data: every concept of an image as a pixel mask.

    Args:
        playground: a ``ConceptPlayground``.
        mask_size: mask resolution (an int or (h, w)); default the image size. Other sizes are
            resampled from the exact masks with nearest-exact sampling (e.g. half resolution,
            as in Broden).
    """

    def __init__(self, playground: ConceptPlayground, mask_size=None):
        if not isinstance(playground, ConceptPlayground):
            raise TypeError(f"expected a ConceptPlayground, got {type(playground).__name__}")
        self.playground = playground
        self.concepts = list(playground.concepts)
        size = playground.size if mask_size is None else mask_size
        size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"mask_size must be a positive int or (h, w), got {mask_size!r}")
        self.mask_size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.playground)

    def __repr__(self) -> str:
        return f"PlaygroundConcepts({self.playground!r}, mask_size={self.mask_size})"

    def sample(self, i: int) -> ConceptSample:
        image, _ = self.playground[i]
        masks = self.playground.masks(i)
        present = np.flatnonzero(masks.any((1, 2)))
        m = torch.from_numpy(masks[present])
        if m.shape[1:] != self.mask_size:
            m = F.interpolate(m[None].float(), size=self.mask_size, mode="nearest-exact")[0] > 0.5
        return ConceptSample(image=image, masks=m, mask_concepts=present, mask_shape=self.mask_size)

    def image_uint8(self, i: int) -> np.ndarray:
        return self.playground.image_uint8(i)


# ---------------------------------------------------------------------------------------------
class ConceptTensors(ConceptData):
    """Concept data held in memory.

    Args:
        images: float (N, C, H, W).
        masks: bool (N, K, h, w) pixel masks of all K concepts (all-False: not in the image),
            or None.
        concepts: K ``Concept``s.
        labels: bool (N, K) image-level labels, or None. A concept of an image may be a mask or
            a label, not both.
        uint8_images: optional uint8 (N, H, W, 3) pictures for galleries.
    """

    def __init__(self, images: torch.Tensor, masks, concepts, labels=None, uint8_images=None):
        self.concepts = check_concepts(concepts)
        k = len(self.concepts)
        if not (isinstance(images, torch.Tensor) and images.is_floating_point()
                and images.ndim == 4):
            raise ValueError("images must be a float tensor (N, C, H, W)")
        n = images.shape[0]
        if masks is not None:
            masks = torch.as_tensor(masks)
            if masks.ndim != 4 or masks.shape[:2] != (n, k):
                raise ValueError(f"masks must be (N={n}, K={k}, h, w), one mask per image and "
                                 f"concept, got shape {tuple(masks.shape)}")
            masks = masks.bool()
        if labels is not None:
            labels = torch.as_tensor(labels).bool()
            if labels.shape != (n, k):
                raise ValueError(f"labels must be (N={n}, K={k}) booleans, got shape "
                                 f"{tuple(labels.shape)}")
            if masks is not None and bool((labels & masks.flatten(2).any(2)).any()):
                raise ValueError("a concept is both a mask and a label of one image: keep one")
        if uint8_images is not None:
            uint8_images = np.asarray(uint8_images, dtype=np.uint8)
            if uint8_images.shape[:1] != (n,) or uint8_images.ndim != 4:
                raise ValueError(f"uint8_images must be (N={n}, H, W, 3)")
        self.images, self.masks, self.labels = images, masks, labels
        self.uint8_images = uint8_images
        self.mask_shape = (tuple(masks.shape[2:]) if masks is not None
                           else tuple(images.shape[2:]))

    @classmethod
    def from_data(cls, data: ConceptData, progress: bool = False) -> "ConceptTensors":
        """Render every sample of ``data`` into memory (one image size and mask shape)."""
        n, k = len(data), len(data.concepts)
        if n == 0:
            raise ValueError("the data set is empty")
        images, masks, labels, pictures = [], None, torch.zeros(n, k, dtype=torch.bool), []
        for i in tqdm(range(n), desc="rendering concept data", disable=not progress):
            s = check_sample(data.sample(i), k, i)
            if masks is None:
                masks = torch.zeros((n, k, *s.mask_shape), dtype=torch.bool)
            elif tuple(masks.shape[2:]) != s.mask_shape:
                raise ValueError(f"item {i}: mask shape {s.mask_shape} differs from "
                                 f"{tuple(masks.shape[2:])}; ConceptTensors needs one shape")
            masks[i, s.mask_concepts] = s.masks
            labels[i, s.labels] = True
            images.append(s.image)
            pictures.append(data.image_uint8(i))
        sizes = {tuple(x.shape) for x in images}
        if len(sizes) > 1:
            raise ValueError(f"images have different sizes {sorted(sizes)}")
        return cls(torch.stack(images), masks, data.concepts,
                   labels if bool(labels.any()) else None, np.stack(pictures))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (f"ConceptTensors({len(self)} images, {len(self.concepts)} concepts, "
                f"masks {self.mask_shape})")

    def sample(self, i: int) -> ConceptSample:
        masks = concepts = None
        if self.masks is not None:
            concepts = torch.nonzero(self.masks[i].flatten(1).any(1)).flatten()
            masks = self.masks[i, concepts]
        labels = (torch.nonzero(self.labels[i]).flatten() if self.labels is not None
                  else torch.zeros(0, dtype=torch.long))
        return ConceptSample(self.images[i], masks,
                             concepts if concepts is not None else torch.zeros(0, dtype=torch.long),
                             labels, self.mask_shape)

    def load_batch(self, indices) -> list[ConceptBatch]:
        """Vectorised: all K masks of every image, absent concepts as empty masks."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        b, k = len(index), len(self.concepts)
        if self.masks is not None:
            masks = self.masks[index]
            concepts = torch.arange(k).expand(b, k).clone()
        else:
            masks = torch.zeros((b, 0, *self.mask_shape), dtype=torch.bool)
            concepts = torch.zeros((b, 0), dtype=torch.long)
        if self.labels is not None:
            present = self.labels[index]
            labels = torch.where(present, torch.arange(k), -1)
        else:
            labels = torch.zeros((b, 0), dtype=torch.long)
        return [ConceptBatch(index, self.images[index], masks, concepts, labels, self.mask_shape)]

    def image_uint8(self, i: int) -> np.ndarray:
        if self.uint8_images is not None:
            return self.uint8_images[i]
        return super().image_uint8(i)


# ---------------------------------------------------------------------------------------------
BRODEN_FIXED = ("image", "split", "ih", "iw", "sh", "sw")


def _primary_category(text: str) -> str:
    """Broden's label.csv category field, e.g. 'object(12);part(3)' -> the largest: 'object'."""
    best, best_count = "", -1
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, count = part.partition("(")
        count = count.rstrip(")")
        n = int(count) if count.isdigit() else 0
        if n > best_count:
            best, best_count = name.strip(), n
    return best


def decode_broden_mask(rgb: np.ndarray) -> np.ndarray:
    """Label numbers of a Broden mask PNG: red + 256 * green (0 = unlabelled)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        return rgb.astype(np.int64)
    return rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1].astype(np.int64)


class BrodenFolder(ConceptData):
    """A folder in the Broden layout (Bau et al., Network Dissection), read lazily.

    Layout: ``index.csv`` with columns ``image, split, ih, iw, sh, sw`` and one column per
    category. A category cell lists ``;``-separated mask PNG files (pixel categories: label
    number = red + 256 * green, 0 = none) or ``;``-separated label numbers (image-level
    categories such as scene and texture). ``label.csv`` has ``number, name, category, ...``;
    a label's category is the one with the largest count in its ``category`` field (e.g.
    ``color(120);object(4)`` -> color). Paths in the index are relative to ``root/images``
    (or to ``root`` when there is no images folder). Masks are at (sh, sw), images at (ih, iw).

    Args:
        root: the folder.
        split: keep only rows of this split ("train", "val"); None keeps all.
        categories: keep only concepts of these categories; None keeps all.
        transform: PIL image -> float tensor (C, H, W) (e.g. resize + ToTensor + Normalize);
            default: RGB in [0, 1] at the file's size.
    """

    def __init__(self, root, split: str | None = None, categories=None, transform=None):
        self.root = os.fspath(root)
        for name in ("index.csv", "label.csv"):
            if not os.path.isfile(os.path.join(self.root, name)):
                raise FileNotFoundError(f"{self.root} is not a Broden folder: {name} is missing")
        images = os.path.join(self.root, "images")
        self.image_root = images if os.path.isdir(images) else self.root
        self.transform = transform
        with open(os.path.join(self.root, "label.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"number", "name", "category"} <= set(rows[0]):
            raise ValueError("label.csv needs columns number, name and category")
        concepts, numbers = [], []
        for row in rows:
            number = int(row["number"])
            category = _primary_category(row["category"])
            if number <= 0 or not category:
                continue  # 0 is "unlabelled"
            if categories is not None and category not in categories:
                continue
            concepts.append(Concept(row["name"], category))
            numbers.append(number)
        self.concepts = check_concepts(concepts)
        self.numbers = numbers
        self._index_of = {n: k for k, n in enumerate(numbers)}
        self._known = {int(r["number"]) for r in rows}
        with open(os.path.join(self.root, "index.csv"), newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in BRODEN_FIXED if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"index.csv lacks column(s) {missing}")
            self.category_columns = [c for c in reader.fieldnames if c not in BRODEN_FIXED]
            self.rows = [r for r in reader if split is None or r["split"] == split]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"BrodenFolder({self.root!r}, {len(self)} images, {len(self.concepts)} "
                f"concepts)")

    def _open(self, path: str):
        from PIL import Image

        full = os.path.join(self.image_root, path)
        if not os.path.isfile(full):
            raise FileNotFoundError(f"{full} (listed in index.csv) does not exist")
        return Image.open(full)

    def _numbers(self, cell: str, i: int) -> set[int]:
        out = {int(p) for p in cell.split(";") if p.strip()}
        unknown = sorted(out - self._known)
        if unknown:
            raise KeyError(f"item {i}: unknown label number(s) {unknown} in index.csv: they "
                           "are not in label.csv")
        return out

    def sample(self, i: int) -> ConceptSample:
        row = self.rows[i]
        shape = (int(row["sh"]), int(row["sw"]))
        pil = self._open(row["image"]).convert("RGB")
        if self.transform is not None:
            image = self.transform(pil)
        else:
            image = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)
            image = image.float().div_(255.0)
        masks: dict[int, np.ndarray] = {}
        labels: set[int] = set()
        for column in self.category_columns:
            cell = (row.get(column) or "").strip()
            if not cell:
                continue
            parts = [p.strip() for p in cell.split(";") if p.strip()]
            if all(p.isdigit() for p in parts):
                labels |= self._numbers(cell, i)
                continue
            for path in parts:
                numbers = decode_broden_mask(np.asarray(self._open(path).convert("RGB")))
                if numbers.shape != shape:
                    raise ValueError(f"item {i}: mask {path} is {numbers.shape[0]}x"
                                     f"{numbers.shape[1]} but index.csv gives the mask size "
                                     f"sh x sw = {shape[0]}x{shape[1]}")
                found = set(np.unique(numbers).tolist()) - {0}
                unknown = sorted(found - self._known)
                if unknown:
                    raise KeyError(f"item {i}: mask {path} holds unknown label number(s) "
                                   f"{unknown}: they are not in label.csv")
                for number in found:
                    m = numbers == number
                    masks[number] = masks[number] | m if number in masks else m
        keep = [n for n in masks if n in self._index_of and n not in labels]
        label_ids = sorted(self._index_of[n] for n in labels if n in self._index_of)
        if keep:
            stacked = np.stack([masks[n] for n in keep])
        else:
            stacked = np.zeros((0, *shape), dtype=bool)
        return ConceptSample(image=image, masks=stacked,
                             mask_concepts=[self._index_of[n] for n in keep], labels=label_ids,
                             mask_shape=shape)

    def image_uint8(self, i: int) -> np.ndarray:
        return np.asarray(self._open(self.rows[i]["image"]).convert("RGB"), dtype=np.uint8)
