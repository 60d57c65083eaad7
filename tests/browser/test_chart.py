"""The Plotly chart of the Explorer in the offline export: it shows the initially selected class,
counts of neurons with integer ticks, long layer names without squashing the plot, and titles
that overlap nothing, at every width."""

from __future__ import annotations

import re

import numpy as np
import pytest

from helpers import atlas_from_aggregation
from pages import boxes_overlap, parse_colour

CHART = "document.querySelector('.nc-slot[data-part=chart]')"
LONG = ["features.denseblock1.denselayer1.conv1", "features.denseblock2.denselayer12.conv2",
        "features.denseblock3.denselayer24.conv2", "features.denseblock4.denselayer16.conv2",
        "features.transition3.conv", "classifier.head.projection"]


@pytest.fixture(scope="module")
def long_names(tmp_path_factory):
    """An atlas (no model) of six layers with long module paths and twelve classes."""
    rng = np.random.default_rng(0)
    atlas = atlas_from_aggregation({name: rng.integers(0, 9, size=(12, 6)) for name in LONG})
    path = tmp_path_factory.mktemp("long") / "long.html"
    atlas.to_html(path)
    return atlas, path


def bar_colours(page):
    """The fill of every bar of the class chart (trace 0)."""
    return page.js(f"[...{CHART}.querySelectorAll('.trace.bars')[0].querySelectorAll('.point path')].map((p) => getComputedStyle(p).fill)")


def count_ticks(page):
    """The tick labels of the axis that counts the selected neurons per layer (trace 1)."""
    return page.js(f"""() => {{ const t = {CHART}._fullData[1];
        const axis = t.orientation === 'h' ? t.xaxis : t.yaxis;
        return [...{CHART}.querySelectorAll(`.${{axis}}tick text`)].map((e) => e.textContent); }}""")


def texts(page):
    """Boxes of the chart's titles and tick labels, and of the figure."""
    return page.js(f"""() => {{
      const box = (e) => {{ const r = e.getBoundingClientRect(); return {{ x: r.x, y: r.y, width: r.width, height: r.height, text: e.textContent }}; }};
      const shown = (b) => b.width > 0 && b.height > 0;
      const svg = {CHART}.querySelector('.main-svg');
      return {{ figure: box(svg),
        titles: [...{CHART}.querySelectorAll('.annotation-text, .gtitle, .g-xtitle text, .g-ytitle text, .g-x2title text, .g-y2title text')].filter((t) => t.textContent).map(box).filter(shown),
        ticks: [...{CHART}.querySelectorAll('.xtick text, .ytick text, .x2tick text, .y2tick text')].filter((t) => t.textContent).map(box).filter(shown),
        plots: [...{CHART}.querySelectorAll('.cartesianlayer .subplot .bg')].map(box) }};
    }}""")


def test_initial_class_is_highlighted(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    page.page.wait_for_selector(".nc-slot[data-part=chart] .trace.bars .point", state="attached")
    fills = bar_colours(page)
    assert len(fills) == len(atlas.class_names)
    chosen = page.js("document.querySelector('.nc-class-row.nc-on').dataset.cls")
    assert chosen == "0"
    assert len({f for i, f in enumerate(fills) if i != 0}) == 1, fills
    assert fills[0] != fills[1], "the selected class is not highlighted"
    page.page.locator(".nc-class-row[data-cls='3']").click()
    page.page.wait_for_function(f"(() => {{ const f = {CHART}.querySelectorAll('.trace.bars')[0].querySelectorAll('.point path');"
                                " return getComputedStyle(f[3]).fill !== getComputedStyle(f[0]).fill; })()")


def test_counts_have_integer_ticks(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    page.page.wait_for_selector(".nc-slot[data-part=chart] .trace.bars .point", state="attached")
    for step in range(3):
        ticks = [t for t in count_ticks(page) if t]
        assert ticks and all(re.fullmatch(r"\d+", t.replace(",", "")) for t in ticks), ticks
        page.click_point(atlas.neuron_ids.index(f"{atlas.layers[2]}:{step}"))
        page.page.wait_for_timeout(200)


@pytest.mark.parametrize("width, container", [(1400, None), (1400, 1000), (640, None),
                                              (1400, 760)])
def test_titles_overlap_nothing(open_page, long_names, playground_export, width, container):
    for atlas, path in (playground_export, long_names):
        page = open_page(path, width=width, height=900, container=container)
        page.page.wait_for_selector(".nc-slot[data-part=chart] .trace.bars .point", state="attached")
        page.page.wait_for_timeout(300)
        found = texts(page)
        figure = found["figure"]
        for title in found["titles"]:
            for other in found["titles"] + found["ticks"]:
                if other is not title:
                    assert not boxes_overlap(title, other, margin=1), (title, other)
            assert title["x"] >= figure["x"] - 1 and title["x"] + title["width"] <= figure["x"] + figure["width"] + 1, title
        for tick in found["ticks"]:  # nothing cut at the figure's edges
            assert tick["x"] >= figure["x"] - 1 and tick["x"] + tick["width"] <= figure["x"] + figure["width"] + 1, tick
        for plot in found["plots"]:  # no plot squashed by its labels
            assert plot["width"] >= 120 and plot["height"] >= 60, found["plots"]
        if atlas.layers == LONG:
            shown = " ".join(t["text"] for t in found["ticks"])
            assert "denseblock4" in shown or "…" in shown
        page.shot(f"chart-{width}-{container or 'window'}-{'long' if atlas.layers == LONG else 'playground'}",
                  ".nc-slot[data-part=chart]")
        page.close()


def test_chart_follows_the_theme(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=900, dark=True)
    page.page.wait_for_selector(".nc-slot[data-part=chart] .trace.bars .point", state="attached")
    page.page.wait_for_timeout(300)
    paper = parse_colour(page.js(f"getComputedStyle({CHART}.querySelector('.main-svg')).backgroundColor"))
    assert paper[3] == 0 or sum(paper[:3]) < 120, paper
