"""The timeline read back from a series: values checked against the snapshots themselves,
incremental refresh while a run goes on, clusters and turnover, the JSON export, the figures."""

import json
import math

import numpy as np
import pytest

from monitor_setups import CLASSES, make, small_monitor, small_run, train
from notebookcarto.analyses import Clusters
from notebookcarto.analyses.clustering import exemplar_sets
from notebookcarto.monitor import Timeline
from notebookcarto.monitor import turnover as turnover_of

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:random neuron pairs overlap")]


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """A run with clusters at every snapshot (top 10 of 40 probe images)."""
    from monitor_setups import probe
    from notebookcarto.monitor import Monitor

    model, opt = make(seed=0, width=8)
    path = tmp_path_factory.mktemp("clustered") / "run"
    monitor = Monitor(path, probe(per_colour=8), ["conv1", "conv2"], every=4,
                      class_names=CLASSES, top_n=10,
                      clusters={"refine": False, "threshold": 0.5, "min_exemplars": 5})
    monitor.observe(model, 0)
    train(model, opt, range(1, 21), monitor=monitor)
    return monitor.timeline()


def test_the_timeline_agrees_with_the_snapshots(tmp_path):
    small_run(tmp_path / "run")
    timeline = Timeline(tmp_path / "run")
    assert timeline.steps.tolist() == [0, 2, 4, 6, 8] and len(timeline) == 5
    assert timeline.layers == ["conv1", "conv2"] and timeline.class_names == CLASSES
    assert timeline.neuron_ids[:2] == ["conv1:0", "conv1:1"] and len(timeline.neuron_ids) == 8
    before, after = timeline.atlas(4), timeline.atlas(6)
    a, b = exemplar_sets(before).numpy(), exemplar_sets(after).numpy()
    for i, neuron in enumerate(timeline.neuron_ids):
        sa, sb = set(a[i][a[i] >= 0]), set(b[i][b[i] >= 0])
        expected = len(sa & sb) / len(sa | sb) if sa | sb else math.nan
        assert np.isclose(timeline.jaccard.loc[6, neuron], expected, equal_nan=True), neuron
    assert timeline.jaccard.loc[0].isna().all()  # nothing before the first snapshot
    assert np.allclose(timeline.drift, 1 - timeline.jaccard, equal_nan=True)
    table = after.classes
    assert np.allclose(timeline.accuracy.loc[6], table["accuracy"], equal_nan=True)
    assert timeline.overall_accuracy.loc[6] == pytest.approx(table["correct"].sum() / 20)
    layer = timeline.layer_drift
    assert list(layer.columns) == ["conv1", "conv2"]
    assert layer.loc[6, "conv2"] == pytest.approx(
        timeline.drift.loc[6, [f"conv2:{c}" for c in range(4)]].mean())
    a_counts = timeline.aggregation("green", layer="conv2")
    assert np.array_equal(a_counts.loc[6].to_numpy(), after.aggregation("conv2").loc["green"])
    top = timeline.class_neurons("green").loc[6]
    expected_top = after.top_neurons("green", n=10)
    assert top["count"].tolist() == expected_top["count"].tolist()
    assert set(top["neuron"]) == set(expected_top.index)
    assert set(timeline.seconds.columns) == {"statistics"}
    assert timeline.detectors is None and timeline.clusters is None
    assert timeline.turnover() is None
    assert "5 snapshots" in repr(timeline)
    with pytest.raises(KeyError, match="unknown class"):
        timeline.class_neurons("purple")
    with pytest.raises(KeyError, match="unknown layer"):
        timeline.aggregation(0, layer="conv9")
    with pytest.raises(KeyError, match="no snapshot of step 5"):
        timeline.atlas(5)


