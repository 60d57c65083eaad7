"""The probe: a fixed set of images (and labels) a monitor maps at every snapshot."""

from __future__ import annotations

import hashlib

import torch

from ..datasets.concept_data import ConceptData, ConceptTensors
from ..datasets.items import image_data

__all__ = ["MAX_IMAGES", "Probe", "concept_probe"]

MAX_IMAGES = 20_000


class Probe:
    """Images (N, C, H, W) and labels (N,) or None, read once from any data the library reads
    (a tensor, ``(images, labels)``, a data set, a loader; see ``datasets.items``) and held on
    the CPU, so every snapshot maps exactly the same images in the same order (image ids are
    positions). ``class_names`` come from the data set's ``classes`` when it has them."""

    def __init__(self, data, *, batch_size: int = 64, image_key: str | None = None,
                 label_key: str | None = None, max_images: int = MAX_IMAGES):
        if isinstance(data, Probe):
            raise TypeError("data is already a Probe: pass it as it is")
        images, labels, n = [], [], 0
        items = image_data(data, batch_size=batch_size, image_key=image_key, label_key=label_key)
        for batch in items.batches(desc="probe"):
            n += batch.images.shape[0]
            if n > max_images:
                raise ValueError(f"the probe holds more than {max_images} images: a probe is a "
                                 "fixed sample of a few hundred images mapped at every snapshot; "
                                 "pass a subset (torch.utils.data.Subset or images[:500]), or "
                                 "raise max_images")
            images.append(batch.images.detach().cpu())
            if batch.labels is not None:
                labels.append(batch.labels.detach().cpu())
        self.images = torch.cat(images).contiguous()
        self.labels = torch.cat(labels).contiguous() if labels else None
        self.batch_size = batch_size
        self.class_names = _class_names(data)
        self._sha256: str | None = None

    @property
    def data(self):
        """The probe as the library's passes read it: ``(images, labels)`` or images."""
        return self.images if self.labels is None else (self.images, self.labels)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def sha256(self) -> str:
        """A fingerprint of the images and labels (a resumed series must see the same probe);
        computed once: the probe holds its own copy of them."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            for tensor in (self.images, self.labels):
                if tensor is not None:  # as raw bytes: any dtype (bfloat16 has no numpy twin)
                    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._sha256 = digest.hexdigest()
        return self._sha256

    def describe(self) -> dict:
        """JSON-ready: image count, shape, dtype, whether there are labels, the fingerprint."""
        return {"images": len(self), "shape": list(self.images.shape[1:]),
                "dtype": str(self.images.dtype).removeprefix("torch."),
                "labels": self.labels is not None, "sha256": self.sha256}

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return (f"Probe({len(self)} images {shape}, "
                f"{'with' if self.labels is not None else 'without'} labels)")


def _class_names(data):
    names = getattr(data, "classes", None)
    if names is None:
        names = getattr(getattr(data, "dataset", None), "classes", None)
    if names is None or isinstance(names, str):
        return None
    try:
        return [str(c) for c in names]
    except TypeError:
        return None


def concept_probe(concepts) -> ConceptTensors:
    """Concept data for the per-snapshot dissection, rendered into memory once
    (``ConceptTensors``) so that every snapshot reads the same images and masks quickly."""
    if isinstance(concepts, ConceptTensors):
        return concepts
    if not isinstance(concepts, ConceptData):
        raise TypeError(f"concepts must be a ConceptData (e.g. datasets.PlaygroundConcepts or "
                        f"a BrodenFolder), got {type(concepts).__name__}")
    if len(concepts) > MAX_IMAGES:
        raise ValueError(f"the concept data holds {len(concepts)} images: the monitor dissects "
                         f"a fixed sample at every snapshot; pass at most {MAX_IMAGES} (a few "
                         "hundred is typical)")
    return ConceptTensors.from_data(concepts)
