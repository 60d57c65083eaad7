"""An exported page opened in headless Chromium, and what the browser tests read from it.

``Page`` opens an offline export with every non-file request aborted and records what the page
tried to fetch, its errors and its dialogs; its methods read the views through their test hooks
(``ncScatter``, ``ncGraph``, ``ncExplorer`` on the views' root elements) and measure colours.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from helpers import ARTIFACTS, TIMEOUT as DEFAULT_TIMEOUT

# milliseconds a wait may take (NOTEBOOKCARTO_BROWSER_TIMEOUT shortens it, e.g. to see many
# tests fail quickly)
TIMEOUT = int(os.environ.get("NOTEBOOKCARTO_BROWSER_TIMEOUT", DEFAULT_TIMEOUT))

SCATTER = "document.querySelector('.nc-scatter').ncScatter"


class Page:
    """An opened export: ``page`` (Playwright), ``blocked`` requests, ``errors``, ``dialogs``.

    ``width`` x ``height`` is the window; ``dark`` asks for ``prefers-color-scheme: dark``;
    ``container`` (px) puts the page's root in a box of that width, as a notebook's output area
    is narrower than the window."""

    def __init__(self, browser, path, *, width: int = 1400, height: int = 1000,
                 dark: bool = False, container: int | None = None, wait: bool = True):
        self.page = browser.new_page(viewport={"width": width, "height": height},
                                     color_scheme="dark" if dark else "light",
                                     accept_downloads=True)
        self.page.set_default_timeout(TIMEOUT)
        self.blocked, self.errors, self.dialogs = [], [], []
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

        def route(request_route):
            if request_route.request.url.startswith("file://"):
                request_route.continue_()
            else:
                self.blocked.append(request_route.request.url)
                request_route.abort()

        self.page.route("**/*", route)
        if container:
            self.page.add_init_script(
                "document.addEventListener('DOMContentLoaded', () => { const r ="
                f" document.getElementById('nc-root'); r.style.width = '{container}px'; }});")
        self.page.goto(Path(path).as_uri())
        if wait:
            self.ready()

    def ready(self):
        self.page.wait_for_selector("body[data-ready='1']")
        if self.page.locator(".nc-scatter").count():
            self.page.wait_for_selector(".nc-scatter[data-drawn]")
        if self.page.locator(".nc-graph").count():
            self.page.wait_for_selector(".nc-graph[data-nodes]")

    def close(self):
        self.page.close()

    def shot(self, name, locator=None, full_page=True):
        ARTIFACTS.mkdir(exist_ok=True)
        target = self.page if locator is None else self.page.locator(locator).first
        kwargs = {"full_page": full_page} if locator is None else {}
        return target.screenshot(path=str(ARTIFACTS / f"{name}.png"), **kwargs)

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    # -- the scatter --------------------------------------------------------------------------
    def selected(self):
        return self.js(f"{SCATTER}.selected()")

    def drawn(self):
        return int(self.page.get_attribute(".nc-scatter", "data-drawn"))

    def position(self, i):
        return self.js(f"{SCATTER}.position({int(i)})")

    def canvas_box(self):
        return self.page.locator(".nc-scatter canvas").first.bounding_box()

    def hover_point(self, i):
        self.page.locator(".nc-scatter canvas").first.scroll_into_view_if_needed()
        pos = self.position(i)
        box = self.canvas_box()
        x, y = box["x"] + pos[0], box["y"] + pos[1]
        self.page.mouse.move(x - 30, y - 30)
        self.page.mouse.move(x, y, steps=4)
        return x, y

    def click_point(self, i):
        """Select point i with a click on it."""
        x, y = self.hover_point(i)
        self.page.mouse.click(x, y)
        self.page.wait_for_function(f"{SCATTER}.selected().includes({int(i)})")
        return x, y

    def wait_selected(self, condition: str):
        """Wait until ``condition`` (JS, of ``s``: the selected points) holds."""
        self.page.wait_for_function(f"(() => {{ const s = {SCATTER}.selected(); return {condition}; }})()")


# ---- colours -----------------------------------------------------------------------------------

def parse_colour(text: str) -> tuple[float, float, float, float]:
    """A computed CSS colour ("rgb(1, 2, 3)", "rgba(...)", "#rrggbb") -> (r, g, b, a), 0-255
    and 0-1."""
    text = text.strip()
    if text.startswith("#"):
        h = text[1:]
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 1.0)
    numbers = [float(v) for v in re.findall(r"[\d.]+", text)]
    if text.startswith("color(srgb"):
        numbers = [v * 255 for v in numbers[:3]] + numbers[3:]
    r, g, b = numbers[:3]
    return (r, g, b, numbers[3] if len(numbers) > 3 else 1.0)


def over(fg, bg):
    """``fg`` (r, g, b, a) drawn over the opaque ``bg``."""
    a = fg[3]
    return tuple(fg[i] * a + bg[i] * (1 - a) for i in range(3)) + (1.0,)


def luminance(colour) -> float:
    """WCAG relative luminance of an (r, g, b[, a]) colour."""
    def channel(v):
        v = v / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    """WCAG contrast ratio of two opaque colours."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# deficient vision in linear RGB (Machado, Oliveira and Fernandes 2009, severity 1.0)
