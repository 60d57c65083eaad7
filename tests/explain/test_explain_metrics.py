"""Deletion / insertion metrics: brute-force loops agree exactly, the AUC has both end points,
known evidence beats a random ordering, and bad input is answered before the model runs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import untouched
from known_models import PixelLinear
from notebookcarto.explain import (CellProtocol, PixelProtocol, auc, blur, deletion_insertion,
                                   random_heatmaps, scaled_blur)

pytestmark = pytest.mark.usefixtures("one_thread")


def probability(model, x, target):
    with torch.no_grad():
        return float(torch.softmax(model(x[None]), 1)[0, target])


def trapezoid(fractions, scores):
    total = 0.0
    for j in range(len(fractions) - 1):
        total += (fractions[j + 1] - fractions[j]) * (scores[j] + scores[j + 1]) / 2
    return total


def brute_cells(model, image, baseline, cells, target, step):
    """One image, one step at a time: delete (insert) the s x s cells in order of saliency."""
    s = cells.shape[0]
    flat = cells.flatten().tolist()
    order = sorted(range(s * s), key=lambda c: (-flat[c], c))
    fractions, deletion, insertion = [], [], []
    removed = 0
    while True:
        keep = torch.ones(s * s)
        keep[order[:removed]] = 0
        up = F.interpolate(keep.view(1, 1, s, s), size=image.shape[-2:], mode="bilinear",
                           align_corners=True)[0]
        deletion.append(probability(model, image * up + baseline * (1 - up), target))
        insertion.append(probability(model, baseline * up + image * (1 - up), target))
        fractions.append(removed / (s * s))
        if removed == s * s:
            return fractions, deletion, insertion
        removed = min(removed + step, s * s)


def brute_pixels(model, image, inserted_into, heat, target, steps):
    h, w = image.shape[-2:]
    flat = heat.flatten().tolist()
    order = sorted(range(h * w), key=lambda p: (-flat[p], p))
    step = -(-h * w // steps)
    fractions, deletion, insertion = [], [], []
    removed = 0
    while True:
        deleted, grown = image.clone(), inserted_into.clone()
        for p in order[:removed]:
            deleted[:, p // w, p % w] = 0
            grown[:, p // w, p % w] = image[:, p // w, p % w]
        deletion.append(probability(model, deleted, target))
        insertion.append(probability(model, grown, target))
        fractions.append(removed / (h * w))
        if removed == h * w:
            return fractions, deletion, insertion
        removed = min(removed + step, h * w)


@pytest.fixture(scope="module")
def linear_images():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 16, 16, generator=g)
    return PixelLinear(), images, torch.tensor([0, 3, 4])


def test_auc_is_the_trapezoid_over_the_fractions_with_both_end_points():
    # the released code's last step gives 0.2041 for a constant 0.2 on 28 x 28 cells
    assert auc([0, 15 / 784, 1], [0.2, 0.2, 0.2]) == pytest.approx(0.2, abs=1e-15)
    assert auc([0, 0.25, 1], [1.0, 0.5, 0.0]) == pytest.approx(0.25 * 0.75 + 0.75 * 0.25)
    np.testing.assert_allclose(auc([0, 1], [[0, 1], [1, 1]]), [0.5, 1.0])


def test_cell_protocol_equals_a_brute_force_loop_exactly(linear_images):
    model, images, targets = linear_images
    heat = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    heat[0, 0, :2] = heat[0, 1, 3]  # ties: ranked in flat order
    base = blur(images)
    with untouched(model):
        curves = deletion_insertion(model, images, heat, targets,
                                    protocol=CellProtocol(size=4, step=3), chunk_size=7)
    assert curves.protocol["name"] == "cells" and curves.protocol["step"] == 3
    for i in range(3):
        f, d, ins = brute_cells(model, images[i], base[i], heat[i], int(targets[i]), 3)
        np.testing.assert_array_equal(curves.fractions, np.float32(f))
        np.testing.assert_array_equal(curves.deletion[i], np.float32(d))
        np.testing.assert_array_equal(curves.insertion[i], np.float32(ins))
        assert curves.deletion_auc[i] == np.float32(trapezoid(f, d))
        assert curves.insertion_auc[i] == np.float32(trapezoid(f, ins))
    assert f == [0, 3 / 16, 6 / 16, 9 / 16, 12 / 16, 15 / 16, 1]  # the last step is short
    assert d[0] == probability(model, images[2], 4)  # t = 0 is the image itself


def test_pixel_protocol_equals_a_brute_force_loop_exactly(linear_images):
    model, images, targets = linear_images
    heat = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))  # upsampled
    pixel_heat = F.interpolate(heat[:, None].double(), size=(16, 16), mode="bilinear",
                               align_corners=False)[:, 0]
    inserted_into = blur(images, reference=(11, 5.0))
    curves = deletion_insertion(model, images, heat, targets, protocol=PixelProtocol(steps=6),
                                chunk_size=5)
    for i in range(3):
        f, d, ins = brute_pixels(model, images[i], inserted_into[i], pixel_heat[i],
                                 int(targets[i]), 6)
        np.testing.assert_array_equal(curves.fractions, np.float32(f))
        np.testing.assert_array_equal(curves.deletion[i], np.float32(d))
        np.testing.assert_array_equal(curves.insertion[i], np.float32(ins))
        assert curves.deletion_auc[i] == np.float32(trapezoid(f, d))
    assert len(f) == 7 and f[-2] == 215 / 256  # 43 pixels a step, the last step 41


def test_batched_curves_match_single_images_on_a_cnn(playground, circuit):
    _, x, _ = playground
    x = x[:4]
    heat = random_heatmaps(4, (8, 8), seed=4)
    targets = torch.tensor([0, 4, 4, 7])
    batched = deletion_insertion(circuit, x, heat, targets, chunk_size=50)
    for i in range(4):
        one = deletion_insertion(circuit, x[i:i + 1], heat[i:i + 1], targets[i:i + 1])
        np.testing.assert_allclose(batched.deletion[i], one.deletion[0], atol=1e-6)
        np.testing.assert_allclose(batched.insertion[i], one.insertion[0], atol=1e-6)


def test_heatmaps_of_any_resolution_and_attributions(linear_images):
    model, images, targets = linear_images
    cells = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(5))
    pixels = cells.repeat_interleave(4, 1).repeat_interleave(4, 2)  # the same, per pixel
    a = deletion_insertion(model, images, cells, targets, protocol=CellProtocol(size=4))
    b = deletion_insertion(model, images, pixels, targets, protocol=CellProtocol(size=4))
    np.testing.assert_array_equal(a.deletion, b.deletion)
    attributions = torch.stack([pixels, -pixels, pixels], 1)  # (n, C, h, w): |.| summed
    c = deletion_insertion(model, images, attributions, targets, protocol=CellProtocol(size=4))
    np.testing.assert_array_equal(a.insertion, c.insertion)


def test_the_evidence_deletes_faster_than_a_random_ordering(playground, mean_planted):
    data, x, _ = playground
    with torch.no_grad():
        pred = mean_planted(x).argmax(1)
    ids = [i for i in range(len(x)) if int(pred[i]) in mean_planted.planted.class_channel][:6]
    evidence = torch.stack([mean_planted.evidence(data, i, int(pred[i])).float() for i in ids])
    gray = torch.full_like(x[ids], 0.5)  # holds none of the evidence
    known = deletion_insertion(mean_planted, x[ids], evidence, pred[ids], baselines=gray)
    chance = deletion_insertion(mean_planted, x[ids], random_heatmaps(6, (32, 32)), pred[ids],
                                baselines=gray)
    assert np.all(known.deletion_auc < chance.deletion_auc)
    assert np.all(known.insertion_auc > chance.insertion_auc)
    assert known.deletion[:, -1] == pytest.approx(1 / 8, abs=1e-6)  # all gone: uniform


def test_blur_is_opencvs_gaussian_with_a_reflected_border():
    img = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = blur(img, 5, 1.5)[0].numpy()
    x = np.arange(5) - 2
    w = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w /= w.sum()
    kernel = np.outer(w, w)
    padded = np.pad(img[0].numpy(), ((0, 0), (2, 2), (2, 2)), mode="reflect")  # reflect-101
    ref = np.zeros_like(out)
    for c in range(2):
        for i in range(9):
            for j in range(11):
                ref[c, i, j] = (padded[c, i:i + 5, j:j + 5] * kernel).sum()
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert scaled_blur(224) == (51, 50.0) and scaled_blur(600) == (151, 150.0)
    assert scaled_blur(900) == (201, 200.0) and scaled_blur(32) == (7, pytest.approx(50 / 7))
    assert scaled_blur(224, (11, 5.0)) == (11, 5.0) and scaled_blur(32, (11, 5.0))[0] == 3


@pytest.mark.parametrize("change, error, message", [
    (dict(heatmaps=torch.rand(2, 4, 4)), ValueError, r"heatmaps must be .* for 3 images"),
    (dict(heatmaps=torch.full((3, 4, 4), float("nan"))), ValueError, "NaN"),
    (dict(protocol="rise"), ValueError, "protocol must be 'cells'"),
    (dict(protocol=CellProtocol(size=20)), ValueError, "20 x 20 cells does not fit"),
    (dict(targets=torch.tensor([0, 1, 5])), ValueError, "target 5 of image 2 is out of range"),
    (dict(images=torch.rand(3, 16, 16)), ValueError, r"images must be a float tensor"),
])
def test_bad_input_is_answered_before_the_curves(linear_images, change, error, message):
    model, images, targets = linear_images
    calls = []
    model.inner.register_forward_hook(lambda *a: calls.append(1))
    args = dict(images=images, heatmaps=torch.rand(3, 4, 4), targets=targets)
    args.update(change)
    try:
        with pytest.raises(error, match=message):
            deletion_insertion(model, args["images"], args["heatmaps"], args["targets"],
                               protocol=args.get("protocol", "cells"))
        assert len(calls) <= 1  # at most the probe that reads the number of classes
    finally:
        model.inner._forward_hooks.clear()


def test_a_model_without_logits_is_refused(linear_images):
    _, images, targets = linear_images

    class Scalar(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Identity()

        def forward(self, x):
            return self.inner(x).mean((1, 2, 3))

    with pytest.raises(ValueError, match="softmax over classes needs logits"):
        deletion_insertion(Scalar(), images, torch.rand(3, 4, 4), targets)


def test_captum_attributions_are_scored_like_any_heatmap(playground, mean_planted):
    captum = pytest.importorskip("captum.attr")
    data, x, _ = playground
    with torch.no_grad():
        pred = mean_planted(x).argmax(1)
    ids = [i for i in range(len(x)) if int(pred[i]) in mean_planted.planted.class_channel][:4]
    gray = torch.full_like(x[ids], 0.5)
    attributions = captum.IntegratedGradients(mean_planted).attribute(
        x[ids], baselines=gray, target=pred[ids], n_steps=16)
    ig = deletion_insertion(mean_planted, x[ids], attributions, pred[ids], baselines=gray)
    chance = deletion_insertion(mean_planted, x[ids], random_heatmaps(4, (32, 32)), pred[ids],
                                baselines=gray)
    assert ig.deletion_auc.mean() < chance.deletion_auc.mean()
