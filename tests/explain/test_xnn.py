"""XNN on a planted model whose class score is a sum of three independent concept channels: the
x-features find the three channels one to one, rebuild the score faithfully, name the planted
channels as their nearest neurons, survive atlas save and load, and bad input is refused before
any training."""

from itertools import permutations

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.explain import XNN, xfeatures, xnn
from notebookcarto.testing.planted_sum import PlantedSumNet, planted_sum_data

STEPS = 500
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    model = PlantedSumNet().eval()
    images, present = planted_sum_data(64, size=12, seed=1)
    return model, images, present


@pytest.fixture(scope="module")
def fitted(planted):
    model, images, _ = planted
    return xnn(model, images, model.layer, model.target, features=3, steps=STEPS, seed=0,
               show=4, progress=False)


def _pooled_planted(model, images):
    with torch.no_grad():
        acts = model.concepts(images)
    return acts.numpy(), acts.mean((2, 3))[:, model.planted].numpy()


def test_x_features_match_the_planted_channels_one_to_one(planted, fitted):
    model, images, _ = planted
    acts, truth = _pooled_planted(model, images)
    pooled = fitted.embed(acts).mean((2, 3))
    corr = np.abs(np.corrcoef(pooled.T, truth.T)[:3, 3:])
    best = max(permutations(range(3)), key=lambda p: sum(corr[i, p[i]] for i in range(3)))
    assert all(corr[i, best[i]] >= 0.9 for i in range(3)), corr
    # each x-feature's nearest neuron is the planted channel it matches
    assert [str(n) for n in fitted.neurons[0, :, 0]] == [f"concepts:{model.planted[j]}"
                                                         for j in best]
    assert (fitted.neuron_weights[0, :, 0] > 0.9).all()


def test_the_score_is_rebuilt_faithfully(planted, fitted):
    # measured: R^2 0.99995 on the 16 held-out images and on the 48 trained on (seed 0)
    assert fitted.faithfulness_r2[0] > 0.95 and fitted.train_r2[0] > 0.95
    assert len(fitted.held_out_ids) == 16 and len(fitted.train_ids) == 48
    assert not set(fitted.held_out_ids) & set(fitted.train_ids)
    np.testing.assert_allclose(fitted.reconstructed, fitted.scores, rtol=0.05)


def test_heatmaps_are_the_x_feature_maps_of_the_shown_images(planted, fitted):
    model, images, _ = planted
    acts, _ = _pooled_planted(model, images)
    assert fitted.heatmaps.shape == (1, len(fitted.image_ids), 3, 12, 12)
    assert set(fitted.image_ids) <= set(fitted.held_out_ids)
    first = int(fitted.image_ids[0])
    np.testing.assert_allclose(fitted.heatmaps_of(first), fitted.embed(acts[first:first + 1])[0],
                               atol=1e-5)
    assert fitted.images.shape == (len(fitted.image_ids), 12, 12, 3)
    assert list(fitted.nearest().columns) == ["feature", "rank", "neuron", "weight", "label"]


def test_model_and_global_rng_are_untouched_and_seeds_repeat(planted):
    model, images, _ = planted
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    runs = [xnn(model, images, "concepts", 0, steps=20, seed=3, progress=False)
            for _ in range(2)]
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.training and all(p.requires_grad for p in model.parameters())
    np.testing.assert_array_equal(runs[0].encoder, runs[1].encoder)
    np.testing.assert_array_equal(runs[0].held_out_ids, runs[1].held_out_ids)


def test_a_dead_x_feature_is_restarted_where_the_residual_is_largest():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 4, 5, 5, generator=gen)
    net = xfeatures._Net(a, 2, gen)
    with torch.no_grad():
        net.encoder_bias[1] = -1e3  # never fires
        x = net.embed(a)
        a_hat = torch.einsum("ck,bkhw->bchw", net.decoder(), x)
    kept = net.encoder[0].clone()
    opt = torch.optim.Adam(net.parameters())
    net.revive(x, a, a_hat, opt)
    with torch.no_grad():
        after = net.embed(a)
    residual = (a - a_hat).norm(dim=1)
    worst = np.unravel_index(int(residual.argmax()), residual.shape)
    assert float(after[worst[0], 1, worst[1], worst[2]]) == pytest.approx(
        float(residual.max()), rel=1e-5)
    assert torch.equal(net.encoder[0], kept)


def test_several_classes_each_get_the_network_they_get_alone(planted):
    model, images, _ = planted
    both = xnn(model, images, "concepts", [1, 0], steps=20, show=2, progress=False)
    alone = xnn(model, images, "concepts", 0, steps=20, show=2, progress=False)
    assert both.classes.tolist() == [1, 0] and both.heatmaps.shape[:3] == (2, len(
        both.image_ids), 3)
    assert 2 <= len(both.image_ids) <= 4  # each class's 2 best held-out images
    np.testing.assert_array_equal(both.encoder[both.index(0)], alone.encoder[0])
    assert list(both.summary().index) == [1, 0]
    with pytest.raises(KeyError, match="was not explained"):
        alone.index(1)


def test_it_attaches_saves_and_loads(planted, fitted, tmp_path):
    model, images, _ = planted
    with torch.no_grad():
        labels = model(images).argmax(1)
    atlas = Atlas.build(model, (images, labels), [model.layer], progress=False)
    atlas.attach(fitted)
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(XNN)
    for name, value in fitted.to_section()["arrays"].items():
        np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
    assert back.layer == fitted.layer and back.scale == fitted.scale
    assert back.nearest().equals(fitted.nearest())


@pytest.mark.parametrize("change, error, match", [
    ({"features": 0}, ValueError, "features must be a positive integer"),
    ({"layer": "fc"}, ValueError, "spatial maps"),
    ({"layer": "nope"}, KeyError, "nope"),
    ({"target_class": 2}, ValueError, "out of range"),
    ({"target_class": -1}, ValueError, "out of range"),
    ({"features": 9}, ValueError, "at most 8"),
    ({"pool": "median"}, ValueError, "pool must be one of"),
    ({"images": [0, 1, 2]}, ValueError, "give more images"),
    ({"show": [63, 99]}, ValueError, "not among the images"),
])
def test_bad_input_is_refused_before_training(planted, monkeypatch, change, error, match):
    model, images, _ = planted

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking its input")

    monkeypatch.setattr(xfeatures, "_train", no_training)
    args = {"layer": "concepts", "target_class": 0, **change}
    layer, target = args.pop("layer"), args.pop("target_class")
    with pytest.raises(error, match=match):
        xnn(model, images, layer, target, progress=False, **args)
