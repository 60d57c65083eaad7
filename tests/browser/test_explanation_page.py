"""The explanation view in the exported Explorer: the chosen method's heatmap drawn over the
image (the opacity slider and the method switch change it), the deletion and insertion curves
of the chosen image, a click on a unit selecting its neuron in the scatter, a click on an
explained exemplar in the gallery showing its explanation; with an explainer, a click on an
unexplained exemplar asks the kernel to explain it (in a page whose host stands in for a kernel)
and does nothing in the export itself, which has none."""

from __future__ import annotations

import numpy as np
import pytest

from explained import IDS, explained_atlas
from helpers import small_atlas

VIEW = ".nc-explanation"
# mean RGB of the left and right halves of the drawn canvas
HALVES = """() => {
  const c = document.querySelector('.nc-explanation-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const sums = [[0, 0, 0], [0, 0, 0]];
  for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
    const side = x < c.width / 2 ? 0 : 1, p = 4 * (y * c.width + x);
    for (let k = 0; k < 3; k++) sums[side][k] += d[p + k];
  }
  return sums.map((s) => s.map((v) => v / (c.width * c.height / 2)));
}"""
CHART = "document.querySelector('.nc-explanation-chart')"


@pytest.fixture(scope="module")
def explanation_export(tmp_path_factory):
    atlas, found = explained_atlas()
    path = tmp_path_factory.mktemp("explanation") / "explanation.html"
    atlas.to_html(path)
    return atlas, found, path


def opened(open_page, path):
    page = open_page(path, width=1400, height=1000)
    page.page.wait_for_selector(f"{VIEW}[data-ready='1']")
    return page


def set_opacity(page, value):
    page.js("(v) => { const s = document.querySelector('.nc-opacity'); s.value = v;"
            " s.dispatchEvent(new Event('input')); }", str(value))
    page.page.wait_for_selector(f".nc-explanation-canvas[data-opacity='{value}']")


def test_heatmap_opacity_and_method(open_page, explanation_export):
    _, _, path = explanation_export
    page = opened(open_page, path)
    p = page.page
    assert p.get_attribute(".nc-explanation-canvas", "data-method") == "igospp"
    p.click(f"{VIEW} .nc-methods [data-method='left']")
    p.wait_for_selector(".nc-explanation-canvas[data-method='left']")
    assert p.get_attribute(f"{VIEW} .nc-methods [data-method='left']", "aria-pressed") == "true"
    assert p.locator(f"{VIEW} .nc-auc-row.nc-on").get_attribute("data-method") == "left"
    set_opacity(page, 0)
    bare = np.array(page.js(HALVES))
    set_opacity(page, 1)
    heat = np.array(page.js(HALVES))
    # "left" is 1 on the left half (a pale overlay there) and 0 on the right (nothing drawn)
    assert (heat[0] - bare[0]).mean() > 60
    np.testing.assert_allclose(heat[1], bare[1], atol=1)
    p.click(f"{VIEW} .nc-methods [data-method='igospp']")
    p.wait_for_selector(".nc-explanation-canvas[data-method='igospp']")
    assert not np.allclose(np.array(page.js(HALVES)), heat, atol=1)
    widths = page.js(f"{CHART}.data.map((t) => t.line.width)")
    assert widths == [3, 3, 1.5, 1.5, 1.5, 1.5]
    assert not page.errors and not page.blocked


def test_curves_follow_the_image(open_page, explanation_export):
    _, found, path = explanation_export
    page = opened(open_page, path)
    p = page.page
    assert p.locator(".nc-explanation-chart .main-svg").count() >= 1
    assert p.locator(".nc-explanation-chart .scatterlayer .trace").count() == 6
    p.select_option(f"{VIEW} .nc-explanation-image", str(IDS[2]))
    p.wait_for_selector(f".nc-explanation-canvas[data-image='{IDS[2]}']")
    expected = found.insertion["igos"]
    assert np.abs(expected[2] - expected[0]).max() > 1e-6  # the images' curves differ
    p.wait_for_function(f"(y) => {CHART}.data[3].y.every((v, i) => Math.abs(v - y[i]) < 1e-7)",
                        arg=expected[2].tolist())
    assert p.locator(f"{VIEW} .nc-auc-row[data-method='igos'] span").nth(1).inner_text() == \
        f"{found.deletion_auc['igos'][2]:.3f}"
    page.shot("explanation", VIEW)


def test_unit_click_selects_the_neuron_and_exemplars_show_theirs(open_page, explanation_export):
    atlas, found, path = explanation_export
    page = opened(open_page, path)
    p = page.page
    first = found.units.neurons[0][0]
    p.click(f"{VIEW} .nc-xunit[data-neuron='{first}']")
    index = atlas.neuron_ids.index(first)
    page.wait_selected(f"s.length === 1 && s[0] === {index}")
    assert "nc-on" in p.get_attribute(f"{VIEW} .nc-xunit[data-neuron='{first}']", "class")
    # an exemplar of the last explained image, shown in the gallery once its neuron is selected
    images = atlas.get("patches").images
    neuron, rank = (int(v[0]) for v in np.nonzero(images == IDS[2]))
    page.click_point(neuron)
    row = f".nc-gallery-row[data-neuron='{atlas.neuron_ids[neuron]}']"
    patch = f"{row} .nc-patch[data-rank='{rank}']"
    p.click(patch)
    p.wait_for_selector(f".nc-explanation-canvas[data-image='{IDS[2]}']")
    assert p.locator(f"{VIEW} .nc-explanation-image").input_value() == str(IDS[2])
    assert not page.errors and not page.blocked


