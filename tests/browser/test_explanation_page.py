"""The explanation view in the exported Explorer: the chosen method's heatmap drawn over the
image (the opacity slider and the method switch change it), the deletion and insertion curves
of the chosen image, a click on a unit selecting its neuron in the scatter, and a click on an
explained exemplar in the gallery showing its explanation."""

from __future__ import annotations

import numpy as np
import pytest

from explained import IDS, explained_atlas

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