CVD = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def _linear(rgb):
    v = np.asarray(rgb[:3], float) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def lab(rgb, vision: str | None = None) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour, as a person with ``vision`` (a CVD key) sees it."""
    lin = _linear(rgb)
    if vision:
        lin = np.clip(CVD[vision] @ lin, 0, 1)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def min_distance(colours, vision: str | None = None) -> float:
    """The smallest CIE76 distance between two of ``colours`` as seen with ``vision``."""
    points = [lab(parse_colour(c) if isinstance(c, str) else c, vision) for c in colours]
    return min(float(np.linalg.norm(a - b)) for i, a in enumerate(points) for b in points[i + 1:])


def ink(png: bytes, background=(255, 255, 255), tolerance: int = 30) -> int:
    """Pixels of a screenshot that clearly differ from ``background``."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.asarray(background[:3])).max(axis=2) > tolerance).sum())


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def boxes_overlap(a, b, margin: float = 0.0) -> bool:
    """Whether two {x, y, width, height} boxes overlap by more than ``margin`` px."""
    return (a["x"] + a["width"] - margin > b["x"] and b["x"] + b["width"] - margin > a["x"]
            and a["y"] + a["height"] - margin > b["y"] and b["y"] + b["height"] - margin > a["y"])


# ---- what a theme makes of the views -----------------------------------------------------------

# Every visible element with text of its own inside the views: its colour and the colour it is
# drawn on (the first opaque background up its ancestors, lighter ones composed over it), and
# the placeholders of the inputs (::placeholder).
TEXTS = """() => {
  const out = [];
  const rgba = (c) => { const m = c.match(/[\\d.]+/g) || ["0", "0", "0", "0"]; return m.map(Number).concat(m.length < 4 ? [1] : []).slice(0, 4); };
  const ground = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 0.99) break; }
    }
    let bg = layers.length && layers[layers.length - 1][3] >= 0.99 ? layers.pop() : rgba(getComputedStyle(document.body).backgroundColor);
    for (const c of layers.reverse()) bg = [0, 1, 2].map((i) => c[i] * c[3] + bg[i] * (1 - c[3])).concat([1]);
    return bg;
  };
  for (const el of document.querySelectorAll(".nc-explorer *, .nc-view *")) {
    if (el.closest(".nc-slot[data-part=chart]") || el.closest("svg")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const rect = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!own || !rect.width || !rect.height || style.visibility === "hidden" || Number(style.opacity) < 0.5) continue;
    if (el.closest("[style*='display: none']")) continue;
    out.push({ text: el.textContent.trim().slice(0, 40), cls: el.className, color: rgba(style.color), bg: ground(el) });
  }
  for (const el of document.querySelectorAll(".notebookcarto input[placeholder]")) {
    if (!el.getBoundingClientRect().width) continue;
    out.push({ text: "placeholder " + el.placeholder.slice(0, 30), cls: el.className,
               color: rgba(getComputedStyle(el, "::placeholder").color), bg: ground(el) });
  }
  return out;
}"""


def low_contrast(page, minimum=3.0):
    """The texts of the views whose contrast with their background is below ``minimum``."""
    bad = []
    for item in page.js(TEXTS):
        bg = item["bg"][:3] + [1.0]
        fg = over(tuple(v for v in item["color"][:3]) + (item["color"][3],), bg)
        ratio = contrast(fg, bg)
        if ratio < minimum:
            bad.append((item["text"], item["cls"], round(ratio, 2)))
    return bad


def background(page, selector):
    return parse_colour(page.js(f"getComputedStyle(document.querySelector({selector!r})).backgroundColor"))


def canvas_colour(page, selector=".nc-scatter canvas"):
    """The most common colour of an element on screen (the scatter's canvas: its background)."""
    shot = pixels(page.page.locator(selector).first.screenshot())
    flat = shot.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    return tuple(int(v) for v in values[counts.argmax()]) + (1.0,)
