"""User strings are text everywhere: class, layer and concept names and the title, in every view
of the offline export, in the Plotly chart (its axis labels, hover labels and titles), in the
graph's labels and cards, the hover cards, the legend, the search and the dissection panel.

The hostile names (``helpers.HOSTILE``) would make a link, huge text, an image, an SVG with a
handler or a script if they were read as HTML anywhere; after each interaction that shows them,
the page must hold no element made from one (``dirty`` lists any) and no dialog.
"""

from __future__ import annotations

from helpers import HOSTILE, XSS
from notebookcarto.views._common import short_label

# Elements or styles a hostile string would make if read as HTML (by the DOM or by Plotly's
# pseudo-HTML): inline handlers, javascript: links, the image, huge text, bold from <b>.
DIRTY = """() => {
  const found = [];
  const markers = ["CLICKME", "BIGTEXT", "alert("];
  for (const el of document.querySelectorAll("*")) {
    const tag = el.tagName.toLowerCase();
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase(), value = String(attr.value);
      if (name.startsWith("on")) found.push(`${tag}[${name}]`);
      if (/^\\s*javascript:/i.test(value)) found.push(`${tag}[${name}=${value}]`);
      if ((name === "src" || name === "href" || name.endsWith(":href")) && value === "x") found.push(`${tag}[src=x]`);
    }
    if (["a", "script", "img", "iframe", "object", "embed"].includes(tag)) {
      const text = (el.textContent || "") + " " + [...el.attributes].map((a) => a.value).join(" ");
      if (tag !== "script" || el.id !== "nc-payload") {
        for (const m of markers) if (text.includes(m)) found.push(`${tag} with ${m}`);
      }
    }
    const style = el.getAttribute("style") || "";
    if (/font-size:\\s*80px/.test(style)) found.push(`${tag} with font-size 80px`);
    if ((tag === "b" || tag === "i") && /bold|more/.test(el.textContent)) found.push(`<${tag}> from a name`);
    if (tag === "tspan" && /font-weight:\\s*bold/.test(style) && el.textContent === "bold") found.push("bold tspan from <b>");
  }
  return found;
}"""


def dirty(page):
    return page.js(DIRTY)


def chart_text(page) -> str:
    return page.js("document.querySelector('.nc-slot[data-part=chart] .main-svg').textContent")


def test_names_are_text_in_every_view(open_page, hostile_export):
    atlas, path = hostile_export
    page = open_page(path, width=1400, height=1100)
    p = page.page
    assert dirty(page) == [], "on load"
    assert p.title() == f"test {HOSTILE[1]} {XSS}"
    assert p.locator(".nc-explorer-title").inner_text() == f"test {HOSTILE[1]} {XSS}"
    # the sidebar and the chart's class axis hold every name as text
    names = p.locator(".nc-class-name").all_text_contents()
    for name in atlas.class_names:
        assert name in names
    p.wait_for_selector(".nc-slot[data-part=chart] .main-svg")
    text = chart_text(page)
    for name in (HOSTILE[1], HOSTILE[2], HOSTILE[3], HOSTILE[4]):  # shortened on the axis
        assert short_label(name) in text, f"{name} is not shown as text in the chart"
    # the chart's layer axis holds the hostile layer name
    assert short_label(XSS) in text
    assert dirty(page) == [], "chart"

    # hover a bar of a hostile class: Plotly's hover label is text too
    bar = p.locator(".nc-slot[data-part=chart] .bars .point").nth(atlas.class_names.index(HOSTILE[1]))
    bar.hover(force=True)
    p.wait_for_selector(".nc-slot[data-part=chart] .hoverlayer .hovertext")
    assert HOSTILE[1] in p.locator(".nc-slot[data-part=chart] .hoverlayer").text_content()
    assert dirty(page) == [], "chart hover"

    # a hostile class selected: chart highlight, graph picker, relevance legend, filter hint
    p.locator(f".nc-class-row[data-cls='{atlas.class_names.index(HOSTILE[2])}']").click()
    assert p.get_attribute(".nc-class-search", "placeholder") == HOSTILE[2]
    p.select_option(".nc-scatter .nc-colour", "class relevance")
    p.wait_for_function(f"document.querySelector('.nc-legend').textContent.includes({HOSTILE[2]!r})")
    p.select_option(".nc-scatter .nc-colour", "concept")
    p.wait_for_function(f"document.querySelector('.nc-legend').textContent.includes({XSS!r})")
    p.locator(".nc-class-search").fill("<")
    assert HOSTILE[3] in p.locator(".nc-picker-list").inner_text()
    p.locator(".nc-class-search").fill("")
    p.locator(".nc-class-search").press("Escape")
    assert dirty(page) == [], "class selected"

    # graph: layer labels, node labels and the node card hold the hostile layer name
    assert XSS in p.locator(".nc-layer-label").all_text_contents()
    p.locator(".nc-graph .nc-fit").click()  # all of the graph in view
    node = p.locator(f".nc-graph .nc-node[data-id^={XSS[:4]!r}]").first
    node.scroll_into_view_if_needed()
    node.hover()
    p.wait_for_selector(".nc-gcard")
    assert XSS in p.locator(".nc-gcard").inner_text()
    assert dirty(page) == [], "graph card"

    # scatter: the hover card of a neuron of the hostile layer
    page.hover_point(0)
    p.locator(".nc-scatter .nc-card").wait_for(state="visible")
    assert p.locator(".nc-scatter .nc-card .nc-card-title").inner_text() == f"{XSS}:0"
    # the neuron search lists neurons of the hostile layer and the hostile concept
    search = p.locator(".nc-neuron-search")
    search.fill("img src")
    p.wait_for_selector(".nc-search-item")
    assert XSS in p.locator(".nc-search-results").inner_text()
    search.press("Enter")
    page.wait_selected("s.length > 1")
    assert dirty(page) == [], "search"
    # the gallery and the neighbour cards of a selected neuron
    page.click_point(0)
    p.wait_for_selector(f".nc-gallery-row[data-neuron='{XSS}:0']")
    assert XSS in p.locator(".nc-side").inner_text()
    # the class embedding's labels and card
    p.locator(".nc-scatter button[data-mode='classes']").click()
    p.wait_for_function(f"document.querySelector('.nc-scatter').dataset.points == '{len(atlas.class_names)}'")
    labels = p.locator(".nc-point-label").all_text_contents()
    assert HOSTILE[4] in labels and HOSTILE[1] in labels
    assert dirty(page) == [], "class embedding"

    # the dissection panel: the hostile layer and concept in the summary, the table, the masks
    panel = p.locator(".nc-dissection")
    panel.scroll_into_view_if_needed()
    assert XSS in panel.inner_text()
    p.locator(".nc-dissection .nc-unit-row").first.click()
    p.wait_for_selector(".nc-dissection .nc-mask")
    assert dirty(page) == [], "dissection"
    page.shot("xss-explorer")
    assert page.dialogs == [] and page.blocked == []
    assert not [e for e in page.errors if "GL Driver" not in e], page.errors
