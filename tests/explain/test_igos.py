"""I-GOS and iGOS++ against known evidence, batched against the one-image loop, the line search
and the released defects, the regularisers, and bad input."""

import numpy as np
import pytest
import torch

from helpers import untouched
from known_models import PixelLinear, Tempered, cell_energy
from notebookcarto.explain import IGOS, IGOSPlusPlus, deletion_insertion, random_heatmaps
from notebookcarto.explain.igos import scaled_weights
from notebookcarto.explain.masks import bilateral_tv, tv_norm

pytestmark = pytest.mark.usefixtures("one_thread")
# for 8 x 8 cells: the released step scaled to the mask, a sharper L1 / L2 balance than the
# 224 px defaults, the released noise in [0, 1] pixel units, few steps to stay fast
FAST = dict(iterations=8, points=5, l1=3.0, l2=1.0, alpha=1000 * (8 / 28) ** 2, noise=0.045)


@pytest.fixture(scope="module")
def planted_cases(playground, mean_planted):
    data, x, _ = playground
    with torch.no_grad():
        pred = mean_planted(x).argmax(1)
    ids = [i for i in range(len(x)) if int(pred[i]) in mean_planted.planted.class_channel][:4]
    return data, x[ids], pred[ids], ids


@pytest.mark.parametrize("method", [IGOS, IGOSPlusPlus])
def test_masks_cover_the_planted_evidence(planted_cases, mean_planted, method):
    data, x, targets, ids = planted_cases
    gray = torch.full_like(x, 0.5)  # a baseline that holds none of the evidence
    explainer = method(mean_planted, **FAST)
    with untouched(mean_planted):
        masks = explainer.attribute(x, targets, baselines=gray, image_ids=ids)
    assert masks.shape == (4, 8, 8) and 0 <= masks.min() and masks.max() <= 1
    saliency = 1 - masks
    for j, i in enumerate(ids):
        assert cell_energy(saliency[j], mean_planted.evidence(data, i, int(targets[j]))) >= 0.9
    ours = deletion_insertion(mean_planted, x, saliency, targets, baselines=gray)
    chance = deletion_insertion(mean_planted, x, random_heatmaps(4, (8, 8)), targets,
                                baselines=gray)
    assert ours.deletion_auc.mean() < chance.deletion_auc.mean()
    assert ours.insertion_auc.mean() > chance.insertion_auc.mean()


def test_masks_find_the_and_circuit(playground, circuit):
    """Deleting either input of the planted AND kills the class: the mask lies on red or
    purple, not on the blue distractor or the background."""
    data, x, y = playground
    with torch.no_grad():
        pred = circuit(x).argmax(1)
    ids = [i for i in range(len(x)) if int(pred[i]) == circuit.and_class][:4]
    assert len(ids) == 4, "the playground sample has too few images of the AND class"
    gray = torch.full_like(x[ids], 0.5)
    model = Tempered(circuit, 0.3)  # 10 x AND saturates the softmax: no gradient reaches it
    masks = IGOS(model, **{**FAST, "points": 10}).attribute(x[ids], circuit.and_class,
                                                            baselines=gray, image_ids=ids)
    for j, i in enumerate(ids):
        m = data.masks(i)
        inputs = torch.from_numpy(m[data.concept_names.index("red")] |
                                  m[data.concept_names.index("purple")])
        assert cell_energy(1 - masks[j], inputs) >= 0.9


@pytest.mark.parametrize("method, options", [
    (IGOS, {}), (IGOSPlusPlus, {}), (IGOSPlusPlus, {"optimizer": "nesterov", "alpha": 50.0})])
def test_batched_equals_the_one_image_loop(planted_cases, mean_planted, method, options):
    _, x, targets, ids = planted_cases
    settings = dict(iterations=3, points=4, noise=0.1, seed=7, **options)
    batched = method(mean_planted, chunk_size=11, **settings)  # chunks split images' rows
    together = batched.attribute(x, targets, image_ids=ids)
    single = method(mean_planted, chunk_size=5, **settings)
    for j, i in enumerate(ids):
        alone = single.attribute(x[j:j + 1], targets[j:j + 1], image_ids=[i])
        torch.testing.assert_close(together[j], alone[0], atol=1e-5, rtol=0)
        np.testing.assert_allclose(batched.steps_[j].numpy(), single.steps_[0].numpy(),
                                   rtol=1e-6)
    assert not torch.equal(together[0], together[1])  # each image its own mask