# the export's host with a kernel standing in: not offline, and what views send (and the model
# that sent it) kept in the page
LIVE = {"offline:!0": "offline:!1",
        "send(){}": "send(m){(window.ncSent=window.ncSent||[]).push(m),window.ncModel=this}"}


class Unused:
    """An explainer for pages that never reach a kernel."""

    def update(self, atlas, images):
        raise AssertionError("an exported page does not explain")


def exports(atlas, folder):
    """(the exported Explorer of ``atlas`` with an explainer, that page with a stand-in
    kernel)."""
    from notebookcarto.views import to_html

    path = to_html(atlas, folder / "offline.html", explainer=Unused())
    text = open(path, encoding="utf-8").read()
    for old, new in LIVE.items():
        assert text.count(old) == 1, f"the export's host has no {old!r}: update LIVE"
        text = text.replace(old, new)
    live = folder / "live.html"
    live.write_text(text, encoding="utf-8")
    return path, live


@pytest.fixture(scope="module")
def unexplained_export(tmp_path_factory):
    """(atlas that explains no image, its exports): see ``exports``."""
    atlas, _, _ = small_atlas(n=60, seed=1)
    return atlas, *exports(atlas, tmp_path_factory.mktemp("unexplained"))


def click_exemplar(page, atlas, neuron, rank):
    page.click_point(neuron)
    row = f".nc-gallery-row[data-neuron='{atlas.neuron_ids[neuron]}']"
    page.page.click(f"{row} .nc-patch[data-rank='{rank}']")


def status(page):
    p = page.page
    return {"state": p.get_attribute(f"{VIEW} .nc-explain-status", "data-state"),
            "role": p.get_attribute(f"{VIEW} .nc-explain-status", "role"),
            "text": p.inner_text(f"{VIEW} .nc-explain-status")}


def test_an_unexplained_exemplar_asks_the_kernel(open_page, unexplained_export):
    atlas, _, live = unexplained_export
    page = opened(open_page, live)
    p = page.page
    assert "click an exemplar to explain it" in p.inner_text(f"{VIEW} .nc-message")
    click_exemplar(page, atlas, 0, 0)
    image = int(atlas.get("patches").images[0, 0])
    p.wait_for_selector(f"{VIEW} .nc-explain-status[data-state='working']")
    assert status(page) == {"state": "working", "role": "status",
                            "text": f"explaining image {image}…"}
    assert page.js("window.ncSent") == [{"type": "explain", "image": image}]
    click_exemplar(page, atlas, 0, 1)  # one request at a time
    assert page.js("window.ncSent") == [{"type": "explain", "image": image}]
    # the kernel takes it up, then fails: its error is shown
    page.js("(image) => { const m = window.ncModel; m.set('pending', image);"
            " m.set('error', `could not explain image ${image}: boom`); m.set('pending', -1); }",
            image)
    assert status(page) == {"state": "error", "role": "alert",
                            "text": f"could not explain image {image}: boom"}
    assert not page.errors and not page.blocked


def test_in_the_export_an_unexplained_exemplar_stays_inert(open_page, unexplained_export):
    atlas, path, _ = unexplained_export
    page = opened(open_page, path)
    p = page.page
    assert "explaining needs the notebook's kernel" in p.inner_text(f"{VIEW} .nc-message")
    click_exemplar(page, atlas, 0, 0)
    p.wait_for_timeout(300)
    assert status(page)["state"] == "idle" and page.js("window.ncSent") is None
    assert not page.errors and not page.blocked


def test_a_new_explanation_is_drawn_again(open_page, explanation_export, tmp_path):
    atlas, found, _ = explanation_export
    _, live = exports(atlas, tmp_path)
    page = opened(open_page, live)
    p = page.page
    images = atlas.get("patches").images
    neuron, rank = (int(v[0]) for v in np.nonzero((images >= 0) & ~np.isin(images, IDS)))
    click_exemplar(page, atlas, neuron, rank)
    assert page.js("window.ncSent") == [{"type": "explain", "image": int(images[neuron, rank])}]
    # the kernel answers with new traits (here the same explanation again, without a chart: the
    # page cannot make the new chart widget the kernel would send) and another image
    page.js("(image) => { const m = window.ncModel; m.set('pending', image);"
            " m.set('chart', null); m.set('image_ids', { ...m.get('image_ids') });"
            " m.set('image', image); m.set('pending', -1); }", IDS[1])
    p.wait_for_selector(f".nc-explanation-canvas[data-image='{IDS[1]}']")
    assert p.locator(".nc-explanation-canvas").count() == 1
    assert p.locator(f"{VIEW} .nc-explanation-image option").count() == len(IDS)
    assert p.locator(f"{VIEW} .nc-explanation-image").input_value() == str(IDS[1])
    assert p.locator(f"{VIEW} .nc-auc-row[data-method]").count() == len(found.methods)
    assert p.locator(f"{VIEW} .nc-auc-row[data-method='igos'] span").nth(1).inner_text() == \
        f"{found.deletion_auc['igos'][1]:.3f}"
    assert status(page)["state"] == "idle"
    assert not page.errors and not page.blocked
