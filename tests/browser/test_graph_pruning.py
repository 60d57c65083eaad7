"""The graph view on a graph whose default view leaves nodes out (``max_nodes=3``): it draws
only the shown nodes and edges, laid out at ``x``; the "all nodes" toggle draws all of them at
``x_all``, with a count; hover and selection work in both; ``show_all=True`` opens with all."""

from __future__ import annotations

import re

import pytest

from helpers import fake_results, small_atlas

GRAPH = "document.querySelector('.nc-graph')"
SELECTED = "document.querySelector('.nc-scatter').ncScatter.selected()"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """(atlas, graph of class 0, path, path with ``show_all=True``): real attribution graphs
    with three nodes a layer shown; ``x_all`` mirrored, so that it orders the rows unlike ``x``."""
    from notebookcarto.analyses import attribution_graphs, count_influence

    atlas, model, data = small_atlas(n=160, seed=4)
    fake_results(atlas)
    images, labels = data.tensors(progress=False)
    atlas.attach(count_influence(atlas, model, (images, labels), progress=False))
    graphs = attribution_graphs(atlas, max_nodes=3, progress=False)
    for graph in graphs.graphs.values():
        for node in graph["nodes"]:
            node["x_all"] = 1.0 - node["x_all"]
    atlas.attach(graphs)
    graph = graphs.graphs[atlas.class_names[0]]
    assert 0 < sum(n["shown"] for n in graph["nodes"]) < len(graph["nodes"])
    folder = tmp_path_factory.mktemp("pruned")
    atlas.to_html(folder / "default.html")
    atlas.show(graph={"show_all": True}).save_html(folder / "all.html")
    return atlas, graph, folder / "default.html", folder / "all.html"


def drawn(page):
    """The drawn nodes: {id: (x, y) of the tile's centre on screen}."""
    tiles = page.js(f"""() => [...{GRAPH}.querySelectorAll('.nc-node')].map((n) => {{
        const r = n.getBoundingClientRect();
        return {{ id: n.dataset.id, x: r.x + r.width / 2, y: r.y + r.height / 2 }}; }})""")
    return {n["id"]: (n["x"], n["y"]) for n in tiles}


def lit(p):
    """The ids of the highlighted nodes (the hovered node's neighbourhood)."""
    return set(p.eval_on_selector_all(".nc-graph .nc-node.nc-hl",
                                      "(ns) => ns.map((n) => n.dataset.id)"))


def neighbourhood(graph, node, *, shown_only):
    """``node`` and the nodes it shares an edge with (the shown edges only, or all)."""
    edges = [e for e in graph["edges"] if e["shown"] or not shown_only]
    return ({node} | {e["source"] for e in edges if e["target"] == node}
            | {e["target"] for e in edges if e["source"] == node})


def rows_follow(tiles, graph, key):
    """Whether the tiles of every row run left to right in the order of the nodes' ``key``."""
    by_id = {n["id"]: n for n in graph["nodes"]}
    for layer in {by_id[i]["layer"] for i in tiles}:
        row = [i for i in tiles if by_id[i]["layer"] == layer]
        if sorted(row, key=lambda i: tiles[i][0]) != sorted(row, key=lambda i: by_id[i][key]):
            return False
    return True


def wait_nodes(p, n):
    p.wait_for_function(f"Number({GRAPH}.dataset.nodes) === {n}")


def test_default_view_draws_the_shown_nodes_and_the_toggle_all(open_page, pruned):
    _, graph, path, _ = pruned
    page = open_page(path, width=1400, height=900)
    p = page.page
    shown = {n["id"] for n in graph["nodes"] if n["shown"]}
    every = {n["id"] for n in graph["nodes"]}
    toggle = p.locator(".nc-graph .nc-all-nodes")
    count = p.locator(".nc-graph .nc-shown-count")

    tiles = drawn(page)
    assert set(tiles) == shown
    edges = int(p.get_attribute(".nc-graph", "data-edges"))
    assert edges == sum(e["shown"] for e in graph["edges"])
    assert toggle.get_attribute("aria-pressed") == "false"
    assert count.inner_text() == f"showing {len(shown)} of {len(every)} nodes"
    assert rows_follow(tiles, graph, "x") and not rows_follow(tiles, graph, "x_all")

    toggle.click()
    wait_nodes(p, len(every))
    tiles = drawn(page)
    assert set(tiles) == every
    assert int(p.get_attribute(".nc-graph", "data-edges")) == len(graph["edges"])
    assert p.locator(".nc-graph .nc-all-nodes").get_attribute("aria-pressed") == "true"
    assert count.inner_text() == f"showing {len(every)} of {len(every)} nodes"
    assert rows_follow(tiles, graph, "x_all") and not rows_follow(tiles, graph, "x")
    page.shot("graph-all-nodes", ".nc-graph")

    p.locator(".nc-graph .nc-all-nodes").click()
    wait_nodes(p, len(shown))
    assert set(drawn(page)) == shown


def test_hover_and_selection_work_on_both_views(open_page, pruned):
    atlas, graph, path, _ = pruned
    page = open_page(path, width=1400, height=900)
    p = page.page
    hidden = next(n["id"] for n in graph["nodes"] if not n["shown"]
                  and len(neighbourhood(graph, n["id"], shown_only=False)) > 1)
    shown = next(n["id"] for n in graph["nodes"] if n["shown"])
    p.click(".nc-graph .nc-fit")
    p.hover(f".nc-graph .nc-node[data-id='{shown}']")
    assert p.locator(".nc-gcard .nc-card-title").inner_text() == shown
    assert lit(p) == neighbourhood(graph, shown, shown_only=True)

    p.click(".nc-graph .nc-all-nodes")
    wait_nodes(p, len(graph["nodes"]))
    p.click(".nc-graph .nc-fit")
    tile = f".nc-graph .nc-node[data-id='{hidden}']"
    p.hover(tile)
    assert p.locator(".nc-gcard .nc-card-title").inner_text() == hidden
    assert lit(p) == neighbourhood(graph, hidden, shown_only=False)
    edges = sum(hidden in (e["source"], e["target"]) for e in graph["edges"])
    assert p.locator(".nc-graph .nc-edge.nc-hl").count() == edges

    p.click(tile)
    index = atlas.neuron_ids.index(hidden)
    p.wait_for_function(f"{SELECTED}.length === 1 && {SELECTED}[0] === {index}")
    assert p.locator(f"{tile}.nc-selected").count() == 1
    p.wait_for_selector(".nc-gcard.nc-pinned")
    p.mouse.move(2, 2)

    p.click(".nc-graph .nc-all-nodes")  # back to the default view: the node and its card go
    wait_nodes(p, sum(n["shown"] for n in graph["nodes"]))
    assert p.locator(tile).count() == 0
    assert not p.locator(".nc-gcard").is_visible()
    assert page.js(SELECTED) == [index]  # the selection stays
    assert not page.errors, page.errors


def test_show_all_opens_with_every_node(open_page, pruned):
    _, graph, _, path = pruned
    page = open_page(path, width=1400, height=900)
    assert set(drawn(page)) == {n["id"] for n in graph["nodes"]}
    assert page.page.locator(".nc-graph .nc-all-nodes").get_attribute("aria-pressed") == "true"
    text = page.page.locator(".nc-graph .nc-shown-count").inner_text()
    assert re.fullmatch(rf"showing {len(graph['nodes'])} of {len(graph['nodes'])} nodes", text)
