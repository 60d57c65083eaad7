"""Network Dissection (Bau, Zhou, Khosla, Oliva, Torralba, CVPR 2017; TPAMI 2018).

``dissect(model, data, layers)`` labels every unit (channel) of the chosen layers with the
concept whose pixels its high activations cover best:

1. Threshold T_k per unit: the value exceeded by a share ``quantile`` of all positions of all
   images (default 0.005), from a streaming, mergeable estimator on the model's device: the
   exact top values of every unit (``stats.TopValues``) when they fit in memory, else a
   KLL-style quantile sketch (``stats.QuantileSketch``, rank error about 1/k).
2. Each activation map is resampled bilinearly to the image's mask resolution (as
   ``F.interpolate(mode="bilinear", align_corners=False)``; no resampling when the sizes are
   equal) and M_k = (map > T_k), strictly greater.
3. Tallies over the data set: I[k, c] = pixels of M_k inside concept c (an image-level label
   covers the whole image), G[c] = pixels of c, A[k, g] = pixels of M_k in images that carry a
   concept of category g. Only the maps whose raw maximum exceeds a level are resampled (no
   other map can exceed it after bilinear resampling); their fired pixels are counted towards
   the masks that hold them, or, when many positions fire, by matrix products of boolean masks.
   The thresholds and the tallies come from one forward pass: pixels above a band around T_k,
   guessed from the first batch, are counted at once and those inside it kept with their
   values until T_k is known; a layer whose band misses T_k is counted in a second pass
   (``counting``; exact either way).
4. IoU[k, c] = I / (A[k, category(c)] + G - I). Per unit: the best concept of each category,
   then the best overall (ties: the earlier concept); a unit is a detector if its best IoU >
   ``iou_threshold`` (0.04). Per layer: detectors and unique concepts, also per category.

Two methods: ``"original"`` (2017: quantile of the raw activations, 0.005) and ``"2020"``
(Bau 2020, ``dissect``: quantile of the activations after resampling to the mask grid, 0.01).
The first pass also keeps every unit's top images (by spatial maximum) for the gallery.

Guarantees: thresholds are exact (``TopValues``) or from a sketch whose rank error is measured
(tests/test_quantile.py); values equal to the threshold are not in M_k (strictly greater: a
unit whose top values tie at T_k leaves them out); A is counted separately for every category;
an image-level label counts every pixel of the image at its mask resolution; a concept never
present gets IoU 0 (no division by zero); counts are exact integers (summed in int64), and IoU
equals a brute-force reference exactly, in one pass or two (tests/test_dissection.py). Only
layers with spatial maps (B, C, H, W) can be dissected.

Under ``torch.distributed`` each process reads its shard (images ``rank, rank + W, ...``, with
their global ids); the estimators are merged before any threshold is read, then the counts are
summed and the top images merged, so every rank (or rank 0 only) gets the result of one process.
With ``checkpoint=folder`` every pass saves its state as it goes and a crashed dissection resumes
where it stopped (``dissect``).

The ``Dissection`` goes into the Atlas with ``atlas.attach(result)`` (it adds the columns
``concept``, ``category`` and ``iou`` to ``atlas.neurons``; ``cluster_concepts(atlas.neurons)``
names clusters after their members' labels); ``summary_figure`` charts the summary; galleries of
top images with the unit's mask overlaid come from ``unit_gallery`` and, for every unit, from
``dissection_gallery`` (a ``DissectionGallery`` result).
``rotate_channels`` builds the paper's control: a random rotation of a layer's channel basis
that leaves the model's function unchanged.
"""

from .gallery import dissection_gallery, overlay_mask, unit_gallery
from .result import Dissection, DissectionGallery
from .rotation import ChannelMix, ChannelRotation, random_rotation, rotate_channels
from .run import METHODS, dissect
from .summary import cluster_concepts, summary_figure

__all__ = ["METHODS", "ChannelMix", "ChannelRotation", "Dissection", "DissectionGallery",
           "cluster_concepts", "dissect", "dissection_gallery", "overlay_mask",
           "random_rotation", "rotate_channels", "summary_figure", "unit_gallery"]