def test_refresh_follows_a_run_that_goes_on_and_a_rewind(tmp_path):
    model, opt, monitor = small_run(tmp_path / "run", last=4)
    state = monitor.state_dict()
    timeline = Timeline(tmp_path / "run")
    assert timeline.steps.tolist() == [0, 2, 4]
    first = timeline.jaccard.loc[4].copy()
    train(model, opt, range(5, 9), monitor=monitor)
    monitor.flush()
    assert timeline.refresh() == [6, 8]
    assert timeline.steps.tolist() == [0, 2, 4, 6, 8]
    assert timeline.refresh() == []
    assert np.allclose(timeline.jaccard.loc[4], first, equal_nan=True)
    rewound = small_monitor(tmp_path / "run", resume=True)
    rewound.load_state_dict(state)  # back to step 4
    model2, opt2, _ = small_run(tmp_path / "other", last=1)
    train(model2, opt2, range(5, 7), monitor=rewound)  # another trajectory after step 4
    rewound.flush()
    assert timeline.refresh() == [0, 2, 4, 6]  # read anew
    assert timeline.steps.tolist() == [0, 2, 4, 6]


def test_clusters_and_turnover(clustered):
    clusters = clustered.clusters
    assert clusters.index.tolist() == [0, 4, 8, 12, 16, 20]
    assert clusters["clusters"].max() >= 2
    atlas = clustered.atlas(20)
    assert clusters.loc[20, "clusters"] == atlas.get(Clusters).n_clusters
    turnover = clustered.turnover(["red", 2])
    assert list(turnover.columns) == ["red", "blue"]
    assert turnover.iloc[0].isna().all()
    values = turnover.to_numpy()
    assert np.all(np.isnan(values) | ((values >= 0) & (values <= 1)))
    assert not np.isnan(values[1:]).all()
    # recomputed from the two snapshots themselves
    before, after = clustered.atlas(16), clustered.atlas(20)
    top = after.top_neurons("red", n=10).index
    expected = turnover_of(before.get(Clusters).labels, after.get(Clusters).labels,
                           after.neuron_index(top))
    assert np.isclose(turnover.loc[20, "red"], expected, equal_nan=True)


def test_the_whole_timeline_exports_as_json(clustered):
    data = clustered.to_dict()
    text = json.dumps(data, allow_nan=False)  # NaN became null
    back = json.loads(text)
    assert back["steps"] == [0, 4, 8, 12, 16, 20]
    assert len(back["accuracy"]) == 6 and len(back["accuracy"][0]) == 4
    assert len(back["drift"]) == 6 and len(back["drift"][0]) == len(back["neuron_ids"])
    assert back["drift"][0][0] is None
    assert set(back["layer_drift"]) == {"conv1", "conv2"}
    assert back["clusters"]["count"] == clustered.clusters["clusters"].tolist()
    assert set(back["clusters"]["turnover"]) == set(CLASSES)
    assert back["detectors"] is None
    light = clustered.to_dict(neurons=False)
    assert light["drift"] is None and light["neuron_ids"] is None


def test_figures(clustered):
    plot = clustered.plot
    accuracy = plot.accuracy()
    assert len(accuracy.data) == len(CLASSES) + 1  # a line per class and all classes
    assert plot.drift().data[0].name == "conv1"
    assert len(plot.turnover(["red"]).data) == 1
    assert plot.accuracy(log_x=True).layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="no dissection"):
        plot.detectors()


def test_names_reach_plotly_escaped(tmp_path):
    hostile = ["<b>red</b>", "green & co", "<img src=x onerror=alert(1)>", "yellow"]
    small_run(tmp_path / "run", last=2, class_names=hostile)
    figure = Timeline(tmp_path / "run").plot.accuracy()
    names = [trace.name for trace in figure.data]
    assert "&lt;b&gt;red&lt;/b&gt;" in names and "green &amp; co" in names
    assert not any("<img" in n for n in names)


def test_a_timeline_made_before_the_first_snapshot_fills_on_refresh(tmp_path):
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run")
    timeline = monitor.timeline()  # a live view made before training starts
    assert len(timeline) == 0 and "no snapshots yet" in repr(timeline)
    monitor.on_snapshot(lambda written: timeline.refresh())
    monitor.observe(model, 0)
    train(model, opt, range(1, 5), monitor=monitor)
    monitor.flush()
    assert timeline.steps.tolist() == [0, 2, 4] and timeline.class_names == CLASSES
    with pytest.raises(Exception, match="no series.json"):
        Timeline(tmp_path / "elsewhere")
