"""The SAG and XNN panels of the explanation view in the exported Explorer: one masked thumbnail
per node of the chosen image's SAG (a note for an image without one), one heatmap per x-feature
of its class with the nearest neurons (a click selects one in the scatter), labels as text."""

from __future__ import annotations

import pytest

from explained import SAG_NODES, explained_atlas, with_sag_and_xnn
from helpers import XSS
from test_xss import dirty

VIEW = ".nc-explanation"
# the RGB of the root's thumbnail at its bottom right corner (patch 15, not shown: black)
CORNER = """() => {
  const c = document.querySelector('.nc-sag-root canvas');
  const d = c.getContext('2d').getImageData(c.width - 2, c.height - 2, 1, 1).data;
  return Array.from(d.slice(0, 3));
}"""


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    atlas, found = explained_atlas()
    with_sag_and_xnn(atlas, found)
    path = tmp_path_factory.mktemp("sag_xnn") / "explanation.html"
    atlas.to_html(path)
    return atlas, path


def choose(page, image):
    page.page.select_option(f"{VIEW} .nc-explanation-image", str(image))
    page.page.wait_for_selector(f".nc-explanation-canvas[data-image='{image}']")


def test_the_sag_panel_draws_each_node(open_page, export):
    _, path = export
    page = open_page(path, width=1400, height=1000)
    p = page.page
    p.wait_for_selector(f"{VIEW}[data-ready='1']")
    for image, n in SAG_NODES.items():
        choose(page, image)
        assert p.locator(".nc-sag .nc-sag-node canvas").count() == n
        assert p.locator(".nc-sag-root").count() == 1
        assert p.locator(".nc-sag-edges line").count() == n - 1
    choose(page, 0)
    assert p.locator(".nc-sag-label").all_text_contents() == ["95%", "89%", "32%"]
    assert page.js(CORNER) == [0, 0, 0]
    page.shot("explanation_sag", ".nc-sag")
    choose(page, 7)
    assert p.locator(".nc-sag canvas").count() == 0
    assert p.locator(".nc-sag-none").inner_text() == "No structured attention graph for image 7."
    assert not page.errors and not page.blocked


def test_the_xnn_panel_shows_the_class_features(open_page, export):
    atlas, path = export
    page = open_page(path, width=1400, height=1000)
    p = page.page
    p.wait_for_selector(f"{VIEW}[data-ready='1']")
    # image 0 is not shown by the XNN: the heatmaps are over its first shown image, 9
    assert p.locator(".nc-xnn .nc-xnn-map").count() == 2
    head = p.locator(".nc-xnn-head").inner_text()
    assert "over image 9" in head and "R² 0.910" in head
    choose(page, 5)
    assert p.locator(".nc-xnn .nc-xnn-map").count() == 2
    assert "over image 5;" in p.locator(".nc-xnn-head").inner_text()
    # three neurons (block9:1 is not in the atlas); the hostile label is text
    ids = p.locator(".nc-xnn-neuron").evaluate_all("(els) => els.map((e) => e.dataset.neuron)")
    assert ids == ["block2:3", "block2:7", "block2:0"]
    assert p.locator(".nc-xnn-neuron .nc-unit-concept").first.inner_text() == XSS
    assert dirty(page) == []
    p.click(".nc-xnn-neuron[data-neuron='block2:7']")
    page.wait_selected(f"s.length === 1 && s[0] === {atlas.neuron_ids.index('block2:7')}")
    p.wait_for_selector(".nc-xnn-neuron.nc-on[data-neuron='block2:7']")
    page.shot("explanation_xnn", ".nc-xnn")
    assert not page.errors and not page.blocked
