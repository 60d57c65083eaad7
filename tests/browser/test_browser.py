"""The offline export in headless Chromium, with every non-file request aborted.

Checks that the views render (DOM, and the WebGL canvas by its pixels), that hover shows example
patches, that a click in the graph selects the neuron in the scatter and the gallery, that the
filters, lasso, class embedding, sidebar and heatmap overlay work, and that user text is never
run as HTML. Screenshots go to tests/artifacts/ for people to look at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import ARTIFACTS, HOSTILE, TIMEOUT, XSS
from pages import Page, ink

@pytest.fixture(scope="module")
def exported(hostile_export):
    return hostile_export


@pytest.fixture
def page(browser, exported):
    opened = Page(browser, exported[1], width=1500, height=1150)
    yield opened
    opened.close()


def index_of(atlas, neuron):
    return atlas.neuron_ids.index(neuron)


def test_views_render_offline(page, exported):
    atlas, _ = exported
    p = page.page
    for part in ("sidebar", "scatter", "graph", "gallery", "chart"):
        assert p.locator(f".nc-slot[data-part='{part}']").count() == 1
    assert int(p.get_attribute(".nc-scatter", "data-points")) == len(atlas.neuron_ids)
    assert int(p.get_attribute(".nc-graph", "data-nodes")) > 0
    assert int(p.get_attribute(".nc-graph", "data-edges")) > 0
    assert p.locator(".nc-class-row").count() == len(atlas.class_names)
    p.wait_for_selector(".nc-slot[data-part='chart'] .main-svg")  # Plotly drew its chart
    canvas = p.locator(".nc-scatter canvas").first.screenshot()
    assert ink(canvas) > 150, "the WebGL canvas looks blank"
    assert ink(p.locator(".nc-graph .nc-viewport").screenshot()) > 500
    page.shot("export")
    assert page.blocked == [], f"the page tried the network: {page.blocked}"
    assert not [e for e in page.errors if "GL Driver" not in e], page.errors


def test_user_text_is_never_html(page, exported):
    p = page.page
    assert p.locator("img[src='x']").count() == 0
    assert page.dialogs == []
    names = p.locator(".nc-class-name").all_text_contents()
    assert XSS in names
    assert p.title() == f"test {HOSTILE[1]} {XSS}"
    p.select_option(".nc-scatter select:not(.nc-filter)", "concept")
    p.wait_for_timeout(300)
    assert any(XSS in t for t in p.locator(".nc-legend").all_text_contents())
    p.locator(".nc-class-search").fill("img")
    assert XSS in p.locator(".nc-picker-list").inner_text()
    # the layer name: in the legend, the graph's layer labels, the hover card
    p.select_option(".nc-scatter select:not(.nc-filter)", "layer")
    p.wait_for_function(f"document.querySelector('.nc-legend').textContent.includes({XSS!r})")
    assert XSS in p.locator(".nc-layer-label").all_text_contents()
    hover_point(page, 0)
    p.locator(".nc-scatter .nc-card").wait_for(state="visible")
    assert p.locator(".nc-scatter .nc-card .nc-card-title").inner_text() == f"{XSS}:0"
    assert p.locator("img[src='x']").count() == 0 and page.dialogs == []


def hover_point(page, i):
    return page.hover_point(i)


def test_hover_shows_patches(page, exported):
    atlas, _ = exported
    p = page.page
    i = index_of(atlas, atlas.layers[-1] + ":1")
    hover_point(page, i)
    card = p.locator(".nc-scatter .nc-card")
    card.wait_for(state="visible")
    assert atlas.neuron_ids[i] in card.inner_text() or card.locator(".nc-card-title").inner_text()
    assert card.locator(".nc-patch").count() == 9
    style = card.locator(".nc-patch").first.evaluate("e => getComputedStyle(e).backgroundImage")
    assert style.startswith('url("blob:')
    # the gallery follows the hover while nothing is selected
    gallery = p.locator(".nc-gallery-row")
    gallery.first.wait_for()
    hovered = card.locator(".nc-card-title").inner_text()
    assert gallery.first.get_attribute("data-neuron") == hovered
    assert ink(card.screenshot()) > 200
    cluster = atlas.get("clusters").labels
    mates = int((cluster == cluster[atlas.neuron_ids.index(hovered)]).sum()) - 1
    if cluster[atlas.neuron_ids.index(hovered)] >= 0:  # its cluster lights up
        assert p.locator(".nc-ring-cluster").count() == mates
    page.shot("hover", ".nc-scatter")


def test_graph_click_selects_everywhere(page, exported):
    atlas, _ = exported
    p = page.page
    node = p.locator(".nc-graph .nc-node").first
    neuron = node.get_attribute("data-id")
    node.hover()
    assert p.locator(".nc-world.nc-dim").count() == 1
    assert p.locator(".nc-edge.nc-hl").count() > 0
    assert p.locator(".nc-gcard .nc-patch").count() > 0
    page.shot("graph-hover", ".nc-graph")
    node.click()
    i = index_of(atlas, neuron)
    p.wait_for_function(f"document.querySelector('.nc-scatter').ncScatter.selected().includes({i})")
    assert page.selected() == [i]
    # the graph set the shared selection as an array trait: dtype, shape and the bytes
    wire = p.evaluate("""() => { const m = [...window.notebookcarto.models.values()]
        .find((m) => m.get('neurons') !== undefined).get('neurons');
        return { dtype: m.dtype, shape: m.shape, values: Array.from(new Uint32Array(m.buffer.buffer)) }; }""")
    assert wire == {"dtype": "uint32", "shape": [1], "values": [i]}
    assert p.locator(f".nc-gallery-row[data-neuron='{neuron}']").count() == 1
    assert p.locator(".nc-gallery-row .nc-fig figcaption").count() >= 1
    assert p.locator(".nc-side .nc-nb-card").count() == 10  # nearest neighbours
    neighbours = p.evaluate("document.querySelector('.nc-scatter').ncScatter.neighbours()")
    near = p.locator(".nc-side .nc-nb-card").nth(2)
    near.hover()
    assert p.locator(".nc-ring-hover").count() == 1
    page.shot("neighbours", ".nc-scatter")
    near.click()  # a neighbour card selects that neuron everywhere, the points too
    p.wait_for_function(f"document.querySelector('.nc-scatter').ncScatter.selected()[0] === {neighbours[2]}")
    assert p.locator(f".nc-gallery-row[data-neuron='{atlas.neuron_ids[neighbours[2]]}']").count() == 1
    node.click()
    assert "nc-selected" in node.get_attribute("class")
    # the Plotly chart follows too (restyled by the page itself, as there is no kernel)
    layer = atlas.layers.index(atlas.parse_neuron(neuron)[0])
    p.wait_for_function(
        f"(() => {{ const x = document.querySelector('.nc-slot[data-part=chart]').data[1].x;"
        f" return x[{layer}] === 1 && x.reduce((a, b) => a + b, 0) === 1; }})()")
    page.shot("graph-click")


def test_filters(page, exported):
    atlas, _ = exported
    p = page.page
    n = len(atlas.neuron_ids)
    assert int(p.get_attribute(".nc-scatter", "data-visible")) == n
    p.select_option(".nc-scatter .nc-filter", "class")
    cls = 0
    expected = sum(int((atlas.stats.layers[name].aggregation.counts[cls] > 0).sum())
                   for name in atlas.layers)
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.visible == '{expected}'")
    shown = p.evaluate("document.querySelector('.nc-scatter').ncScatter.filtered()")
    assert len(shown) == expected
    # another class from the sidebar changes the filter
    p.locator(".nc-class-row[data-cls='3']").click()
    expected3 = sum(int((atlas.stats.layers[name].aggregation.counts[3] > 0).sum())
                    for name in atlas.layers)
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.visible == '{expected3}'")
    # selected clusters: select one neuron in a cluster, see its whole cluster
    cluster = np.asarray(atlas.get("clusters").labels)
    i = int(np.flatnonzero(cluster >= 0)[4])
    members = np.flatnonzero(cluster == cluster[i]).tolist()
    p.select_option(".nc-scatter .nc-filter", "clusters")
    click_point(page, atlas, i)
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.visible == '{len(members)}'")
    assert sorted(p.evaluate("document.querySelector('.nc-scatter').ncScatter.filtered()")) == members
    page.shot("filter-clusters", ".nc-scatter")
    p.select_option(".nc-scatter .nc-filter", "all")
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.visible == '{n}'")


def click_point(page, atlas, i):
    """Select neuron i with a click on its point in the scatter."""
    return page.click_point(i)


def test_click_and_lasso_in_scatter(page, exported):
    atlas, _ = exported
    p = page.page
    i = index_of(atlas, atlas.layers[1] + ":2")
    click_point(page, atlas, i)
    assert page.selected() == [i]
    assert p.locator(f".nc-gallery-row[data-neuron='{atlas.neuron_ids[i]}']").count() == 1
    p.locator(".nc-scatter button[data-tool='lasso']").click()
    box = p.locator(".nc-scatter canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * 0.45
    p.mouse.move(cx - r, cy - r)
    p.mouse.down()
    for x, y in [(cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 2)]:
        p.mouse.move(x, y, steps=8)
    p.mouse.up()
    p.wait_for_function("document.querySelector('.nc-scatter').ncScatter.selected().length > 5")
    count = len(page.selected())
    p.wait_for_function("document.querySelectorAll('.nc-gallery-row').length > 1")
    assert f"{count} selected neurons" in p.locator(".nc-gallery").inner_text()
    page.shot("lasso")


def test_class_embedding_and_snapshots(page, exported):
    atlas, _ = exported
    p = page.page
    before = page.drawn()
    p.evaluate("""() => { const s = document.querySelector('.nc-snapshot'); s.value = 0;
                          s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""")
    p.wait_for_function(f"Number(document.querySelector('.nc-scatter').dataset.drawn) > {before}")
    p.locator(".nc-scatter button[data-mode='classes']").click()
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.points == '{len(atlas.class_names)}'")
    first = p.evaluate("document.querySelector('.nc-scatter').ncScatter.position(0)")
    drawn = page.drawn()
    p.select_option(".nc-scatter .nc-class-layer", "0")
    p.wait_for_function(f"Number(document.querySelector('.nc-scatter').dataset.drawn) > {drawn}")
    p.wait_for_timeout(900)  # the animation
    moved = p.evaluate("document.querySelector('.nc-scatter').ncScatter.position(0)")
    assert moved != first
    assert ink(p.locator(".nc-scatter canvas").first.screenshot()) > 50
    # clicking a class point selects the class everywhere
    x0 = p.locator(".nc-scatter canvas").first.bounding_box()
    p.mouse.move(x0["x"] + moved[0] - 20, x0["y"] + moved[1] - 20)
    p.mouse.move(x0["x"] + moved[0], x0["y"] + moved[1], steps=3)
    p.mouse.click(x0["x"] + moved[0], x0["y"] + moved[1])
    p.wait_for_selector(".nc-class-row.nc-on[data-cls='0']")
    page.shot("class-embedding", ".nc-scatter")


def test_sidebar_search_sort_and_graph_class(page, exported):
    atlas, _ = exported
    p = page.page
    p.locator(".nc-sidebar-search").fill("circle")
    expected = sum("circle" in c.lower() for c in atlas.class_names)
    assert p.locator(".nc-class-row").count() == expected
    p.locator(".nc-sidebar-search").fill("")
    p.select_option(".nc-sort", "similarity")
    p.locator(".nc-class-row[data-cls='4']").click()
    p.wait_for_selector(".nc-class-row.nc-on[data-cls='4']")
    assert p.locator(".nc-class-row").first.get_attribute("data-cls") == "4"
    assert p.get_attribute(".nc-class-search", "placeholder") == atlas.class_names[4]
    # pick a class in the graph's picker by search
    p.locator(".nc-class-search").fill("yellow")
    p.locator(".nc-picker-item").first.dispatch_event("mousedown")
    p.wait_for_selector(f".nc-class-row.nc-on[data-cls='{atlas.class_names.index('yellow stars')}']")
    # the count slider hides small nodes
    nodes = int(p.get_attribute(".nc-graph", "data-nodes"))
    p.evaluate("""() => { const s = document.querySelector('.nc-min-count'); s.value = s.max;
                          s.dispatchEvent(new Event('input')); }""")
    p.wait_for_function(f"Number(document.querySelector('.nc-graph').dataset.nodes) < {nodes}")
    page.shot("sidebar")


def test_heatmap_toggle_and_cluster_graph(page, exported):
    atlas, _ = exported
    p = page.page
    click_point(page, atlas, index_of(atlas, atlas.layers[0] + ":3"))
    assert p.locator(".nc-gallery .nc-heat").count() == 0
    p.locator(".nc-heat-toggle").check()
    p.wait_for_selector(".nc-gallery .nc-heat")
    assert p.locator(".nc-gallery .nc-heat").count() == 9
    page.shot("gallery-heatmap", ".nc-gallery")
    p.select_option(".nc-graph select", "cluster")
    p.wait_for_selector(".nc-graph .nc-node[data-id^='cluster:']")
    node = p.locator(".nc-graph .nc-node").first
    node.hover()
    assert p.locator(".nc-gcard .nc-member").count() >= 2
    node.click()
    p.wait_for_function("document.querySelector('.nc-scatter').ncScatter.selected().length >= 2")
    page.shot("cluster-graph", ".nc-graph")


def test_views_work_alone(browser, exported, tmp_path):
    """Each view also works on its own (its own selection), exported without the Explorer."""
    from notebookcarto.views import (AttributionGraph, ClassSidebar, DissectionPanel, PatchGallery,
                                     ProjectionScatter)

    atlas, _ = exported
    for view, selector in [(ProjectionScatter(atlas), ".nc-scatter[data-drawn]"),
                           (AttributionGraph(atlas, kind="cluster"), ".nc-graph[data-nodes]"),
                           (ClassSidebar(atlas), ".nc-class-row"),
                           (PatchGallery(atlas), ".nc-gallery .nc-message"),
                           (DissectionPanel(atlas), ".nc-dissection .nc-unit-row")]:
        path = view.save_html(tmp_path / f"{type(view).__name__}.html")
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://")
                   else r.abort())
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(Path(path).as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT)
        page.wait_for_selector(selector, timeout=TIMEOUT)
        assert page.locator(".nc-explorer").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"alone-{type(view).__name__}.png"))
        page.close()
        assert not errors, errors
