"""The timeline view in an exported page: the slider (or a click on a curve) chooses a step and the
Explorer below shows that step's snapshot, keeping the selected class; the curves are drawn with
a marker at the chosen step."""

from __future__ import annotations

import pytest
import torch

from helpers import train_watched

TIMELINE = "document.querySelector('.nc-timeline').ncTimeline"
CHART = "document.querySelector('.nc-timeline-chart[data-chart={name}]')"
CHARTS = ["accuracy", "drift", "detectors"]


@pytest.fixture(scope="module")
def timeline_export(tmp_path_factory):
    """(timeline, path): a playground CNN (width 4) trained for 4 steps under a Monitor
    (snapshots at 0, 2, 4, with dissection), written with ``timeline_html``."""
    from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
    from notebookcarto.models import PlaygroundCNN
    from notebookcarto.monitor import Monitor
    from notebookcarto.views import timeline_html

    train = ConceptPlayground(n=160, size=32, seed=0)
    images, labels = train.tensors()
    probe = ConceptPlayground(n=40, size=32, seed=1)
    torch.manual_seed(0)
    model = PlaygroundCNN(len(train.classes), width=4)
    folder = tmp_path_factory.mktemp("timeline")
    monitor = Monitor(folder / "run", probe, every=2, concepts=PlaygroundConcepts(probe),
                      top_n=8)
    train_watched(monitor, model, (images, labels), 4)
    timeline = monitor.timeline()
    return timeline, timeline_html(timeline, folder / "timeline.html")


def shown(page):
    """(chosen step, step of the Explorer shown, its title)."""
    return (page.js(f"{TIMELINE}.step()"), page.js(f"{TIMELINE}.shown()"),
            page.page.inner_text(".nc-timeline-snapshot .nc-explorer-title"))


def markers(page):
    return [page.js(f"{CHART.format(name=name)}._fullLayout.shapes[0].x0") for name in CHARTS]


def test_the_slider_shows_the_chosen_snapshot(open_page, timeline_export):
    timeline, path = timeline_export
    page = open_page(path, width=1400, height=1000)
    page.page.wait_for_selector(".nc-timeline[data-ready='1']")
    assert shown(page) == (4, 4, "snapshot of step 4")
    assert page.js(f"{TIMELINE}.charts()") == CHARTS
    assert markers(page) == [4, 4, 4]
    # every curve is drawn: a line per class (and all classes), per layer (and all layers)
    for name, count in (("accuracy", len(timeline.class_names) + 1),
                        ("drift", len(timeline.layers)),
                        ("detectors", len(timeline.layers) + 1)):
        lines = page.js(f"[...{CHART.format(name=name)}.querySelectorAll('.scatterlayer .trace"
                        " path.js-line')].map((p) => p.getAttribute('d') || '')")
        assert len(lines) == count and all(d.count("L") >= 1 for d in lines), (name, lines)
    page.page.locator(".nc-class-row[data-cls='2']").click()
    slider = page.page.locator(".nc-timeline-slider")
    slider.focus()
    page.page.keyboard.press("Home")
    page.page.wait_for_function(f"{TIMELINE}.shown() === 0")
    assert shown(page) == (0, 0, "snapshot of step 0")
    assert "step 0 · snapshot 1 of 3" in page.page.inner_text(".nc-timeline-step")
    assert markers(page) == [0, 0, 0]
    assert page.js("document.querySelector('.nc-class-row.nc-on').dataset.cls") == "2"
    page.page.keyboard.press("ArrowRight")
    page.page.wait_for_function(f"{TIMELINE}.shown() === 2")
    assert shown(page) == (2, 2, "snapshot of step 2") and markers(page) == [2, 2, 2]
    # a click on a point of a curve chooses its step (the last point of the first layer's drift)
    point = page.page.locator(".nc-timeline-chart[data-chart=drift] .scatterlayer"
                              " .trace:first-child .points path").last.bounding_box()
    x, y = point["x"] + point["width"] / 2, point["y"] + point["height"] / 2
    page.page.mouse.move(x - 10, y - 10)
    page.page.mouse.move(x, y, steps=3)
    page.page.mouse.click(x, y)
    page.page.wait_for_function(f"{TIMELINE}.shown() === 4")
    assert page.page.input_value(".nc-timeline-slider") == "2" and markers(page) == [4, 4, 4]
    assert page.errors == [] and page.blocked == []
