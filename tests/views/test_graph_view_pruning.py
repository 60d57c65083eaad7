"""The graph view sends every node and edge of a class graph with the default view's ``shown``
marks and both layouts (``x`` of the shown nodes, ``x_all`` of all); ``show_all`` picks all."""

from __future__ import annotations

import copy
import json
import struct

import pytest
import traitlets

from helpers import fake_results, small_atlas


@pytest.fixture(scope="module")
def pruned():
    """An atlas whose attribution graphs show two nodes a layer (``graph_view.mark_shown``),
    with ``x_all`` unlike ``x``; its cluster graphs have no ``shown`` (saved before it)."""
    from notebookcarto.analyses import AttributionGraphs
    from notebookcarto.analyses.graph_view import mark_shown

    atlas, _, _ = small_atlas(n=160, seed=2)
    fake_results(atlas)
    graphs = copy.deepcopy(atlas.get("attribution_graphs").graphs)
    for graph in graphs.values():
        mark_shown(graph["nodes"], graph["edges"], mass="count", max_nodes=2, max_edges=3)
        for node in graph["nodes"]:
            node["x_all"] = 1.0 - node["x"]
    atlas.attach(AttributionGraphs(graphs, {"fake": True}))
    return atlas


def test_adapter_passes_shown_and_x_all(pruned):
    from notebookcarto.views import adapters

    found, notes = adapters.graphs(pruned)
    assert notes == []
    for name, graph in pruned.get("attribution_graphs").graphs.items():
        sent = found["attribution"][name]
        assert [n["id"] for n in sent["nodes"]] == [n["id"] for n in graph["nodes"]]
        assert [n["shown"] for n in sent["nodes"]] == [n["shown"] for n in graph["nodes"]]
        assert [n["x_all"] for n in sent["nodes"]] == [n["x_all"] for n in graph["nodes"]]
        assert [e["shown"] for e in sent["edges"]] == [e["shown"] for e in graph["edges"]]
        assert 0 < sum(n["shown"] for n in sent["nodes"]) < len(sent["nodes"])
        assert 0 < sum(e["shown"] for e in sent["edges"]) < len(sent["edges"])
    for graph in found["cluster"].values():  # no marks: everything is shown
        assert all(n["shown"] for n in graph["nodes"]) and all(e["shown"] for e in graph["edges"])
        assert not any("x_all" in n for n in graph["nodes"])
    json.dumps(found, allow_nan=False)  # plain JSON


def test_show_all_option(pruned):
    from notebookcarto.views import AttributionGraph, Explorer

    graph = AttributionGraph(pruned)
    assert graph.show_all is False
    name = pruned.class_names[0]
    nodes = graph.graphs["attribution"][name]["nodes"]
    assert len(nodes) == len(pruned.get("attribution_graphs").graphs[name]["nodes"])
    assert AttributionGraph(pruned, show_all=True).show_all is True
    with pytest.raises(traitlets.TraitError):
        graph.show_all = "yes"
    assert Explorer(pruned, graph={"show_all": True}).graph.show_all is True


def test_export_keeps_show_all(pruned):
    from notebookcarto.views import Explorer
    from notebookcarto.views.export import payload

    explorer = Explorer(pruned, graph={"show_all": True})
    raw = payload(explorer)
    length = struct.unpack("<I", raw[4:8])[0]
    state = json.loads(raw[8:8 + length])["models"][explorer.graph.model_id]["state"]
    assert state["show_all"] is True
    name = pruned.class_names[0]
    assert any(not n["shown"] for n in state["graphs"]["attribution"][name]["nodes"])
