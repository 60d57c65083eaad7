"""Residual streams in the views' data: ``AtlasData`` sends the distinct stream names of
``atlas.neurons``'s ``stream`` column and an index per neuron (-1: none), nothing without one."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import fake_results, small_atlas
from notebookcarto.views import AtlasData


def set_streams(atlas, channels=(0, 2, 5)):
    """Put ``channels`` of the last two layers (one stage) on residual streams, by hand: the
    clusters' stream ids and stages, which give ``atlas.neurons`` its ``stream`` column."""
    clusters = atlas.get("clusters")
    first, last = atlas.layers[-2:]
    stream = np.full(len(atlas.neuron_ids), -1, np.int64)
    for layer in (first, last):
        offset = atlas.layer_offsets[layer]
        stream[[offset + c for c in channels]] = channels
    clusters.stream, clusters.stages = stream, [[first, last]]
    return [f"{first}..{last}:{c}" for c in channels]


@pytest.fixture(scope="module")
def atlas():
    atlas, _, _ = small_atlas(n=60)
    return atlas


def test_stream_names_and_indices(atlas):
    fake_results(atlas)
    expected = set_streams(atlas)
    column = atlas.neurons["stream"].to_numpy()
    data = AtlasData.from_atlas(atlas)
    names, ids = data.stream_names, data.stream
    assert sorted(names) == sorted(expected) and len(set(names)) == len(names)
    assert ids.dtype == np.int32 and ids.shape == (len(atlas.neuron_ids),)
    shown = np.array([names[i] if i >= 0 else "" for i in ids], dtype=object)
    assert (shown == column).all()
    assert (ids >= 0).sum() == 2 * len(expected)  # each stream holds one channel of two layers
    first, last = atlas.layers[-2:]
    on = names.index(f"{first}..{last}:2")
    assert [atlas.neuron_ids[i] for i in np.flatnonzero(ids == on)] == [f"{first}:2", f"{last}:2"]


def test_nothing_sent_without_streams(atlas):
    if atlas.has("clusters"):
        atlas.detach("clusters")
    assert "stream" not in atlas.neurons  # no clusters: no column
    data = AtlasData.from_atlas(atlas)
    assert data.stream is None and data.stream_names == []
    fake_results(atlas)  # clusters without streams: a column of "" only
    assert set(atlas.neurons["stream"]) == {""}
    data = AtlasData.from_atlas(atlas)
    assert data.stream is None and data.stream_names == []
