"""Lasso and drag in the projection: a lasso (or a pan) that starts on a point is a lasso (or a
pan), not a click on that point."""

from __future__ import annotations


def loop_from(page, i, radius=0.3):
    """Mouse down on point i, draw a loop through the canvas and come back to it."""
    p = page.page
    x, y = page.hover_point(i)
    box = page.canvas_box()
    r = min(box["width"], box["height"]) * radius
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    p.mouse.down()
    for px, py in [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r),
                   (x + 1, y + 1)]:
        p.mouse.move(px, py, steps=10)
    p.mouse.up()


def test_lasso_that_starts_on_a_point(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    page.page.locator(".nc-scatter button[data-tool='lasso']").click()
    i = atlas.neuron_ids.index(atlas.layers[1] + ":3")
    loop_from(page, i)
    page.page.wait_for_timeout(500)  # a click would select the point after the lasso
    assert len(page.selected()) > 5, page.selected()


def test_pan_that_starts_on_a_point_selects_nothing(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    i = atlas.neuron_ids.index(atlas.layers[1] + ":3")
    loop_from(page, i, radius=0.1)
    page.page.wait_for_timeout(500)
    assert page.selected() == []
