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


# the stand-in SAG: image 0 has a root (patches 0, 1, 4, 5) and two children (without patch
# 0, a small drop; without 5, a large one), image 5 a root and one child; image 7 has none
SAG_NODES = {0: 3, 5: 2}
ROOT = 0b110011


def with_sag_and_xnn(atlas, found):
    """Attach a stand-in SAG (``SAG_NODES``) and XNN (class 3, the explained images' target,
    and class 1; 2 x-features with 2 neurons each, one the atlas lacks and one labelled with
    ``helpers.XSS``; shown images 9 and 5) to the atlas of ``explained_atlas``; (sag, xnn)."""
    import numpy as np

    from helpers import XSS
    from notebookcarto.explain import SAG, XNN

    graphs = [{"row": 0, "candidates": 1, "roots": [(ROOT, 0.9)],
               "nodes": {ROOT: 0.9, ROOT & ~1: 0.85, ROOT & ~(1 << 5): 0.3},
               "depth": {ROOT: 0, ROOT & ~1: 1, ROOT & ~(1 << 5): 1},
               "edges": [(ROOT, ROOT & ~1, 0), (ROOT, ROOT & ~(1 << 5), 5)]},
              {"row": 1, "candidates": 1, "roots": [(ROOT, 0.7)],
               "nodes": {ROOT: 0.7, ROOT & ~2: 0.2}, "depth": {ROOT: 0, ROOT & ~2: 1},
               "edges": [(ROOT, ROOT & ~2, 1)]}]
    sag = SAG.from_graphs(graphs, grid=4, image_ids=np.array([0, 5]),
                          targets=np.asarray(found.targets[:2]),
                          probabilities=np.array([0.95, 0.8], np.float32),
                          images=np.asarray(found.images[:2]),
                          heuristic=np.zeros((2, 4, 4), np.float32))
    m, n, k, t, c = 2, 2, 2, 2, 16
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.random(shape, dtype=np.float32)  # noqa: E731
    xnn = XNN(layer="block2", classes=np.array([3, 1]), encoder=f32(m, k, c),
              encoder_bias=f32(m, k), decoder=f32(m, c, k), decoder_bias=f32(m, c),
              head=f32(m, k), head_bias=f32(m), scale=1.0, pool="mean",
              image_ids=np.array([9, 5]), images=np.asarray(found.images[:2]),
              heatmaps=f32(m, n, k, 4, 4), scores=f32(m, n), reconstructed=f32(m, n),
              neurons=np.array([[["block2:3", "block2:7"], ["block9:1", "block2:0"]]] * m),
              neuron_weights=f32(m, k, t),
              neuron_labels=np.array([[[XSS, ""], ["", "stripes"]]] * m),
              faithfulness_r2=np.array([0.91, 0.5], np.float32),
              train_r2=np.ones(m, np.float32), train_ids=np.arange(4),
              held_out_ids=np.arange(4, 6),
              history=f32(m, 3), seconds=f32(m))
    return atlas.attach(sag), atlas.attach(xnn)
