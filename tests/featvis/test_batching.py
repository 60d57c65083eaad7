"""Many targets in one batch give exactly the images each gives alone, with the same seeds."""

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.analyses import Clusters, cluster_table
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.featvis import cluster_targets, visualize
from notebookcarto.models import PlaygroundCNN

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    """A float64 playground CNN (float64: batched and single convolutions then agree to
    rounding, so the comparison can be exact) and an atlas with one cluster."""
    data = ConceptPlayground(n=120, size=32, seed=3)
    x, y = data.tensors()
    torch.manual_seed(0)
    model = PlaygroundCNN(len(data.classes), width=4).double().eval()
    x = x.double()
    atlas = Atlas.build(model, (x, y), ["block1", "block2", "block3"],
                        class_names=data.classes, top_n=8, progress=False)
    labels = np.full(len(atlas.neuron_ids), -1)
    labels[atlas.neuron_index(["block3:1", "block3:4", "block3:6"])] = 0
    atlas.attach(Clusters(labels, labels.copy(), atlas.neuron_ids,
                          cluster_table(atlas, labels)))
    return model, (x, y), atlas


@pytest.mark.parametrize("method, options", [
    ("vital", dict(steps=6, warmup=2, n_reference=5)),
    ("lucent", dict(steps=6)),
])
def test_batched_equals_one_at_a_time(small, method, options):
    model, data, atlas = small
    targets = ["block3:2", "class:1", "block2:5"] + cluster_targets(atlas)
    batched = visualize(model, targets, method=method, data=data, atlas=atlas, seed=7,
                        progress=False, **options)
    assert batched.targets == targets
    for i, key in enumerate(targets):
        alone = visualize(model, [key], method=method, data=data, atlas=atlas, seed=7,
                          progress=False, **options)
        assert alone.seeds == [batched.seeds[i]]
        np.testing.assert_allclose(alone.inputs[0], batched.inputs[i], rtol=0, atol=1e-9)
        np.testing.assert_allclose(alone.activation[0], batched.activation[i], rtol=1e-9)


def test_small_batches_equal_one_batch(small):
    model, data, atlas = small
    targets = ["block3:2", "class:1", "block2:5", "block1:0"]
    options = dict(steps=4, warmup=1, n_reference=5, layers=["block1", "block2", "block3"],
                   layer_weights={"block1": 1.0, "block2": 1.0, "block3": 1.0})
    one = visualize(model, targets, data=data, atlas=atlas, progress=False, **options)
    pairs = visualize(model, targets, data=data, atlas=atlas, progress=False, batch_size=2,
                      **options)
    np.testing.assert_allclose(one.inputs, pairs.inputs, rtol=0, atol=1e-9)


def test_seed_changes_the_images_and_repeats_them(small):
    model, data, atlas = small
    run = dict(method="lucent", data=data, atlas=atlas, steps=3, progress=False)
    a = visualize(model, ["block3:2"], seed=1, **run)
    b = visualize(model, ["block3:2"], seed=1, **run)
    c = visualize(model, ["block3:2"], seed=2, **run)
    assert np.array_equal(a.inputs, b.inputs) and not np.allclose(a.inputs, c.inputs)
