"""`notebookcarto demo --quick` end to end, through the console entry point."""

import subprocess
import sys

import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.datasets import CONCEPTS


def test_demo_quick_writes_a_loadable_atlas_and_prints_a_summary(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "notebookcarto", "demo", "--quick", "--out",
                          str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "model accuracy on 400 held-out images" in run.stdout
    assert "top neurons per class" in run.stdout
    atlas = Atlas.load(out / "atlas")
    assert atlas.layers == ["block1", "block2", "block3", "block4"]
    assert len(atlas.class_names) == 8 and atlas.stats.n_images == 400
    assert atlas.get("exemplar_concepts").shares.shape == (176, len(CONCEPTS))
    from notebookcarto.atlas.sections import SCHEMAS

    # every map ran and loads back typed; explanations (heatmaps, SAGs, x-features) and feature
    # visualisations are made on demand for chosen images, classes and neurons, not by the demo
    assert set(atlas.results) == set(SCHEMAS) - {"explanation", "sag", "xnn",
                                                 "feature_visualizations"}
    for name, result in atlas.results.items():
        assert type(result).section == name
    html = (out / "atlas.html").read_text()
    assert html.lower().startswith("<!doctype html>") and "Content-Security-Policy" in html
    assert (out / "playground_cnn_quick.pt").is_file()


def test_demo_rejects_an_unavailable_cuda_device(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = subprocess.run([sys.executable, "-m", "notebookcarto", "demo", "--device", "cuda",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "CUDA is not available" in run.stderr
