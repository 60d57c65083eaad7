"""A planted net with known neuron groups, for testing clusters and embeddings.

Built on the concept playground, whose object colours are exact palette values and whose
backgrounds lie in known boxes, so a fixed layer (``indicators``) marks every pixel of chosen
colours and backgrounds exactly. Three blocks at strides 1, 2 and 4 read these indicators:

* copies: several channels, in every block, are noisy copies of one concept detector: each
  fires exactly where the concept covers a share of its window above ``threshold``, with a
  strength set by how much of the image the concept covers, times its own small multiplicative
  noise (1 + a random convolution of the image). Copies of a concept share most top images and
  fire at the same places.
* pairs: two channels detecting two concepts that always appear together in one class (for
  example white and green in "white circle + green triangle"); each fires on its own concept,
  with a strength set by how much of the image both concepts cover. The two share their top
  images (the class's images) but fire at different places.
* fillers: random convolutions of the image with a high bias (sparse edge detectors),
  unrelated to the plan.

Clustering should group the copies of each concept and keep pair members apart (they fire at
different places); the embedding should place pair members close (they share top images).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.playground import BACKGROUNDS, PALETTE, PALETTE_DARK, ConceptPlayground

__all__ = ["PlantedCopiesNet", "planted_copies_atlas", "planted_copies_model"]

COPY_GAIN, PAIR_GAIN = 10.0, 100.0


class ConceptIndicators(nn.Module):
    """Exact per-pixel indicators (0/1) of playground colours (either texture phase) and
    backgrounds, for [0, 1] RGB images of the playground."""

    def __init__(self, concepts):
        super().__init__()
        self.concepts = list(concepts)
        lows, highs = [], []
        for name in self.concepts:
            if name in PALETTE:
                continue
            if name not in BACKGROUNDS:
                raise ValueError(f"no exact indicator for {name!r}: choose colours from "
                                 f"{sorted(PALETTE)} or backgrounds from {sorted(BACKGROUNDS)}")
            bg = BACKGROUNDS[name]
            lo = np.minimum(bg.top, bg.bottom) - bg.noise
            hi = np.maximum(bg.top, bg.bottom) + bg.noise
            lows.append(np.floor(lo * 255) - 1)
            highs.append(np.ceil(hi * 255) + 1)
        # every object pixel is a palette value; none may fall inside a background box
        values = np.array([*PALETTE.values(), *PALETTE_DARK.values()], dtype=float)
        for lo, hi in zip(lows, highs):
            if ((values >= lo) & (values <= hi)).all(1).any():
                raise ValueError("a palette colour falls inside a background box")
        codes = [[_code(PALETTE[c]), _code(PALETTE_DARK[c])] for c in self.concepts if c in PALETTE]
        self.register_buffer("colours", torch.tensor(codes, dtype=torch.int32).reshape(-1, 2))
        self.register_buffer("low", torch.tensor(np.array(lows), dtype=torch.float32)
                             .reshape(-1, 3))
        self.register_buffer("high", torch.tensor(np.array(highs), dtype=torch.float32)
                             .reshape(-1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.round(x * 255.0)
        code = (v[:, 0] * 65536 + v[:, 1] * 256 + v[:, 2]).int()[:, None, None]  # (B, 1, 1, H, W)
        colour = (code == self.colours[None, :, :, None, None]).any(2)
        box = ((v[:, None] >= self.low[None, :, :, None, None])
               & (v[:, None] <= self.high[None, :, :, None, None])).all(2)
        parts, ci, bi = [], 0, 0
        for name in self.concepts:  # back in the order asked for
            if name in PALETTE:
                parts.append(colour[:, ci])
                ci += 1
            else:
                parts.append(box[:, bi])
                bi += 1
        return torch.stack(parts, 1).float()


def _code(rgb) -> int:
    r, g, b = (int(v) for v in rgb)
    return r * 65536 + g * 256 + b


class ConceptBlock(nn.Module):
    """Channels that read the indicators at one stride (see the module docstring).

    A planted channel c (gain_c > 0) fires as
    relu(gain_c * strength_c * (local_c - threshold)) * max(1 + noise_c, 0), where local_c is the
    share of the window (``box`` x ``box`` at this stride) covered by its concept, strength_c
    the share of the image covered by its concept (copies) or the product of both shares
    (pairs), and noise_c a fixed random 3x3 convolution of the image. A filler (gain_c = 0)
    fires as relu(noise_c - bias_c).
    """

    def __init__(self, stride: int, box: int, concept: list[int], strength: list[tuple[int, int]],
                 gain: list[float], noise: list[float], bias: list[float], threshold: float,
                 seed: int):
        super().__init__()
        self.stride, self.box, self.threshold = stride, box, threshold
        self.register_buffer("concept", torch.tensor(concept))
        self.register_buffer("strength", torch.tensor(strength).reshape(-1, 2))
        self.register_buffer("gain", torch.tensor(gain)[:, None, None])
        self.register_buffer("bias", torch.tensor(bias)[:, None, None])
        self.noise = nn.Conv2d(3, len(concept), 3, padding=1, bias=False)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.noise.weight.copy_(torch.randn(self.noise.weight.shape, generator=gen)
                                    * torch.tensor(noise)[:, None, None, None])

    def forward(self, indicators: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        area = indicators.mean((2, 3))
        area = torch.cat([area, torch.ones_like(area[:, :1])], 1)  # last column: 1
        strength = area[:, self.strength[:, 0]] * area[:, self.strength[:, 1]]
        if self.stride > 1:
            indicators = F.avg_pool2d(indicators, self.stride)
            x = F.avg_pool2d(x, self.stride)
        local = F.avg_pool2d(indicators, self.box, stride=1, padding=self.box // 2,
                             count_include_pad=False)[:, self.concept]
        signal = F.relu(self.gain * strength[:, :, None, None] * (local - self.threshold))
        noise = self.noise(x - 0.5)
        planted = signal * torch.clamp(1.0 + noise, min=0.0)
        return torch.where(self.gain > 0, planted, F.relu(noise - self.bias))


class PlantedCopiesNet(nn.Module):
    """``indicators`` -> ``block1`` (stride 1), ``block2`` (stride 2), ``block3`` (stride 4),
    each reading the indicators -> global max of all blocks -> ``fc``.

    Attributes:
        layers: the block names.
        copies: concept -> ids ("block:channel") of its noisy copies.
        pairs: class name -> the two ids of its always-together detectors.
        fillers: ids of the filler channels.
    """

    layers = ["block1", "block2", "block3"]

    def __init__(self, concepts, blocks: list[dict], num_classes: int, copies: dict,
                 pairs: dict, fillers: list, seed: int = 0):
        super().__init__()
        self.indicators = ConceptIndicators(concepts)
        self.block1, self.block2, self.block3 = (ConceptBlock(**b) for b in blocks)
        width = sum(len(b["concept"]) for b in blocks)
        self.fc = nn.Linear(width, num_classes)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=gen))
            self.fc.bias.zero_()
        self.copies, self.pairs, self.fillers = copies, pairs, fillers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ind = self.indicators(x)
        maxima = [block(ind, x).amax((2, 3)) for block in (self.block1, self.block2, self.block3)]
        return self.fc(torch.cat(maxima, 1))

    def grouping(self) -> dict[str, str]:
        """Planted group of every copy and pair channel: the concept for copies, the channel's
        own id for pair members (each is its own group)."""
        out = {n: concept for concept, ids in self.copies.items() for n in ids}
        out.update({n: n for ids in self.pairs.values() for n in ids})
        return out


def _pair_class(dataset: ConceptPlayground, a: str, b: str) -> int:
    """The class whose template requires both concepts (a colour of a required object, or the
    required background)."""
    for k, t in enumerate(dataset.templates):
        required = {s.colour[0] for s in t.objects if s.colour and len(s.colour) == 1}
        if t.background:
            required.add(t.background)
        if a in required and b in required:
            return k
    raise ValueError(f"no class always shows both {a!r} and {b!r}")


def planted_copies_model(dataset: ConceptPlayground, *, copies=("red", "purple", "grass"),
                         pairs=(("white", "green"), ("blue", "sand"), ("yellow", "sky")),
                         copies_per_block=(2, 2, 1), n_filler: int = 3, noise: float = 0.03,
                         filler_noise: float = 0.5, filler_bias: float = 2.0,
                         threshold: float = 0.3,
                         boxes=(5, 3, 3), seed: int = 0) -> PlantedCopiesNet:
    """Build the planted net for ``dataset`` (deterministic by ``seed``; any image size).

    ``copies``: concepts detected by ``sum(copies_per_block)`` noisy copies spread over the
    three blocks. ``pairs``: concepts that always appear together in one class; pair k lives in
    block k % 3 + 1. ``noise``: scale of the copies' noise convolutions (larger: copies share
    fewer top images). ``threshold``: share of a window that the concept must cover.
    ``filler_noise``, ``filler_bias``: weight scale and bias of the fillers.
    """
    if not isinstance(dataset, ConceptPlayground):
        raise TypeError(f"planted_copies_model needs a ConceptPlayground, got "
                        f"{type(dataset).__name__}")
    concepts = list(dict.fromkeys([*copies, *(c for p in pairs for c in p)]))
    index = {c: k for k, c in enumerate(concepts)}
    one = len(concepts)  # the constant column of the strength table
    plan = [[] for _ in range(3)]  # per block: (kind, concept, strength pair)
    for concept in copies:
        for block, n in enumerate(copies_per_block):
            plan[block] += [("copy", concept, (index[concept], one))] * n
    pair_ids = {}
    for k, (a, b) in enumerate(pairs):
        cls = dataset.classes[_pair_class(dataset, a, b)]
        block = k % 3
        pair_ids[cls] = [(block, len(plan[block])), (block, len(plan[block]) + 1)]
        plan[block] += [("pair", a, (index[a], index[b])), ("pair", b, (index[b], index[a]))]
    for block in range(3):
        plan[block] += [("filler", concepts[0], (one, one))] * n_filler

    names = PlantedCopiesNet.layers
    blocks, copy_ids, filler_ids = [], {c: [] for c in copies}, []
    for block, (stride, box) in enumerate(zip((1, 2, 4), boxes)):
        spec = dict(stride=stride, box=box, threshold=threshold, seed=seed * 31 + block,
                    concept=[], strength=[], gain=[], noise=[], bias=[])
        for ch, (kind, concept, strength) in enumerate(plan[block]):
            spec["concept"].append(index[concept])
            spec["strength"].append(strength)
            spec["gain"].append({"copy": COPY_GAIN, "pair": PAIR_GAIN, "filler": 0.0}[kind])
            spec["noise"].append(filler_noise if kind == "filler" else noise)
            spec["bias"].append(filler_bias if kind == "filler" else 0.0)
            if kind == "copy":
                copy_ids[concept].append(f"{names[block]}:{ch}")
            elif kind == "filler":
                filler_ids.append(f"{names[block]}:{ch}")
        blocks.append(spec)
    pair_names = {cls: [f"{names[b]}:{c}" for b, c in ids] for cls, ids in pair_ids.items()}
    return PlantedCopiesNet(concepts, blocks, len(dataset.classes), copy_ids, pair_names,
                            filler_ids, seed=seed).eval()


def planted_copies_atlas(n: int = 800, *, top_n: int = 40, size: int = 32, data_seed: int = 3,
                         batch_size: int = 200, **model_options):
    """A ready example: (data set, planted net, TensorDataset of its images and labels, atlas
    of the three blocks). ``model_options`` go to ``planted_copies_model``."""
    from ..atlas import Atlas

    data = ConceptPlayground(n=n, size=size, seed=data_seed)
    model = planted_copies_model(data, **model_options)
    images = torch.utils.data.TensorDataset(*data.tensors())
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size)
    atlas = Atlas.build(model, loader, model.layers, class_names=data.classes, top_n=top_n,
                        progress=False)
    return data, model, images, atlas
