"""The Explorer in a notebook: it lays out by the width of its own container (a notebook's output
area, narrower than the window with the file browser open), keeps every panel usable down to
about 600 px, keeps the canvas still when panels open or labels change, and leaves the mouse
wheel to the page unless the user is working in a view (a modifier key, or a click in it first).
"""

from __future__ import annotations

import pytest

LAYOUT = "document.querySelector('.nc-explorer').dataset.layout"


def widths(page):
    """Widths of the Explorer's panels, the scatter's canvas and the chart's figure."""
    return page.js("""() => {
      const w = (s) => { const e = document.querySelector(s); return e ? e.getBoundingClientRect().width : 0; };
      return { root: w('.nc-explorer'), sidebar: w('.nc-slot[data-part=sidebar]'), scatter: w('.nc-slot[data-part=scatter]'),
               graph: w('.nc-slot[data-part=graph]'), chart: w('.nc-slot[data-part=chart]'), canvas: w('.nc-scatter canvas'),
               figure: w('.nc-slot[data-part=chart] .main-svg'), gallery: w('.nc-slot[data-part=gallery]'),
               dissection: w('.nc-slot[data-part=dissection]') };
    }""")


def overflowing_toolbars(page):
    """Toolbars whose content is wider than they are (cut off)."""
    return page.js("""[...document.querySelectorAll('.nc-toolbar')].filter((t) => t.getBoundingClientRect().width > 0
        && t.scrollWidth > t.clientWidth + 1).map((t) => t.closest('[data-part]')?.dataset.part)""")


def wait_figure_fits(page):
    page.page.wait_for_function("""() => { const s = document.querySelector('.nc-slot[data-part=chart]');
        const f = s && s.querySelector('.main-svg'); if (!f) return false;
        const a = s.getBoundingClientRect().width, b = f.getBoundingClientRect().width;
        return b <= a + 1 && b >= a - 24; }""")


@pytest.mark.parametrize("container, layout", [(700, "narrow"), (1000, "medium"), (1380, "wide")])
def test_layout_follows_the_container(open_page, playground_export, container, layout):
    _, path = playground_export
    page = open_page(path, width=1440, height=900, container=container)
    page.page.wait_for_function(f"{LAYOUT} === {layout!r}")
    wait_figure_fits(page)
    w = widths(page)
    assert w["root"] <= container + 1
    if layout == "narrow":
        for part in ("sidebar", "scatter", "graph", "gallery", "chart", "dissection"):
            assert w[part] >= container - 40, (part, w)
    else:
        assert w["scatter"] >= 440 and w["graph"] >= 440, w
    assert w["canvas"] >= w["scatter"] - 4
    assert overflowing_toolbars(page) == []
    # the container narrows (the file browser opens): the layout and the chart follow
    page.js("() => { document.getElementById('nc-root').style.width = '640px'; }")
    page.page.wait_for_function(f"{LAYOUT} === 'narrow'")
    wait_figure_fits(page)
    assert widths(page)["canvas"] >= 600
    page.page.wait_for_timeout(200)
    assert overflowing_toolbars(page) == []


