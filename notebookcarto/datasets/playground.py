"""Concept playground: a procedural image data set with pixel-exact concepts.

Each image shows 2-3 flat objects (shape, colour, texture) on a background.
Classes are defined by templates over these concepts, so the ground truth of
every concept is known at pixel level: a boolean mask per concept per image.
Image ``i`` depends only on ``(seed, i, size)`` and is built on demand.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["CONCEPTS", "PALETTE", "Background", "ClassTemplate", "Concept", "ConceptPlayground",
           "ObjectSpec", "Scene", "SceneObject", "shape_mask"]

MIN_SIZE, MAX_SIZE = 32, 128
# Object visibility (and so the scene layout) is checked on this grid, which
# keeps the scene description identical for every image size.
CHECK_SIZE = 32
MIN_VISIBLE = 0.5  # each object keeps at least half of its pixels visible
DARK = 0.3  # dark phase of a texture: colour * DARK

# Saturated, well separated object colours (uint8 RGB).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (222, 31, 31),
    "green": (33, 179, 51),
    "blue": (31, 77, 230),
    "yellow": (245, 215, 0),
    "purple": (148, 46, 199),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
TEXTURES = ("plain", "stripes_h", "stripes_v", "dots", "checker")


@dataclass(frozen=True)
class Background:
    """A background: vertical gradient from ``top`` to ``bottom`` (RGB in [0, 1])
    plus uniform per-pixel, per-channel noise in ``[-noise, noise]``."""

    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    noise: float


BACKGROUNDS: dict[str, Background] = {
    "gray": Background((0.50, 0.50, 0.50), (0.50, 0.50, 0.50), 0.04),
    "sky": Background((0.45, 0.68, 0.95), (0.78, 0.88, 1.00), 0.03),
    "grass": Background((0.30, 0.52, 0.16), (0.26, 0.46, 0.14), 0.07),
    "sand": Background((0.86, 0.77, 0.56), (0.80, 0.70, 0.50), 0.04),
}


@dataclass(frozen=True)
class Concept:
    """A named concept and its category (colour, shape, texture or background)."""

    name: str
    category: str


CONCEPTS: list[Concept] = (
    [Concept(c, "colour") for c in PALETTE]
    + [Concept(s, "shape") for s in SHAPES]
    + [Concept(t, "texture") for t in TEXTURES]
    + [Concept(b, "background") for b in BACKGROUNDS]
)
CONCEPT_INDEX = {c.name: k for k, c in enumerate(CONCEPTS)}


@dataclass(frozen=True)
class SceneObject:
    """One object; centre ``(x, y)`` and ``radius`` in units of the image side."""

    shape: str
    colour: str
    texture: str
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class Scene:
    """A full scene: class label, background and objects in painting order."""

    label: int
    background: str
    objects: tuple[SceneObject, ...]


@dataclass(frozen=True)
class ObjectSpec:
    """A template slot: allowed values per attribute (``None`` = any)."""

    shape: tuple[str, ...] | None = None
    colour: tuple[str, ...] | None = None
    texture: tuple[str, ...] | None = None

    def matches(self, obj: SceneObject) -> bool:
        """True if every specified attribute of ``obj`` is allowed."""
        return all(
            allowed is None or getattr(obj, attr) in allowed
            for attr, allowed in (("shape", self.shape), ("colour", self.colour), ("texture", self.texture))
        )


@dataclass(frozen=True)
class ClassTemplate:
    """A class: required objects and optionally a required background."""

    name: str
    objects: tuple[ObjectSpec, ...]
    background: str | None = None

    def satisfied_by(self, scene: Scene) -> bool:
        """True if the scene has the background and distinct objects for every slot."""
        if self.background is not None and scene.background != self.background:
            return False
        for chosen in itertools.permutations(scene.objects, len(self.objects)):
            if all(spec.matches(obj) for spec, obj in zip(self.objects, chosen)):
                return True
        return False


def _allowed(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _spec(shape=None, colour=None, texture=None) -> ObjectSpec:
    return ObjectSpec(_allowed(shape), _allowed(colour), _allowed(texture))


STRIPES = ("stripes_h", "stripes_v")
CLASS_TEMPLATES: list[ClassTemplate] = [
    ClassTemplate("striped circle + red square", (_spec("circle", texture=STRIPES), _spec("square", "red"))),
    ClassTemplate("yellow stars on sky", (_spec("star", "yellow"), _spec("star", "yellow")), "sky"),
    ClassTemplate("dotted star + blue triangle", (_spec("star", texture="dots"), _spec("triangle", "blue"))),
    ClassTemplate("checkered square on grass", (_spec("square", texture="checker"),), "grass"),
    ClassTemplate("red circle + purple cross", (_spec("circle", "red"), _spec("cross", "purple"))),
    ClassTemplate("white circle + green triangle", (_spec("circle", "white"), _spec("triangle", "green"))),
    ClassTemplate("blue circles on sand", (_spec("circle", "blue"), _spec("circle", "blue")), "sand"),
    ClassTemplate("plain cross + striped triangle", (_spec("cross", texture="plain"), _spec("triangle", texture=STRIPES))),
]


# ---------------------------------------------------------------- rendering


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the image side, shape (size, size)."""
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, c, indexing="xy")


