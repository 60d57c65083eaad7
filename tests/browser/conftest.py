"""Fixtures of the browser tests: one Chromium per session and the exported pages they open.

``hostile_export``: the playground atlas with stand-ins of every result whose class names,
first layer, a concept and the title are hostile strings (``helpers.HOSTILE``).
``playground_export``: the same kind of atlas with plain names, real attribution graphs
(``count_influence`` + ``attribution_graphs``), twelve concepts and a dissection gallery: what a
new user sees on the playground.
"""

from __future__ import annotations

import pytest

from helpers import HOSTILE, XSS, fake_results, hostile_atlas, launch, small_atlas

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import sync_playwright  # noqa: E402

from pages import Page  # noqa: E402

HOSTILE_CLASSES = ["striped circle", XSS, "yellow stars", HOSTILE[1], "red circle", HOSTILE[2],
                   HOSTILE[3], HOSTILE[4]]
CONCEPTS = ["red", "sky", "stripes", "grass", "dots", "wood", "blue", "checks", "metal",
            "water", "sand", "leaves"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def hostile_export(tmp_path_factory):
    """(atlas, path): hostile class, layer and concept names and title, every result."""
    from notebookcarto.views import to_html

    atlas, _, _ = hostile_atlas(class_names=HOSTILE_CLASSES)  # the first layer is hostile too
    assert atlas.layers[0] == XSS
    fake_results(atlas, xss=True, gallery=True)
    path = tmp_path_factory.mktemp("export") / "atlas.html"
    to_html(atlas, path, title=f"test {HOSTILE[1]} {XSS}")
    return atlas, path


@pytest.fixture(scope="session")
def playground_atlas():
    from notebookcarto.analyses import attribution_graphs, count_influence

    atlas, model, data = small_atlas(n=240, seed=3)
    fake_results(atlas, concepts=CONCEPTS, gallery=True)
    images, labels = data.tensors(progress=False)
    atlas.attach(count_influence(atlas, model, (images, labels), progress=False))
    atlas.attach(attribution_graphs(atlas, progress=False))
    return atlas


@pytest.fixture(scope="session")
def playground_export(playground_atlas, tmp_path_factory):
    """(atlas, path) of the playground atlas's Explorer."""
    path = tmp_path_factory.mktemp("playground") / "playground.html"
    playground_atlas.to_html(path)
    return playground_atlas, path


@pytest.fixture
def open_page(browser):
    """``open_page(path, **options)`` -> a ``Page`` (see pages.py), closed after the test."""
    opened = []

    def open_(path, **options):
        page = Page(browser, path, **options)
        opened.append(page)
        return page

    yield open_
    for page in opened:
        page.close()
