"""Feeding a dissection: batches of annotated images through the captured model, the chosen
concepts as count targets, and bilinear resampling of activation maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...capture import Capture, model_device
from ...datasets.concept_data import ConceptBatch, ConceptData
from ...datasets.items import own_loader
from ...datasets.shard import World, shard_ids

__all__ = ["Concepts", "check_map", "chunks", "forward", "resample", "shard"]

CHUNK_ELEMENTS = 1 << 24  # resampled activations held at once (images are processed in chunks)


def resample(z: torch.Tensor, shape) -> torch.Tensor:
    """Bilinear resampling of (B, C, h, w) maps to ``shape`` (align_corners=False, no
    antialiasing); the maps themselves when the size already matches."""
    shape = (int(shape[0]), int(shape[1]))
    if tuple(z.shape[2:]) == shape:
        return z
    # channels-last is several times faster on CPU and keeps (B, P, C) views cheap
    z = z.float().contiguous(memory_format=torch.channels_last)
    return F.interpolate(z, size=shape, mode="bilinear", align_corners=False)


def check_map(name: str, z: torch.Tensor):
    if z.ndim != 4:
        raise ValueError(f"layer {name!r} gives outputs of shape {tuple(z.shape)}: dissection "
                         "needs spatial maps (B, C, H, W); choose a convolutional layer")


def shard(data: ConceptData, batch_size: int, world: World | None) -> list[list[int]]:
    """The global ids of this rank's batches: ids ``rank, rank + W, ...`` (all ids alone)."""
    ids = shard_ids(len(data), world).tolist()
    return [ids[s:s + batch_size] for s in range(0, len(ids), batch_size)]


class _BatchSource(torch.utils.data.Dataset):
    def __init__(self, data, batches):
        self.data, self.batches = data, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, j):
        return self.data.load_batch(self.batches[j])


def chunks(batch_size: int, per_image: int):
    step = max(1, CHUNK_ELEMENTS // max(per_image, 1))
    return [slice(s, min(s + step, batch_size)) for s in range(0, batch_size, step)]


def forward(model, data, layers, batch_size, num_workers, progress, desc, world=None, skip=0):
    """Yield (batch, {layer: output}) over this rank's shard of the data set (``world``, None:
    all of it) after its first ``skip`` batches, with the model captured; a list of
    ConceptBatch (one per mask shape) from each ``load_batch`` ends with ``(None, None)``."""
    device = model_device(model)
    outputs: dict[str, torch.Tensor] = {}
    batches = shard(data, batch_size, world)[skip:]
    source = (own_loader(_BatchSource(data, batches), None, num_workers) if num_workers
              else map(data.load_batch, batches))
    with Capture(model, layers, on_output=outputs.__setitem__, copy=True), torch.inference_mode():
        for groups in tqdm(source, total=len(batches), desc=desc, disable=not progress):
            for batch in groups:
                outputs.clear()
                model(batch.images.to(device, non_blocking=True))
                for name in layers:
                    check_map(name, outputs[name])
                yield batch, outputs
            yield None, None


class Concepts:
    """Selected concepts, remapped to 0..K-1 with a dummy K for padding and the rest; each
    category g is count column K + g."""

    def __init__(self, data: ConceptData, names, device):
        all_concepts = list(data.concepts)
        if not all_concepts:
            raise ValueError("the data set has no concepts")
        chosen = (list(range(len(all_concepts))) if names is None
                  else data.concept_index(names))
        if not chosen:
            raise ValueError("concepts=[] selects nothing: pass concept names or None for all")
        if len(set(chosen)) != len(chosen):
            raise ValueError("concepts lists a name twice")
        self.names = [all_concepts[i].name for i in chosen]
        self.concept_categories = [all_concepts[i].category for i in chosen]
        self.categories = list(dict.fromkeys(self.concept_categories))
        k = len(chosen)
        remap = torch.full((len(all_concepts) + 1,), k, dtype=torch.long)
        remap[torch.tensor(chosen)] = torch.arange(k)
        self.remap = remap.to(device)  # index -1 (padding) reads the last entry: the dummy
        cat = [self.categories.index(c) for c in self.concept_categories] + [len(self.categories)]
        self.category_of = torch.tensor(cat, dtype=torch.long, device=device)
        self.k = k

    @property
    def targets(self) -> int:
        """Count rows: the K concepts (I), then the G categories (A)."""
        return self.k + len(self.categories)

    def batch(self, batch: ConceptBatch, device):
        """(masks (B, M, P) bool, mask target (B, M) long, image target (B, R) long, ground (K,)
        long) of one batch, on the device. A pixel p of image b in ``masks[b, m]`` counts
        towards concept ``mask_target[b, m]``; every pixel of image b also counts towards each
        ``image_target[b, r] >= 0``: its image-level labels and, for A, the categories it
        carries (row K + g). ``ground`` is the batch's G."""
        masks = batch.masks.to(device, non_blocking=True).flatten(2)
        b, p = masks.shape[0], masks.shape[2]
        k, g = self.k, len(self.categories)
        concepts = self.remap[batch.mask_concepts.to(device)]
        labels = self.remap[batch.labels.to(device)]
        pixels = torch.count_nonzero(masks, dim=2)
        shown = (pixels > 0) & (concepts < k)
        carried = torch.zeros(b, g + 1, dtype=torch.bool, device=device)
        carried.scatter_(1, torch.where(shown, self.category_of[concepts], g), True)
        carried.scatter_(1, self.category_of[labels], True)
        ground = torch.zeros(k + 1, dtype=torch.long, device=device)
        ground.index_add_(0, concepts.flatten(), pixels.flatten())
        ground.index_add_(0, labels.flatten(), torch.full((labels.numel(),), p, device=device))
        used = shown.any(0)  # mask columns some image of the batch needs
        masks, shown = masks[:, used], shown[:, used]
        if not shown.all():  # an empty column or a concept not chosen: never counted
            masks = masks & shown[:, :, None]
        categories = torch.where(carried[:, :g], k + torch.arange(g, device=device), -1)
        image_target = torch.cat([torch.where(labels < k, labels, -1), categories], 1)
        return masks, concepts[:, used].clamp(max=k - 1), image_target, ground[:k]
