"""Light and dark: the views follow JupyterLab's theme variables and, in the offline export, the
system's ``prefers-color-scheme``; text stays readable on its background everywhere (titles,
hints, neighbour cards, placeholders, the chart), the panels, the WebGL canvas and the graph
take the theme's background. Screenshots of both themes at 1400 and 800 px go to
tests/artifacts/theme-*.png.
"""

from __future__ import annotations

import pytest

from pages import background, canvas_colour, contrast, low_contrast, luminance, over, parse_colour

# JupyterLab's dark theme variables (the ones the views read), as JupyterLab Dark sets them.
JUPYTERLAB_DARK = """body {
  --jp-layout-color0: #111111; --jp-layout-color1: #212121; --jp-layout-color2: #424242;
  --jp-layout-color3: #616161; --jp-ui-font-color0: rgba(255, 255, 255, 1);
  --jp-ui-font-color1: rgba(255, 255, 255, 0.87); --jp-ui-font-color2: rgba(255, 255, 255, 0.54);
  --jp-ui-font-color3: rgba(255, 255, 255, 0.38); --jp-border-color0: #616161;
  --jp-border-color1: #616161; --jp-border-color2: #424242; --jp-brand-color1: #1976d2;
  --jp-warn-color0: #e65100; --jp-input-background: #212121;
  background: #111111; }"""


def chart_text_contrast(page):
    """The lowest contrast of the Plotly chart's tick labels with the chart's background."""
    fills = page.js("""() => [...document.querySelector('.nc-slot[data-part=chart]')
        .querySelectorAll('.xtick text, .ytick text, .x2tick text, .y2tick text, .annotation-text')]
        .map((t) => getComputedStyle(t).fill)""")
    bg = background(page, ".nc-slot[data-part=chart]")
    paper = page.js("getComputedStyle(document.querySelector('.nc-slot[data-part=chart] .main-svg')).backgroundColor")
    ground = over(parse_colour(paper), bg) if paper else bg
    return min(contrast(over(parse_colour(f), ground), ground) for f in fills)


def select_a_neuron(page, atlas):
    i = atlas.neuron_ids.index(atlas.layers[1] + ":2")
    page.click_point(i)
    page.page.wait_for_selector(".nc-side .nc-nb-card")


@pytest.mark.parametrize("width", [1400, 800])
def test_dark_export(open_page, playground_export, width):
    atlas, path = playground_export
    page = open_page(path, width=width, height=900, dark=True)
    select_a_neuron(page, atlas)
    page.page.wait_for_selector(".nc-slot[data-part=chart] .main-svg")
    page.page.wait_for_timeout(300)
    assert page.js("document.querySelector('.nc-scatter').closest('.notebookcarto').dataset.theme") == "dark"
    assert luminance(background(page, "body")) < 0.05
    for panel in page.js("[...document.querySelectorAll('.nc-view')].map((v) => getComputedStyle(v).backgroundColor)"):
        assert luminance(parse_colour(panel)) < 0.06, f"a panel stays light: {panel}"
    assert low_contrast(page) == []
    assert luminance(canvas_colour(page)) < 0.06, "the canvas stays light"
    assert luminance(canvas_colour(page, ".nc-graph .nc-viewport")) < 0.06
    assert chart_text_contrast(page) >= 4.5
    page.shot(f"theme-dark-{width}")


@pytest.mark.parametrize("width", [1400, 800])
def test_light_export(open_page, playground_export, width):
    atlas, path = playground_export
    page = open_page(path, width=width, height=900)
    select_a_neuron(page, atlas)
    page.page.wait_for_selector(".nc-slot[data-part=chart] .main-svg")
    assert page.js("document.querySelector('.nc-scatter').closest('.notebookcarto').dataset.theme") == "light"
    assert low_contrast(page) == []
    assert luminance(canvas_colour(page)) > 0.8
    assert luminance(canvas_colour(page, ".nc-graph .nc-viewport")) > 0.8
    assert chart_text_contrast(page) >= 4.5
    page.shot(f"theme-light-{width}")


def test_jupyterlab_theme_variables_win_and_follow_a_switch(open_page, playground_export):
    """In JupyterLab the views take JupyterLab's theme (not the system's), also when the user
    switches theme while the views are open."""
    atlas, path = playground_export
    page = open_page(path, width=1400, height=900)  # the system is light
    page.page.add_style_tag(content=JUPYTERLAB_DARK)
    page.js("() => { document.body.dataset.jpThemeLight = 'false'; document.body.dataset.jpThemeName = 'JupyterLab Dark'; }")
    page.page.wait_for_function("document.querySelector('.nc-scatter').closest('.notebookcarto').dataset.theme === 'dark'")
    assert background(page, ".nc-scatter")[:3] == (17, 17, 17)  # --jp-layout-color0
    page.page.wait_for_timeout(300)
    assert luminance(canvas_colour(page)) < 0.02
    select_a_neuron(page, atlas)
    assert low_contrast(page) == []
    assert chart_text_contrast(page) >= 4.5
    page.shot("theme-jupyterlab-dark")
