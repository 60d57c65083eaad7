"""The graph view on the playground: tiles at least 40 px and labels readable at the default
zoom, counts as integers, the dissection concept on a node when there is one; a pinned card goes
when the graph or the selection changes elsewhere."""

from __future__ import annotations

import re

GRAPH = "document.querySelector('.nc-graph')"


# the font size of an element's text on screen (its CSS size times the zoom it is drawn at)
SCREEN_FONT = """(e) => e ? parseFloat(getComputedStyle(e).fontSize) * e.getBoundingClientRect().height
    / (e.offsetHeight || 1) : 0"""


def tiles(page):
    """On-screen sizes of the node tiles and of their labels' text."""
    return page.js(f"""() => {{ const font = {SCREEN_FONT};
      return [...{GRAPH}.querySelectorAll('.nc-node')].map((n) => {{
        const r = n.getBoundingClientRect();
        const label = n.querySelector('.nc-node-label');
        return {{ id: n.dataset.id, w: r.width, h: r.height, label: label ? label.textContent : '',
                 font: font(label), concept: n.querySelector('.nc-node-concept')?.textContent || '' }};
      }}); }}""")


def test_tiles_and_labels_are_readable(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    nodes = tiles(page)
    assert nodes, "no nodes"
    assert min(n["w"] for n in nodes) >= 40, sorted(n["w"] for n in nodes)[:5]
    assert min(n["font"] for n in nodes) >= 10.5
    layer_font = page.js(f"() => ({SCREEN_FONT})({GRAPH}.querySelector('.nc-layer-label'))")
    assert layer_font >= 10.5
    # the node shows the concept the dissection gives its neuron
    concept = atlas.neurons["concept"]
    with_concept = [n for n in nodes if concept.get(n["id"], "")]
    assert with_concept, "no node with a concept"
    for n in with_concept:
        assert n["concept"] == concept[n["id"]]
    for n in nodes:
        if not concept.get(n["id"], ""):
            assert n["concept"] == ""
    page.shot("graph-readable", ".nc-graph")


def test_counts_are_integers(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    node = p.locator(".nc-graph .nc-node").first
    node.hover()
    sub = p.locator(".nc-gcard .nc-card-sub").first.inner_text()
    count = re.search(r"count ([\d.,]+)", sub).group(1)
    assert re.fullmatch(r"\d[\d,]*", count), sub
    value = p.locator(".nc-graph .nc-min-count ~ .nc-value").inner_text()
    assert re.fullmatch(r"\d+", value), value
    step = p.get_attribute(".nc-graph .nc-min-count", "step")
    assert float(step) == int(float(step)), step


def pin_a_node(p):
    node = p.locator(".nc-graph .nc-node").first
    node.click()
    p.wait_for_selector(".nc-gcard.nc-pinned")
    p.mouse.move(2, 2)  # leave the node: the pinned card stays
    assert p.locator(".nc-gcard.nc-pinned").is_visible()


def test_pinned_card_goes_with_the_graph(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    pin_a_node(p)
    p.select_option(".nc-graph select", "cluster")
    p.wait_for_selector(".nc-graph .nc-node[data-id^='cluster:']")
    assert not p.locator(".nc-gcard").is_visible(), "the card of a node of the other graph stays"


def test_pinned_card_goes_with_a_selection_elsewhere(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    pin_a_node(p)
    p.locator(".nc-scatter button[data-tool='lasso']").click()
    box = page.canvas_box()
    x0, y0 = box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1
    x1, y1 = box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.9
    p.mouse.move(x0, y0)
    p.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 3)]:
        p.mouse.move(x, y, steps=8)
    p.mouse.up()
    page.wait_selected("s.length > 5")
    assert not p.locator(".nc-gcard").is_visible(), "the card of the graph's old selection stays"