@lru_cache(maxsize=8)
def _texture_dark(size: int) -> np.ndarray:
    """Bool (n_textures, size, size): where each texture shows the dark colour."""
    half = max(2, size // 16)  # stripe/cell width in pixels (2 px at 32 px)
    j = np.arange(size)
    xs, ys = np.meshgrid(j, j, indexing="xy")
    bx, by = (xs // half) % 2 == 1, (ys // half) % 2 == 1
    period = 2 * half
    dx, dy = xs % period + 0.5 - half, ys % period + 0.5 - half
    dots = dx * dx + dy * dy <= (0.3 * period) ** 2
    out = np.stack([np.zeros_like(bx), by, bx, dots, bx ^ by])
    out.flags.writeable = False
    return out


_STAR_STEP = 2 * np.pi / 5
_STAR_INNER = 0.5  # inner radius / outer radius


def shape_mask(obj: SceneObject, size: int) -> np.ndarray:
    """Exact boolean mask (size, size) of the object's full shape (no occlusion)."""
    xx, yy = _grid(size)
    dx, dy, r = xx - obj.x, yy - obj.y, obj.radius
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":
        h = 0.85 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if obj.shape == "triangle":  # upward equilateral triangle, slightly enlarged
        r = 1.1 * r
        return (dy <= 0.5 * r) & (dy + r >= np.sqrt(3.0) * np.abs(dx))
    if obj.shape == "cross":
        w = 0.35 * r
        ax, ay = np.abs(dx), np.abs(dy)
        return ((ax <= w) & (ay <= r)) | ((ay <= w) & (ax <= r))
    if obj.shape == "star":  # five points, one pointing up
        d = np.sqrt(dx * dx + dy * dy)
        phi = np.abs(np.mod(np.arctan2(dy, dx) + np.pi / 2, _STAR_STEP) - _STAR_STEP / 2)
        phi = _STAR_STEP / 2 - phi  # angle from the nearest outer point
        u, v = d * np.cos(phi), d * np.sin(phi)
        ri = _STAR_INNER * r
        ci, si = ri * np.cos(_STAR_STEP / 2), ri * np.sin(_STAR_STEP / 2)
        # inside = same side of the edge (outer point -> inner vertex) as the centre
        return (u - r) * si - v * (ci - r) <= 0
    raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")


def _owner_map(objects: tuple[SceneObject, ...], size: int) -> np.ndarray:
    """int8 (size, size): index of the visible object at each pixel, -1 = background."""
    owner = np.full((size, size), -1, dtype=np.int8)
    for k, obj in enumerate(objects):
        owner[shape_mask(obj, size)] = k
    return owner


def _visible_enough(objects: tuple[SceneObject, ...]) -> tuple[bool, np.ndarray]:
    owner = np.full((CHECK_SIZE, CHECK_SIZE), -1, dtype=np.int8)
    areas = []
    for k, obj in enumerate(objects):
        m = shape_mask(obj, CHECK_SIZE)
        areas.append(m.sum())
        owner[m] = k
    counts = np.bincount(owner.ravel() + 1, minlength=len(objects) + 1)[1:]
    return bool(np.all(counts >= MIN_VISIBLE * np.maximum(areas, 1))), owner


def _background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    bg = BACKGROUNDS[name]
    t = ((np.arange(size) + 0.5) / size)[:, None, None]
    base = (1 - t) * np.asarray(bg.top) + t * np.asarray(bg.bottom)  # (size, 1, 3)
    noise = rng.uniform(-bg.noise, bg.noise, size=(size, size, 3))
    return np.clip(base + noise, 0.0, 1.0)


_COLOURS = tuple(PALETTE)
_PALETTE_F = np.asarray([PALETTE[c] for c in _COLOURS], dtype=np.float64)
# Every object pixel takes one of these exact uint8 values: colour or dark colour.
PALETTE_DARK: dict[str, tuple[int, int, int]] = {
    c: tuple(int(v) for v in np.round(np.asarray(PALETTE[c]) * DARK)) for c in _COLOURS
}


class ConceptPlayground(torch.utils.data.Dataset):
    """Procedural images whose concepts are known at pixel level.

    Args:
        n: number of images.
        size: image side in pixels, 32..128.
        seed: data set seed; image ``i`` depends only on ``(seed, i, size)``.

    Items are ``(image, label)`` with a float32 (3, H, W) image in [0, 1].
    """

    templates = CLASS_TEMPLATES

    def __init__(self, n: int = 5000, size: int = 32, seed: int = 0):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"size must be an integer in {MIN_SIZE}..{MAX_SIZE} pixels, got {size!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.n, self.size, self.seed = int(n), int(size), int(seed)
        self.classes: list[str] = [t.name for t in CLASS_TEMPLATES]
        self.concepts: list[Concept] = list(CONCEPTS)
        self.concept_names: list[str] = [c.name for c in CONCEPTS]
        self.categories: list[str] = list(dict.fromkeys(c.category for c in CONCEPTS))

    def __repr__(self) -> str:
        return f"ConceptPlayground(n={self.n}, size={self.size}, seed={self.seed})"

    def __len__(self) -> int:
        return self.n

    def _index(self, i) -> int:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"index must be an integer, got {type(i).__name__}") from None
        j = i + self.n if i < 0 else i
        if not 0 <= j < self.n:
            raise IndexError(f"index {i} out of range for a playground of {self.n} images")
        return j

    # -- sampling

    def _sample(self, i: int) -> tuple[Scene, np.ndarray, np.random.Generator]:
        """Scene of image i, its owner map on the check grid and the rng to continue with."""
        rng = np.random.default_rng([self.seed, i])
        label = int(rng.integers(len(CLASS_TEMPLATES)))
        template = CLASS_TEMPLATES[label]
        for _ in range(1000):
            scene = _sample_scene(rng, label, template)
            if any(t.satisfied_by(scene) for k, t in enumerate(CLASS_TEMPLATES) if k != label):
                continue
            ok, owner = _visible_enough(scene.objects)
            if ok:
                return scene, owner, rng
        raise RuntimeError(f"could not sample a valid scene for image {i}; this is a bug")

    def scene(self, i: int) -> Scene:
        """The scene description of image ``i`` (the same for every image size)."""
        return self._sample(self._index(i))[0]

    def _render(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        """(scene, uint8 image (H, W, 3), owner map (H, W)) of image i."""
        scene, owner, rng = self._sample(self._index(i))
        if self.size != CHECK_SIZE:
            owner = _owner_map(scene.objects, self.size)
        img = _background(scene.background, self.size, rng)
        dark = _texture_dark(self.size)
        for k, obj in enumerate(scene.objects):
            m = owner == k
            colour = _PALETTE_F[_COLOURS.index(obj.colour)] / 255.0
            img[m] = colour
            dm = m & dark[TEXTURES.index(obj.texture)]
            img[dm] = np.round(colour * 255.0 * DARK) / 255.0
        return scene, np.round(img * 255.0).astype(np.uint8), owner

    # -- public accessors

    def image_uint8(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (H, W, 3)."""
        return self._render(i)[1]

    def __getitem__(self, i) -> tuple[torch.Tensor, int]:
        scene, img, _ = self._render(i)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
        return x, scene.label

    def masks(self, i: int) -> np.ndarray:
        """Bool (n_concepts, H, W): visible pixels of every concept in image ``i``."""
        scene, _, owner = self._render(i)
        return _concept_masks(scene, owner)

    def image_concepts(self, i: int) -> np.ndarray:
        """Bool (n_concepts,): which concepts have at least one visible pixel."""
        scene, _, owner = self._render(i)
        return _present(scene, owner)

    def label(self, i: int) -> int:
        """Class label of image ``i`` (cheaper than rendering the image)."""
        return self.scene(i).label

    def tensors(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 (n, 3, H, W) in [0, 1] and labels as int64 (n,)."""
        imgs = np.empty((self.n, self.size, self.size, 3), dtype=np.uint8)
        labels = np.empty(self.n, dtype=np.int64)
        for i in tqdm(range(self.n), desc="rendering playground", disable=not progress):
            scene, imgs[i], _ = self._render(i)
            labels[i] = scene.label
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return x, torch.from_numpy(labels)

    def concept_table(self, progress: bool = False) -> np.ndarray:
        """Bool (n, n_concepts): image-level concept labels of all images."""
        out = np.zeros((self.n, len(CONCEPTS)), dtype=bool)
        for i in tqdm(range(self.n), desc="concept labels", disable=not progress):
            scene, _, owner = self._render(i)
            out[i] = _present(scene, owner)
        return out


def _sample_object(rng: np.random.Generator, spec: ObjectSpec) -> tuple[str, str, str, float]:
    shape = _choice(rng, spec.shape or SHAPES)
    colour = _choice(rng, spec.colour or _COLOURS)
    texture = _choice(rng, spec.texture or TEXTURES)
    radius = float(rng.uniform(0.14, 0.22))
    return shape, colour, texture, radius


def _choice(rng: np.random.Generator, values: tuple[str, ...]) -> str:
    return values[int(rng.integers(len(values)))]


def _sample_scene(rng: np.random.Generator, label: int, template: ClassTemplate) -> Scene:
    specs = list(template.objects)
    n_extra = int(rng.integers(max(0, 2 - len(specs)), 3 - len(specs) + 1))  # 2..3 objects
    specs += [ObjectSpec()] * n_extra
    drawn = [_sample_object(rng, s) for s in specs]
    order = rng.permutation(len(drawn))
    objects = []
    for k in order:
        shape, colour, texture, r = drawn[k]
        # Keep centres apart when possible; visibility is checked afterwards.
        for _ in range(10):
            x, y = rng.uniform(r, 1 - r, size=2)
            if all((x - o.x) ** 2 + (y - o.y) ** 2 >= (0.8 * (r + o.radius)) ** 2 for o in objects):
                break
        objects.append(SceneObject(shape, colour, texture, float(x), float(y), r))
    background = template.background or _choice(rng, tuple(BACKGROUNDS))
    return Scene(label, background, tuple(objects))


def _object_concepts(obj: SceneObject) -> tuple[int, int, int]:
    return CONCEPT_INDEX[obj.shape], CONCEPT_INDEX[obj.colour], CONCEPT_INDEX[obj.texture]


def _concept_masks(scene: Scene, owner: np.ndarray) -> np.ndarray:
    out = np.zeros((len(CONCEPTS),) + owner.shape, dtype=bool)
    for k, obj in enumerate(scene.objects):
        vis = owner == k
        for c in _object_concepts(obj):
            out[c] |= vis
    out[CONCEPT_INDEX[scene.background]] = owner < 0
    return out


def _present(scene: Scene, owner: np.ndarray) -> np.ndarray:
    out = np.zeros(len(CONCEPTS), dtype=bool)
    counts = np.bincount(owner.ravel().astype(np.int64) + 1, minlength=len(scene.objects) + 1)
    for k, obj in enumerate(scene.objects):
        if counts[k + 1] > 0:
            out[list(_object_concepts(obj))] = True
    out[CONCEPT_INDEX[scene.background]] = counts[0] > 0
    return out
