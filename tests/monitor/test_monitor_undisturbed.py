"""Training is not disturbed: N steps of deterministic CPU training with the monitor (every
analysis on, BatchNorm in train mode, flips drawn from the global RNG) give bit-identical
weights, optimizer state and RNG states to N steps without it."""

import random

import numpy as np
import pytest
import torch

from helpers import untouched
from monitor_setups import CLASSES, SmallCNN, make, probe, train
from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
from notebookcarto.monitor import Monitor, undisturbed

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:random neuron pairs overlap")]

STEPS = 6


def monitor(path, **options):
    images, labels = probe(per_colour=6)
    concepts = PlaygroundConcepts(ConceptPlayground(n=12, size=32, seed=3))
    return Monitor(path, (images, labels), ["conv1", "conv2"], every=2, class_names=CLASSES,
                   top_n=10, clusters={"refine_images": 8}, concepts=concepts, graphs=[0, 2],
                   **options)


def run(path=None, **options):
    model, opt = make(SmallCNN, seed=0)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    watcher = None if path is None else monitor(path, **options)
    if watcher is not None:
        watcher.observe(model, 0)
    train(model, opt, range(1, STEPS + 1), monitor=watcher, random_flips=True)
    # what the training loop would draw next, from each RNG
    after = (torch.rand(4), random.random(), np.random.rand())
    if watcher is not None:
        watcher.close()
    return model, opt, after, watcher


@pytest.mark.parametrize("background", [True, False], ids=["background-writes", "inline"])
def test_training_with_the_monitor_is_bit_identical(tmp_path, background):
    plain, plain_opt, plain_next, _ = run()
    watched, watched_opt, watched_next, watcher = run(tmp_path / "run", background=background)
    assert watcher.series.steps() == [0, 2, 4, 6]
    for name, value in plain.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, watched.state_dict()[name]), name
    for a, b in zip(plain_opt.state_dict()["state"].values(),
                    watched_opt.state_dict()["state"].values()):
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    assert torch.equal(plain_next[0], watched_next[0])
    assert plain_next[1:] == watched_next[1:]
    assert watched.training  # still in train mode
    atlas = watcher.series.load(6)
    assert {"clusters", "dissection", "influence", "attribution_graphs"} <= set(atlas.results)


def test_one_observation_leaves_model_rng_and_threads_untouched(tmp_path):
    model, opt = make(SmallCNN, seed=0)
    watcher = monitor(tmp_path / "run", background=False)
    train(model, opt, [1])  # grads present, train mode
    model.conv1[1].eval()  # mixed modes must come back as they were
    with untouched(model):
        assert watcher.observe(model, 2) is not None
    with untouched(model):
        assert watcher.observe(model, 3) is None  # not scheduled: nothing runs


def test_the_guard_restores_everything_after_an_error():
    model, _ = make(SmallCNN, seed=0)
    threads = torch.get_num_threads()
    state = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    with pytest.raises(RuntimeError, match="boom"):
        with undisturbed(model):
            torch.rand(3), random.random(), np.random.rand()
            torch.set_num_threads(threads + 1)
            torch.set_grad_enabled(False)
            model.eval()
            with torch.no_grad():
                model.conv1[0].weight.add_(1)
            raise RuntimeError("boom")
    assert torch.equal(torch.get_rng_state(), state[0])
    assert random.getstate() == state[1]
    assert np.array_equal(np.random.get_state()[1], state[2])
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()
    assert model.training
    fresh, _ = make(SmallCNN, seed=0)
    assert torch.equal(model.conv1[0].weight, fresh.conv1[0].weight)
