"""Residual streams in the page: the scatter's hover card and the graph's node card name a
neuron's stream, and the scatter search "stream:<name>" selects exactly its members."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import fake_results, small_atlas

SEARCH = ".nc-scatter .nc-neuron-search"


@pytest.fixture(scope="module")
def streams_export(tmp_path_factory):
    """(atlas, path): stand-ins of every result, the last two layers one residual stage."""
    from notebookcarto.analyses.streams import stream_ids

    atlas, _, _ = small_atlas(n=60)
    fake_results(atlas)
    clusters = atlas.get("clusters")
    clusters.stages = [atlas.layers[-2:]]
    clusters.stream = stream_ids(atlas, clusters.stages)
    path = tmp_path_factory.mktemp("streams") / "streams.html"
    atlas.to_html(path)
    return atlas, path


def test_cards_show_the_stream(open_page, streams_export):
    atlas, path = streams_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    streams = atlas.neurons["stream"]
    page.hover_point(atlas.neuron_ids.index(atlas.layers[-1] + ":1"))
    card = p.locator(".nc-scatter .nc-card")
    card.wait_for(state="visible")
    hovered = card.locator(".nc-card-title").inner_text()  # the point under the mouse
    assert streams[hovered], hovered  # a neuron of the stage
    assert f"stream {streams[hovered]}" in card.locator(".nc-card-sub").first.inner_text()
    # the graph's node card: the stream of a node on one, nothing for one on none
    nodes = p.locator(".nc-graph .nc-node").evaluate_all("ns => ns.map((n) => n.dataset.id)")
    on = next(n for n in nodes if streams.get(n))
    off = next(n for n in nodes if n in streams.index and not streams[n])
    p.hover(f".nc-graph .nc-node[data-id='{on}']")
    p.wait_for_selector(".nc-gcard .nc-card-stream")
    assert p.locator(".nc-gcard .nc-card-stream").inner_text() == f"stream {streams[on]}"
    p.hover(f".nc-graph .nc-node[data-id='{off}']")
    title = "document.querySelector('.nc-gcard .nc-card-title')?.textContent"
    p.wait_for_function(f"{title} === '{off}'")
    assert p.locator(".nc-gcard .nc-card-stream").count() == 0
    assert not page.errors, page.errors


def test_search_selects_a_stream(open_page, streams_export):
    atlas, path = streams_export
    page = open_page(path, width=1400, height=900)
    p = page.page
    streams = atlas.neurons["stream"]
    name = streams[atlas.layers[-1] + ":3"]
    members = sorted(np.flatnonzero(streams.to_numpy() == name).tolist())
    assert len(members) == 2
    p.locator(SEARCH).fill(f"stream:{name}")
    p.wait_for_selector(".nc-search-results .nc-search-item")
    listed = p.locator(".nc-search-results .nc-search-item").evaluate_all(
        "items => items.map((i) => i.dataset.neuron)")
    assert sorted(listed) == sorted(atlas.neuron_ids[i] for i in members)
    p.locator(SEARCH).press("Enter")
    page.wait_selected(f"s.length === {len(members)}")
    assert sorted(page.selected()) == members
    # the name without "stream:" finds it too, among the streams whose names contain it
    p.locator(SEARCH).fill(name)
    p.wait_for_selector(".nc-search-results .nc-search-item")
    listed = p.locator(".nc-search-results .nc-search-item").evaluate_all(
        "items => items.map((i) => i.dataset.neuron)")
    assert {atlas.neuron_ids[i] for i in members} <= set(listed)
    assert not page.errors, page.errors
