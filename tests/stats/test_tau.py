"""Summit's tau on any width: ``tau="auto"`` keeps several channels per image on narrow layers,
where Summit's 0.03 makes A an argmax histogram; the mean prefix length per layer in the atlas
summary; the setting saved with the atlas."""

import numpy as np
import pytest
import torch
from torch import nn

from notebookcarto import Atlas, collect_stats
from notebookcarto.stats.reducers import AUTO_TAU_CHANNELS, layer_tau

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_tau():
    assert AUTO_TAU_CHANNELS == 8
    assert layer_tau("auto", 16) == 0.5 and layer_tau("auto", 64) == 0.125
    assert layer_tau("auto", 4) == 1.0  # capped: every channel
    assert layer_tau("auto", 600) == pytest.approx(0.0133, abs=1e-4)  # Summit's widths
    assert layer_tau(0.03, 16) == 0.03  # a number is used as given
    for bad in (0, 1.5, "high", True, None):
        with pytest.raises(ValueError, match="tau must be"):
            layer_tau(bad, 16)


@pytest.fixture(scope="module")
def narrow():
    """Two ReLU conv layers of 16 and 64 channels on random images, with labels."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 64, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 4)).eval()
    x = torch.rand(120, 3, 12, 12)
    y = torch.arange(120) % 4
    return model, [(x[i:i + 40], y[i:i + 40]) for i in range(0, 120, 40)], x


def prefix_lengths(model, x, layer, tau):
    """Brute force: per image, Summit's prefix length over the layer's spatial maxima."""
    with torch.no_grad():
        z = model[: int(layer) + 1](x).amax((2, 3)).clamp(min=0)
    lengths = []
    for a in z:
        p = np.sort((a / a.sum()).numpy())[::-1]
        before = np.cumsum(p) - p
        lengths.append(int(((before < tau) & (p > 0)).sum()))
    return np.array(lengths)


def test_auto_keeps_several_channels_where_summits_tau_keeps_one(narrow):
    model, batches, x = narrow
    auto = collect_stats(model, batches, ["1", "3"], top_n=5, progress=False)
    summit = collect_stats(model, batches, ["1", "3"], top_n=5, tau=0.03, progress=False)
    assert auto.config["tau"] == "auto"
    for layer, channels in (("1", 16), ("3", 64)):
        got = auto.layers[layer]
        assert got.tau == layer_tau("auto", channels)
        want = prefix_lengths(model, x, layer, got.tau)
        assert got.mean_prefix == pytest.approx(want.mean())
        assert got.mean_prefix >= 3
        # Summit's 0.03 on 16 channels: the strongest channel alone already holds more
        assert summit.layers[layer].mean_prefix == pytest.approx(
            prefix_lengths(model, x, layer, 0.03).mean())
    assert summit.layers["1"].mean_prefix == 1.0


def test_atlas_summary_round_trip(narrow, tmp_path):
    model, batches, _ = narrow
    atlas = Atlas.build(model, batches, ["1", "3"], top_n=5, progress=False)
    table = atlas.summary()
    assert list(table.columns) == ["channels", "map", "tau", "mean_prefix"]
    assert table.loc["1", "tau"] == 0.5 and table.loc["3", "map"] == "12x12"
    assert table["mean_prefix"].min() >= 3
    text = str(atlas)
    assert text.splitlines()[0] == repr(atlas) and "mean_prefix" in text
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas")
    assert back.stats.config["tau"] == "auto" and back.summary().equals(table)
    unlabelled = Atlas.build(model, [b[0] for b in batches], ["1"], top_n=5, progress=False)
    assert unlabelled.summary()["mean_prefix"].isna().all()