def test_counts_and_iterations_are_what_they_say(planted_cases, mean_planted):
    """The released main.py swaps iterations and path points; here they mean what they say:
    per iteration 4 x points forward and backward passes per image for iGOS++, 1 x for I-GOS."""
    _, x, targets, ids = planted_cases
    for method, passes in ((IGOS, 1), (IGOSPlusPlus, 4)):
        e = method(mean_planted, iterations=2, points=3, noise=0.0)
        e.attribute(x, targets, image_ids=ids)
        assert e.steps_.shape == (4, 2)
        assert e.counts_.backward == 4 * 2 * 3 * passes
        assert e.counts_.forward % (3 * passes) == 0 and e.counts_.forward > 0


def test_the_line_search_tries_steps_in_order_whatever_the_trials_per_pass(planted_cases,
                                                                           mean_planted):
    """Without noise the objective is deterministic: trying 1 step per pass (one after
    another, as released) or 5 at once gives the same steps and masks, each Armijo's first."""
    _, x, targets, ids = planted_cases
    runs = []
    for trials in (1, 5):
        e = IGOS(mean_planted, iterations=3, points=4, noise=0.0, trials=trials)
        runs.append((e.attribute(x, targets, image_ids=ids), e.steps_, e.counts_.forward))
    torch.testing.assert_close(runs[0][0], runs[1][0], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(runs[0][1].numpy(), runs[1][1].numpy())
    grid = [1000 * 0.2 ** j for j in range(13)]
    assert all(any(np.isclose(s, g) for g in grid) for s in runs[0][1].flatten().tolist())
    assert runs[0][2] <= runs[1][2]  # more trials per pass never evaluate fewer steps


def test_the_model_and_the_global_rng_are_left_alone(planted_cases):
    _, x, targets, ids = planted_cases
    model = PixelLinear(classes=8, shape=(3, 32, 32))
    model.train()
    model(x[:1]).sum().backward()  # gradients set
    with untouched(model):
        IGOSPlusPlus(model, iterations=2, points=2).attribute(x, targets)
    assert model.training


def test_regularisers_on_known_masks():
    m = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert float(tv_norm(m)) == pytest.approx(1.0 + 1.0)  # mean of squared jumps, both ways
    flat = torch.zeros(1, 3, 4, 4)
    edge = flat.clone()
    edge[..., 2:] = 1.0  # an image edge between columns 1 and 2
    step = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]]) * torch.tensor([1.0, 0.0])
    assert float(bilateral_tv(edge, step)) < float(bilateral_tv(flat, step))
    assert float(bilateral_tv(flat, torch.ones(1, 2, 2))) == pytest.approx(0.0, abs=1e-12)


def test_released_defaults_and_parameters(planted_cases, mean_planted):
    _, x, targets, ids = planted_cases
    e = IGOS(mean_planted, iterations=1, points=1)
    e.attribute(x[:1], targets[:1])
    p = e.params()
    assert e.size_ == 8 and p["size"] == 8 and p["l1"] == 1 and p["l2"] == 20
    assert p["alpha"] == 1000 and p["optimizer"] == "line_search" and p["iterations"] == 1
    assert IGOS(mean_planted).points == 20 and IGOS(mean_planted).iterations == 15
    assert scaled_weights(28) == {"l2": 20, "alpha": 1000}
    assert scaled_weights(8) == {"l2": pytest.approx(20 * 8 / 28),
                                 "alpha": pytest.approx(1000 * (8 / 28) ** 2)}


class NoLogits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3)

    def forward(self, x):
        return self.conv(x).flatten(1).mean(1, keepdim=True)  # (B, 1): softmax is always 1


class Flat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("case, error, message", [
    ("target", ValueError, r"target 9 of image 1 is out of range: the model has 8 classes"),
    ("size", ValueError, r"a mask of 40 x 40 cells is larger than the images"),
    ("size1", ValueError, r"the mask size must be an integer >= 2"),
    ("wrong_size", ValueError, r"could not run on images of shape \(3, 24, 24\)"),
    ("no_softmax", ValueError, r"at least 2 classes"),
    ("dtype", ValueError, r"images are torch.float64 but the model's parameters"),
    ("option", ValueError, r"optimizer must be one of"),
])
def test_bad_input_is_refused_before_the_work(planted_cases, mean_planted, case, error,
                                              message):
    _, x, targets, _ = planted_cases
    model, kwargs, images, target = mean_planted, {}, x, torch.tensor([0, 9, 1, 1])
    if case != "target":
        target = targets
    if case == "size":
        kwargs = {"size": 40}
    if case == "size1":
        kwargs = {"size": 1}
    if case == "wrong_size":
        model, images, target = Flat(), x[:, :, :24, :24], 0
    if case == "no_softmax":
        model, target = NoLogits(), 0
    if case == "dtype":
        images = x.double()
    if case == "option":
        kwargs = {"optimizer": "adam"}
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(error, match=message):
            IGOSPlusPlus(model, iterations=1, points=1, **kwargs).attribute(images, target)
    finally:
        handle.remove()
    assert len(calls) <= 1  # at most the probe of the first image
