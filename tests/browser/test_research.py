"""What researchers look for: neuron search (by id, concept, cluster, layer) as in TensorBoard's
projector, the dissection panel (IoU per unit, detectors per layer and category, the masks of a
unit's top images) and the selection as CSV from the view."""

from __future__ import annotations

import csv
import io

import numpy as np

SEARCH = ".nc-scatter .nc-neuron-search"


def search(page, query):
    box = page.page.locator(SEARCH)
    box.fill(query)
    page.page.wait_for_selector(".nc-search-results .nc-search-item, .nc-search-results .nc-search-none")
    return page.page.locator(".nc-search-results .nc-search-item").evaluate_all(
        "items => items.map((i) => i.dataset.neuron)")


def selected_ids(page, atlas):
    return sorted(atlas.neuron_ids[i] for i in page.selected())


def test_neuron_search(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    table = atlas.neurons
    # an id: that neuron first, Enter selects it
    target = f"{atlas.layers[2]}:7"
    assert search(page, target)[0] == target
    p.locator(SEARCH).press("Enter")
    page.wait_selected(f"s.length === 1 && s[0] === {atlas.neuron_ids.index(target)}")
    # a concept: every neuron the dissection labels with it
    want = sorted(table.index[table["concept"] == "sky"])
    listed = search(page, "sky")
    assert listed and all(table.loc[n, "concept"] == "sky" for n in listed)
    p.locator(SEARCH).press("Enter")
    page.wait_selected(f"s.length === {len(want)}")
    assert selected_ids(page, atlas) == want
    # a cluster, written as the graph names it or as words
    labels = atlas.get("clusters").labels
    members = sorted(atlas.neuron_ids[i] for i in np.flatnonzero(labels == 3))
    for query in ("cluster:3", "cluster 3"):
        assert sorted(search(page, query)) == members
        p.locator(SEARCH).press("Enter")
        page.wait_selected(f"s.length === {len(members)}")
        assert selected_ids(page, atlas) == members
    # a layer
    listed = search(page, atlas.layers[0])
    assert len(listed) == atlas.stats.layers[atlas.layers[0]].channels
    # a click on a result selects that neuron; hovering it rings it in the projection
    item = p.locator(".nc-search-results .nc-search-item").nth(2)
    item.hover()
    p.wait_for_selector(".nc-ring-hover")
    neuron = item.get_attribute("data-neuron")
    item.click()
    page.wait_selected(f"s.length === 1 && s[0] === {atlas.neuron_ids.index(neuron)}")
    assert not p.locator(".nc-search-results").is_visible()
    # nothing found says so; Escape closes the list
    search(page, "no such neuron")
    assert p.locator(".nc-search-none").is_visible()
    p.locator(SEARCH).press("Escape")
    assert not p.locator(".nc-search-results").is_visible()
    page.shot("search", ".nc-scatter")


def test_dissection_panel(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    panel = p.locator(".nc-slot[data-part=dissection] .nc-dissection")
    panel.scroll_into_view_if_needed()
    dissection = atlas.get("dissection")
    summary = dissection.summary()
    # detectors per layer and category, as the result's summary counts them
    bars = p.locator(".nc-dissection-summary .nc-bar").evaluate_all(
        "bars => bars.map((b) => [b.dataset.layer, b.dataset.category, Number(b.dataset.count)])")
    want = [[layer, category, int(summary.loc[layer, f"{category}_detectors"])]
            for layer in summary.index for category in dissection.categories]
    assert sorted(bars) == sorted(want)
    totals = p.locator(".nc-dissection-summary .nc-total").all_text_contents()
    assert [int(t.split()[0]) for t in totals] == summary["detectors"].tolist()
    # units sorted by IoU, best first, with their concept
    units = dissection.units()
    rows = p.locator(".nc-unit-row")
    best = units["iou"].idxmax()
    assert rows.first.get_attribute("data-neuron") == best
    assert units.loc[best, "concept"] in rows.first.inner_text()
    assert f"{units.loc[best, 'iou']:.2f}" in rows.first.inner_text()
    # sort by unit, filter by layer
    p.select_option(".nc-unit-sort", "unit")
    assert rows.first.get_attribute("data-neuron") == units.index[units["detector"]][0]
    p.select_option(".nc-unit-layer", atlas.layers[2])
    shown = rows.evaluate_all("rs => rs.map((r) => r.dataset.neuron)")
    detectors = units[(units["layer"] == atlas.layers[2]) & units["detector"]]
    assert shown == list(detectors.index)
    # a bar filters the table to that layer's detectors of that category
    bar = p.locator(f".nc-dissection-summary .nc-bar[data-layer='{atlas.layers[3]}'][data-category='texture']")
    bar.click()
    shown = rows.evaluate_all("rs => rs.map((r) => r.dataset.neuron)")
    want = units[(units["layer"] == atlas.layers[3]) & units["detector"] & (units["category"] == "texture")]
    assert sorted(shown) == sorted(want.index)
    # a click on a unit selects it everywhere and shows its top images with the mask
    neuron = shown[0]
    rows.first.click()
    page.wait_selected(f"s.length === 1 && s[0] === {atlas.neuron_ids.index(neuron)}")
    gallery = atlas.get("dissection_gallery")
    expected = len(gallery.unit(neuron)[1])
    p.wait_for_selector(".nc-dissection .nc-masks .nc-mask")
    assert p.locator(".nc-dissection .nc-masks .nc-mask").count() == expected
    assert p.locator(".nc-unit-row.nc-on").get_attribute("data-neuron") == neuron
    # a neuron selected elsewhere shows its masks here too
    other = atlas.neuron_ids.index(f"{atlas.layers[1]}:1")
    page.click_point(other)
    p.wait_for_selector(f".nc-dissection .nc-masks[data-neuron='{atlas.layers[1]}:1']")
    page.shot("dissection", ".nc-slot[data-part=dissection]")


def test_selection_as_csv(open_page, playground_export):
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    assert p.locator(".nc-csv").is_disabled()
    labels = atlas.get("clusters").labels
    members = [atlas.neuron_ids[i] for i in np.flatnonzero(labels == 2)]
    search(page, "cluster:2")
    p.locator(SEARCH).press("Enter")
    page.wait_selected(f"s.length === {len(members)}")
    with p.expect_download() as download:
        p.locator(".nc-csv").click()
    assert download.value.suggested_filename == "selection.csv"
    text = open(download.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["neuron"] for r in rows] == members
    table = atlas.neurons
    cls = atlas.class_names[0]
    for row in rows:
        assert row["layer"] == table.loc[row["neuron"], "layer"]
        assert int(row["channel"]) == table.loc[row["neuron"], "channel"]
        assert int(row["cluster"]) == table.loc[row["neuron"], "cluster"]
        assert row["concept"] == table.loc[row["neuron"], "concept"]
        assert abs(float(row["iou"]) - table.loc[row["neuron"], "iou"]) < 1e-4
        assert f"relevance ({cls})" in row
