"""An atlas with an ``Explanation`` for the explanation view's tests: a tiny playground CNN
atlas (with the stand-in results of ``helpers.fake_results``), three images explained with one
I-GOS iteration, plus a heatmap ``"left"`` that is 1 on the images' left half and 0 on the
right (so the drawn overlay is known)."""

from __future__ import annotations

import torch

from helpers import fake_results, small_atlas

IDS = [0, 5, 7]


def explained_atlas(n: int = 120, seed: int = 3):
    """(atlas with the explanation attached, the Explanation)."""
    from notebookcarto.explain import explain

    atlas, model, data = small_atlas(n=n, seed=seed)
    fake_results(atlas)
    images, labels = data.tensors(progress=False)
    left = torch.zeros(len(IDS), 32, 32)
    left[:, :, :16] = 1
    found = explain(model, (images, labels), IDS, atlas=atlas, heatmaps={"left": left},
                    options={"iterations": 1}, top_units=4, progress=False)
    return atlas, atlas.attach(found)
