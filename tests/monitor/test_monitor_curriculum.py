"""Ground truth: a curriculum whose evidence for one class changes at a known step.

Classes 0..3 are squares of red, green, blue and yellow (each image also holds a distractor
square of another class's colour); from step ``SWAP`` on, class 0 is shown by maroon squares
instead of red. The model's read-out is fixed (channel k of conv2 is class k's logit), so the
neuron tied to class 0 is ``conv2:0`` by construction: it must move from red to maroon, and the
other classes' neurons have no reason to change."""

import copy

import pytest

from monitor_setups import CLASSES, make, probe, train
from notebookcarto.monitor import Monitor

pytestmark = pytest.mark.usefixtures("one_thread")

SWAP, LAST, EVERY = 120, 200, 10
TIED = "conv2:0"
OTHERS = ["conv2:1", "conv2:2", "conv2:3"]
WINDOW = slice(SWAP + 1, SWAP + 4 * EVERY)  # the snapshots after the swap


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(timeline with the swap, timeline of the same run continued without it from step 119)."""
    folder = tmp_path_factory.mktemp("curriculum")
    model, opt = make(seed=4)
    monitor = Monitor(folder / "swap", probe(), ["conv1", "conv2"], every=EVERY,
                      class_names=CLASSES, top_n=8)
    monitor.observe(model, 0)
    train(model, opt, range(1, SWAP), monitor=monitor, swap=SWAP)
    control_model, control_opt = copy.deepcopy(model), copy.deepcopy(opt)
    train(model, opt, range(SWAP, LAST + 1), monitor=monitor, swap=SWAP)
    control = Monitor(folder / "control", probe(), ["conv1", "conv2"],
                      every=[SWAP - 1] + list(range(SWAP + EVERY, SWAP + 5 * EVERY, EVERY)),
                      class_names=CLASSES, top_n=8)
    control.observe(control_model, SWAP - 1)
    train(control_model, control_opt, range(SWAP, SWAP + 4 * EVERY + 1), monitor=control,
          swap=None)
    return monitor.timeline(), control.timeline()


def test_the_tied_neuron_drifts_most_right_after_the_swap(runs):
    timeline, _ = runs
    drift = timeline.drift
    late = drift.loc[SWAP // 2:, TIED]  # after the first learning
    assert SWAP < late.idxmax() <= SWAP + 4 * EVERY, late.round(2).to_dict()
    assert late.max() >= 0.75  # its top images changed (red -> maroon)
    assert drift.loc[WINDOW, TIED].max() > drift.loc[WINDOW, OTHERS].max().max()


def test_the_other_neurons_do_not_drift_at_the_swap(runs):
    timeline, _ = runs
    window = timeline.drift.loc[WINDOW, OTHERS]
    assert window.max().max() <= 0.25, window.round(2)


def test_without_the_swap_the_tied_neuron_stays(runs):
    _, control = runs
    assert control.steps.tolist() == [SWAP - 1, 130, 140, 150, 160]
    assert control.drift.loc[SWAP:, TIED].max() <= 0.25


def test_the_tied_neuron_settles_after_the_swap_and_the_others_before(runs):
    timeline, _ = runs
    settled = timeline.settled(threshold=0.7)
    assert settled[TIED] > SWAP
    assert (settled[OTHERS] < SWAP).all(), settled[OTHERS]


def test_class_accuracy_shows_the_swap(runs):
    """The probe holds red and maroon images of class 0. Before the swap the model calls both
    class 0 (maroon is dark red to it); after it, red images count for other classes, so class
    0 falls to about the maroon half while the other classes stay (21 of its 32 probe images on
    one AVX-512 CPU, 0.66: the training's last bits differ between CPUs' kernels)."""
    timeline, _ = runs
    accuracy = timeline.accuracy
    before, after = accuracy.loc[SWAP - EVERY], accuracy.loc[LAST]
    assert before["red"] > 0.9 and 0.3 <= after["red"] <= 0.7
    for name in CLASSES[1:]:
        assert before[name] > 0.9 and after[name] > 0.9, name
