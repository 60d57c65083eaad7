"""Colours: layer colours stay distinct (also for colour-blind readers) for the number of layers
shown, the lowest class relevance stays visible on the canvas, legends are small and fold away.
"""

from __future__ import annotations

import numpy as np
import pytest

from pages import contrast, min_distance, parse_colour

PALETTE = "document.querySelector('.nc-scatter').ncScatter.palette()"
RESNET20 = ["layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1", "layer2.2", "layer3.0",
            "layer3.1", "layer3.2"]


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """Exports of points in 2 to 9 layers (the ResNet-20's blocks are nine)."""
    from notebookcarto.views import ProjectionScatter

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("layers")
    paths = {}
    for n in (2, 5, 7, 9):
        names = RESNET20[:n] if n == 9 else [f"block{i}" for i in range(n)]
        sizes = [40] * n
        xy = rng.normal(size=(sum(sizes), 2)).astype(np.float32)
        view = ProjectionScatter.from_points(xy, layers=names, layer_sizes=sizes, point_size=5)
        paths[n] = view.save_html(folder / f"layers{n}.html")
        view.close()
    return paths


@pytest.mark.parametrize("dark", [False, True])
@pytest.mark.parametrize("n", [2, 5, 7, 9])
def test_layer_colours_are_distinct(open_page, layered, n, dark):
    page = open_page(layered[n], width=900, height=700, dark=dark)
    palette = page.js(PALETTE)
    colours = palette["points"]
    assert len(colours) == n
    swatches = page.js("[...document.querySelectorAll('.nc-legend .nc-swatch')]"
                       ".map((s) => getComputedStyle(s).backgroundColor)")
    assert [parse_colour(s)[:3] for s in swatches] == [parse_colour(c)[:3] for c in colours]
    assert min_distance(colours) >= 13, colours
    for vision in ("deuteranopia", "protanopia"):
        assert min_distance(colours, vision) >= 9, (vision, colours)
    bg = parse_colour(palette["background"])
    for c in colours:  # every point stands out from the canvas
        assert contrast(parse_colour(c), bg) >= 1.6, (c, palette["background"])
    if n == 9:
        page.shot(f"layers-9-{'dark' if dark else 'light'}", ".nc-scatter")


@pytest.mark.parametrize("dark", [False, True])
def test_low_class_relevance_is_visible(open_page, playground_export, dark):
    _, path = playground_export
    page = open_page(path, width=1400, height=900, dark=dark)
    page.page.select_option(".nc-scatter .nc-colour", "class relevance")
    page.page.wait_for_function(f"{PALETTE}.by === 'class relevance'")
    palette = page.js(PALETTE)
    bg = parse_colour(palette["background"])
    lowest = parse_colour(palette["points"][0])
    assert contrast(lowest, bg) >= 1.5, (palette["points"][0], palette["background"])
    # and the ramp climbs away from the background
    ratios = [contrast(parse_colour(c), bg) for c in palette["points"]]
    assert ratios[-1] > ratios[0] + 2


def legend_area(page):
    legend = page.page.locator(".nc-scatter .nc-legend").bounding_box()
    canvas = page.canvas_box()
    return legend["width"] * legend["height"] / (canvas["width"] * canvas["height"])


def test_legend_is_small_and_folds(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    p.select_option(".nc-scatter .nc-colour", "concept")
    p.wait_for_function(f"{PALETTE}.by === 'concept'")
    assert legend_area(page) <= 0.1, legend_area(page)
    assert p.locator(".nc-legend .nc-legend-item").count() >= 6  # the concepts, none hidden
    p.locator(".nc-legend .nc-legend-toggle").click()
    p.wait_for_selector(".nc-legend.nc-collapsed")
    assert legend_area(page) <= 0.03
    assert not p.locator(".nc-legend .nc-legend-item").first.is_visible()
    # folded stays folded when the colouring changes, and opens again
    p.select_option(".nc-scatter .nc-colour", "layer")
    p.wait_for_function(f"{PALETTE}.by === 'layer'")
    assert p.locator(".nc-legend.nc-collapsed").count() == 1
    p.locator(".nc-legend .nc-legend-toggle").click()
    p.wait_for_selector(".nc-legend:not(.nc-collapsed) .nc-legend-item")
