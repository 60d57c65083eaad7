"""The timeline view of a training run: made before training, it follows a Monitor while the loop
goes on; its traits come from the Timeline of the real series (a tiny playground CNN); choosing a
step loads that snapshot's Explorer; the offline export carries the whole timeline."""

import base64
import gzip
import json
import re
import struct

import pytest
import torch

from helpers import train_watched
from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
from notebookcarto.models import PlaygroundCNN
from notebookcarto.monitor import Monitor, Timeline
from notebookcarto.views import Explorer, TimelineView, timeline_html
from notebookcarto.views.export import MAGIC
from notebookcarto.views.timeline import CHARTS

pytestmark = pytest.mark.usefixtures("one_thread")

LAST = 6  # snapshots at steps 0, 2, 4, 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A playground CNN (width 4) trained for LAST steps under a Monitor (every 2 steps, with
    dissection), watched by two views made before the first snapshot: ``head`` stays on the
    newest step, ``held`` is moved back to step 0 by the user at step 3. ``seen``: the steps
    ``head`` held after each ``observe`` (during the loop)."""
    train = ConceptPlayground(n=200, size=32, seed=0)
    images, labels = train.tensors()
    probe = ConceptPlayground(n=48, size=32, seed=1)
    torch.manual_seed(0)
    model = PlaygroundCNN(len(train.classes), width=4)
    path = tmp_path_factory.mktemp("timeline-view") / "run"
    monitor = Monitor(path, probe, every=2, concepts=PlaygroundConcepts(probe), top_n=8,
                      background=False)
    head, held = TimelineView(monitor), TimelineView(monitor)
    empty = (head.steps, head.step, head.explorer, list(head.notes))
    seen = []

    def after(step):
        seen.append(list(head.steps))
        if step == 3:
            held.step = 0

    train_watched(monitor, model, (images, labels), LAST, after_step=after)
    monitor.close()
    return {"path": path, "head": head, "held": held, "empty": empty, "seen": seen}


def step_of(explorer: Explorer) -> int:
    return explorer.atlas.data_info["monitor"]["step"]


def test_the_view_follows_the_run_while_it_trains(run):
    steps, step, explorer, notes = run["empty"]
    assert steps == [] and step == -1 and explorer is None
    assert any("concepts=" in n for n in notes)  # no detectors before the first dissection
    assert run["seen"] == [[0], [0], [0, 2], [0, 2], [0, 2, 4], [0, 2, 4], [0, 2, 4, 6]]
    head, held = run["head"], run["held"]
    assert head.steps == [0, 2, 4, 6] and head.step == 6 and head.shown == 6
    assert step_of(head.explorer) == 6 and head.explorer.title == "snapshot of step 6"
    assert head.chart_names == list(CHARTS) and head.notes == []
    assert head.curves["steps"] == [0, 2, 4, 6] and head.title.endswith("4 snapshots")
    for chart in head.charts:  # drawn anew with every snapshot, so an export shows them all
        assert all(list(trace["x"]) == [0, 2, 4, 6] for trace in chart._widget_data), chart
    # the user's choice stays while new snapshots arrive
    assert held.steps == [0, 2, 4, 6] and held.step == 0 and step_of(held.explorer) == 0
    assert head.refresh() == [] and head.steps == [0, 2, 4, 6]


def test_the_traits_come_from_the_timeline(run):
    timeline = Timeline(run["path"])
    view = TimelineView(timeline)
    assert view.steps == [0, 2, 4, 6] and view.step == 6
    assert view.curves == json.loads(json.dumps(timeline.to_dict(neurons=False)))
    for name, chart in zip(view.chart_names, view.charts):
        figure = getattr(timeline.plot, name)()
        assert [t.name for t in chart.data] == [t.name for t in figure.data], name
        for drawn, source in zip(chart.data, figure.data):
            assert list(drawn.y) == pytest.approx(list(source.y), nan_ok=True), name
        assert chart.layout.shapes[0].x0 == 6  # the marker of the chosen step
    first = view.explorer
    first.selection = ["block2:1", "block3:0"]
    first.selected_class = timeline.class_names[3]
    view.step = 2
    assert step_of(view.explorer) == 2 and view.shown == 2
    assert first.comm is None  # the replaced Explorer is closed (its atlas freed)
    view.step = 4
    view.step = 2
    assert list(view.explorer.selection) == ["block2:1", "block3:0"]
    assert view.explorer.selected_class == timeline.class_names[3]
    with pytest.raises(ValueError, match=r"step 3 has no snapshot.*\[0, 2, 4, 6\]"):
        view.step = 3
    with pytest.raises(ValueError, match="has no snapshot"):
        TimelineView(timeline, step=5)
    with pytest.raises(TypeError, match="Timeline or a Monitor, got str"):
        TimelineView(str(run["path"]))


def page_header(path) -> dict:
    """The JSON header of an exported page's payload (its widget models and their state)."""
    text = path.read_text(encoding="utf-8")
    blob = re.search(r'id="nc-payload" data-encoding="gzip">([^<]+)</script>', text).group(1)
    raw = gzip.decompress(base64.b64decode(blob))
    assert raw[:4] == MAGIC
    length = struct.unpack("<I", raw[4:8])[0]
    return json.loads(raw[8:8 + length])


def test_the_export_carries_the_whole_timeline(run, tmp_path):
    timeline = Timeline(run["path"])
    path = tmp_path / "timeline.html"
    assert timeline_html(timeline, path, steps=[0, 6]) == str(path)
    header = page_header(path)
    models = header["models"]
    root = models[header["root"]]["state"]
    assert root["_view"] == "timeline" and root["step"] == 6
    assert root["curves"] == json.loads(json.dumps(timeline.to_dict(neurons=False)))
    assert root["steps"] == [0, 2, 4, 6] and root["explorer_steps"] == [0, 6]
    titles = [models[ref.removeprefix("anywidget:")]["state"]["title"]
              for ref in root["explorers"]]
    assert titles == ["snapshot of step 0", "snapshot of step 6"]
    assert root["explorer"] == root["explorers"][1]
    assert root["chart_names"] == list(CHARTS)
    charts = [models[ref.removeprefix("anywidget:")]["state"] for ref in root["charts"]]
    assert [len(c["_widget_data"]) for c in charts] == [len(getattr(timeline.plot, n)().data)
                                                  for n in CHARTS]
