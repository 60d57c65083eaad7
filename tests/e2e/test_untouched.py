"""Every public entry point that runs a model leaves the model, the global RNG and torch's
thread count as the user left them (``helpers.untouched``): here on a playground CNN in train
mode, with gradients set and one thread, over tensor data (no loader draws of its own)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from helpers import untouched
from notebookcarto import Atlas, analyses
from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
from notebookcarto.explain import explain
from notebookcarto.featvis import visualize
from notebookcarto.models import PlaygroundCNN
from notebookcarto.monitor import Monitor


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = ConceptPlayground(n=64, size=32, seed=3)
    images, labels = data.tensors()
    torch.manual_seed(0)
    model = PlaygroundCNN(num_classes=len(data.classes), width=8)
    model(images[:4]).sum().backward()  # gradients set, model in train mode
    model.block2.requires_grad_(False)
    with torch.no_grad():
        atlas = Atlas.build(model, (images, labels), class_names=data.classes, top_n=8,
                            progress=False)
    concepts = PlaygroundConcepts(ConceptPlayground(n=16, size=32, seed=4))
    yield model, (images, labels), atlas, concepts
    torch.set_num_threads(threads)


ENTRY_POINTS = {
    "Atlas.build": lambda m, d, a, c: Atlas.build(m, d, progress=False),
    "collect_stats": lambda m, d, a, c: __import__("notebookcarto").collect_stats(
        m, d, a.layers, progress=False),
    "example_patches": lambda m, d, a, c: analyses.example_patches(a, m, d, progress=False),
    "receptive_fields": lambda m, d, a, c: analyses.receptive_fields(m, a.layers, (3, 32, 32)),
    "cluster_neurons": lambda m, d, a, c: analyses.cluster_neurons(a, m, d, rows=4, bands=20,
                                                                   progress=False),
    "embed_neurons": lambda m, d, a, c: analyses.embed_neurons(a, epochs=1, progress=False),
    "count_influence": lambda m, d, a, c: analyses.count_influence(a, m, d, progress=False),
    "collect_influence(gradient)": lambda m, d, a, c: analyses.collect_influence(
        m, d, [(a.layers[0], a.layers[1])], estimator="gradient", progress=False),
    "embed_classes": lambda m, d, a, c: analyses.embed_classes(a, n_epochs=20),
    "dissect": lambda m, d, a, c: analyses.dissect(m, c, a.layers, progress=False),
    "dissection_gallery": lambda m, d, a, c: analyses.dissection_gallery(
        m, c, analyses.dissect(m, c, a.layers[-1:], progress=False), n_images=2),
    "visualize(vital)": lambda m, d, a, c: visualize(
        m, [f"{a.layers[-1]}:0", "class:1"], data=d, atlas=a, steps=2, warmup=1, progress=False),
    "visualize(lucent)": lambda m, d, a, c: visualize(
        m, [f"{a.layers[0]}:1"], method="lucent", image_size=(32, 32), steps=2, progress=False),
    "Monitor.observe": lambda m, d, a, c: observe_once(m, d, a),
    "explain": lambda m, d, a, c: explain(m, d, [0, 1], atlas=a, options={"iterations": 1},
                                          progress=False),
}


def observe_once(model, data, atlas):
    with tempfile.TemporaryDirectory() as folder:
        monitor = Monitor(Path(folder) / "run", probe=data, layers=atlas.layers, every=1)
        monitor.observe(model, 0)
        monitor.close()


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_entry_point_leaves_model_rng_and_threads(setup, name):
    model, data, atlas, concepts = setup
    with untouched(model):
        ENTRY_POINTS[name](model, data, atlas, concepts)


def test_first_numba_and_umap_calls_in_a_process_keep_the_thread_count():
    """numba's threading layer sets the OpenMP thread count when it first starts: only a fresh
    process shows it."""
    import subprocess
    import sys

    script = """
import torch
torch.set_num_threads(1)
from notebookcarto import Atlas, analyses
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.models import PlaygroundCNN
data = ConceptPlayground(n=40, size=32, seed=1)
images, labels = data.tensors()
torch.manual_seed(0)
model = PlaygroundCNN(num_classes=len(data.classes), width=8).eval()
atlas = Atlas.build(model, (images, labels), top_n=5, progress=False)
analyses.count_influence(atlas, model, (images, labels), progress=False)
print("influence", torch.get_num_threads())
analyses.embed_neurons(atlas, epochs=1, progress=False)
print("embedding", torch.get_num_threads())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["influence", "1", "embedding", "1"]
