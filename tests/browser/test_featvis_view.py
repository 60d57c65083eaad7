"""Feature visualisations in the exported page: the graph's "feature vis." switch puts a node's
visualisation on its tile (a node without one keeps its patch; cluster nodes too), and the hover
card and the gallery show it beside the patches."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import fake_results, small_atlas
from pages import pixels

MAGENTA = (255, 0, 255)  # no patch of the playground is this colour


def magenta_share(png: bytes) -> float:
    """The share of a screenshot's pixels that are (close to) magenta."""
    rgb = pixels(png)
    return float((np.abs(rgb - MAGENTA).max(axis=2) < 40).mean())


def solid_visualizations(atlas, keys):
    """A stand-in FeatureVisualizations: a magenta image for each of ``keys`` (neuron or
    cluster ids of the graphs)."""
    from notebookcarto.featvis import FeatureVisualizations

    n = len(keys)
    kinds = ["cluster" if k.startswith("cluster:") else "neuron" for k in keys]
    graphs = atlas.get("cluster_graphs").graphs.values()
    cluster_layer = {node["id"]: node["layer"] for g in graphs for node in g["nodes"]}
    layers = [cluster_layer[k] if kind == "cluster" else atlas.parse_neuron(k)[0]
              for k, kind in zip(keys, kinds)]
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:] = MAGENTA
    nan = np.full(n, np.nan, np.float32)
    return FeatureVisualizations(list(keys), kinds, layers, list(keys), images,
                                 np.zeros((n, 3, 32, 32), np.float32), np.ones(n, np.float32),
                                 nan, nan, np.full((n, 1), -1, np.int64), list(range(n)), "vital")


@pytest.fixture(scope="module")
def featvis_export(tmp_path_factory):
    """(atlas, path, shown, bare): visualisations of every node of the first class's
    attribution graph but ``bare`` (a node of the top row), and of its cluster graph's nodes."""
    atlas, _, _ = small_atlas(n=160, seed=4)
    fake_results(atlas)
    name = atlas.class_names[0]
    nodes = atlas.get("attribution_graphs").graphs[name]["nodes"]
    bare = [n["id"] for n in nodes if n["layer"] == atlas.layers[-1]][-1]
    clusters = [n["id"] for n in atlas.get("cluster_graphs").graphs[name]["nodes"]]
    shown = [n["id"] for n in nodes if n["id"] != bare and n["layer"] == atlas.layers[-1]]
    keys = [n["id"] for n in nodes if n["id"] != bare] + clusters
    atlas.attach(solid_visualizations(atlas, keys))
    path = tmp_path_factory.mktemp("featvis") / "featvis.html"
    atlas.to_html(path)
    return atlas, path, shown[0], bare


def test_switch_card_and_gallery_show_the_visualisation(open_page, featvis_export):
    _, path, shown, bare = featvis_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    tile = f".nc-graph .nc-node[data-id='{shown}']"
    assert p.locator(".nc-graph .nc-tiles [data-tiles='patches']").get_attribute("aria-pressed") == "true"
    assert p.locator(f"{tile} .nc-fv").count() == 0  # patches until switched
    assert magenta_share(p.locator(tile).screenshot()) < 0.05

    p.click(".nc-graph .nc-tiles [data-tiles='featvis']")
    p.wait_for_selector(f"{tile} .nc-fv")
    assert p.locator(".nc-graph .nc-tiles [data-tiles='featvis']").get_attribute("aria-pressed") == "true"
    assert magenta_share(p.locator(f"{tile} .nc-fv").screenshot()) > 0.9
    kept = p.locator(f".nc-graph .nc-node[data-id='{bare}']")
    assert kept.locator(".nc-fv").count() == 0 and kept.locator(".nc-patch").count() == 1

    p.hover(tile)
    card = p.locator(".nc-gcard")
    card.locator(".nc-fv").wait_for()
    assert magenta_share(card.locator(".nc-fv").screenshot()) > 0.9
    patches = card.locator(".nc-grid .nc-patch")
    assert patches.count() >= 1 and magenta_share(patches.first.screenshot()) < 0.05
    page.shot("featvis-card", ".nc-graph")

    p.click(tile)
    row = p.locator(f".nc-gallery-row[data-neuron='{shown}']")
    row.locator(".nc-fv").wait_for()
    assert row.locator(".nc-fig").count() >= 2  # the visualisation, then the patches
    assert magenta_share(row.locator(".nc-fv").screenshot()) > 0.9

    # cluster nodes too: on the tile, and the selected cluster's in the gallery
    p.select_option(".nc-graph select", "cluster")
    cluster = p.locator(".nc-graph .nc-node[data-id^='cluster:']").first
    cluster.locator(".nc-fv").wait_for()
    cluster.click()
    p.locator(".nc-gallery .nc-cluster-fv .nc-fv").wait_for()
    assert not page.errors and not page.blocked