def test_a_600_px_notebook(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=640, height=900)
    page.page.wait_for_function(f"{LAYOUT} === 'narrow'")
    wait_figure_fits(page)
    w = widths(page)
    for part in ("sidebar", "scatter", "graph", "gallery", "chart", "dissection"):
        assert w[part] >= 580, (part, w)
    assert overflowing_toolbars(page) == []
    assert page.js("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    page.shot("narrow-600", full_page=True)


def test_selecting_a_point_moves_no_point(open_page, playground_export):
    """The neighbour panel opens over the canvas: the canvas keeps its size, the points stay."""
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    canvas = page.canvas_box()
    probes = [0, len(atlas.neuron_ids) // 3, len(atlas.neuron_ids) - 1]
    before = [page.position(i) for i in probes]
    page.click_point(atlas.neuron_ids.index(atlas.layers[2] + ":1"))
    page.page.wait_for_selector(".nc-side .nc-nb-card")
    page.page.wait_for_timeout(300)
    assert page.canvas_box() == canvas
    after = [page.position(i) for i in probes]
    for a, b in zip(before, after):
        assert abs(a[0] - b[0]) < 0.5 and abs(a[1] - b[1]) < 0.5, (before, after)


def test_snapshot_label_keeps_the_toolbar(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=900)
    size = """() => { const t = document.querySelector('.nc-scatter .nc-toolbar');
        const l = document.querySelector('.nc-scatter .nc-snapshot-label');
        return [t.getBoundingClientRect().height, l.getBoundingClientRect().width, l.textContent]; }"""
    final = page.js(size)
    seen = set()
    for value in ("0", "1", "2"):
        page.js(f"""() => {{ const s = document.querySelector('.nc-snapshot'); s.value = {value};
                    s.dispatchEvent(new Event('input')); }}""")
        height, width, text = page.js(size)
        seen.add(text)
        assert (height, width) == tuple(final[:2]), (value, text, final)
    assert len(seen) == 3  # "epoch 1", "epoch 3", "final"


def scroll_to(page, selector):
    """Scroll so that ``selector`` is in the middle of the window (room to scroll both ways)."""
    page.js(f"""() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();
        window.scrollTo(0, window.scrollY + r.top - 120); }}""")
    page.page.wait_for_timeout(100)


def centre(box):
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_wheel_scrolls_the_page_over_the_scatter(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=700)
    p = page.page
    scroll_to(page, ".nc-scatter")
    probe = len(atlas.neuron_ids) // 2
    x, y = centre(page.canvas_box())
    p.mouse.move(x, y)
    before, scroll = page.position(probe), page.js("window.scrollY")
    p.mouse.wheel(0, 240)
    p.wait_for_function(f"window.scrollY > {scroll}")
    assert page.position(probe) == before, "the wheel zoomed a view the user is not working in"
    assert p.locator(".nc-scatter .nc-wheel-hint").is_visible()
    # with a modifier the wheel zooms, and the page stays
    scroll_to(page, ".nc-scatter")
    x, y = centre(page.canvas_box())
    p.mouse.move(x, y)
    before, scroll = page.position(probe), page.js("window.scrollY")
    p.keyboard.down("Control")
    p.mouse.wheel(0, -240)
    p.keyboard.up("Control")
    p.wait_for_function("([i, before]) => { const now = document.querySelector('.nc-scatter')"
                        ".ncScatter.position(i); return now[0] !== before[0] || now[1] !== before[1]; }",
                        arg=[probe, before])
    assert page.js("window.scrollY") == scroll
    # after a click in the view, the wheel zooms it; a click elsewhere gives the wheel back
    p.mouse.click(x + 3, y + 3)
    before = page.position(probe)
    p.mouse.wheel(0, -240)
    p.wait_for_timeout(300)
    assert page.position(probe) != before and page.js("window.scrollY") == scroll
    p.mouse.click(5, 5)
    p.mouse.move(x, y)
    before = page.position(probe)
    p.mouse.wheel(0, 240)
    p.wait_for_function(f"window.scrollY > {scroll}")
    assert page.position(probe) == before


def test_wheel_scrolls_the_page_over_the_graph(open_page, playground_export):
    _, path = playground_export
    page = open_page(path, width=1400, height=700)
    p = page.page
    view = "document.querySelector('.nc-graph').ncGraph.view().k"
    scroll_to(page, ".nc-graph")
    x, y = centre(p.locator(".nc-graph .nc-viewport").bounding_box())
    p.mouse.move(x, y)
    k, scroll = page.js(view), page.js("window.scrollY")
    p.mouse.wheel(0, 240)
    p.wait_for_function(f"window.scrollY > {scroll}")
    assert page.js(view) == k
    assert p.locator(".nc-graph .nc-wheel-hint").is_visible()
    scroll_to(page, ".nc-graph")
    x, y = centre(p.locator(".nc-graph .nc-viewport").bounding_box())
    p.mouse.move(x, y)
    scroll = page.js("window.scrollY")
    p.keyboard.down("Control")
    p.mouse.wheel(0, -240)
    p.keyboard.up("Control")
    p.wait_for_function(f"{view} > {k}")
    assert page.js("window.scrollY") == scroll
