"""Live JupyterLab: run examples/quickstart.ipynb, interact with the Explorer, and check the
selection round trip between the page and the kernel.

The test starts ``jupyter lab`` on 127.0.0.1 (a free port, a temporary HOME, no token), opens a
copy of the notebook in headless Chromium, runs all cells, clicks a node of the attribution graph
and reads ``explorer.selection`` in the kernel (through a second client on the kernel's connection
file); then it sets the selection and the class from Python and waits for the views to follow.

It runs twice: in JupyterLab Light in a wide window, and in JupyterLab Dark in a narrow one with
the file browser open (the notebook is then narrower than the window). There the views must take
JupyterLab's dark theme (readable text, dark panels and canvas), lay out by the notebook's width
(the chart and the canvas fit their panels) and leave the wheel to the notebook.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import ARTIFACTS, shared_cache
from pages import canvas_colour, low_contrast, luminance, parse_colour

pytest.importorskip("playwright.sync_api")
jupyter_client = pytest.importorskip("jupyter_client")

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


@pytest.fixture
def lab(request, tmp_path, tmp_path_factory):
    """A running JupyterLab (theme ``request.param``: "light" or "dark") serving a copy of the
    quickstart notebook: (url, runtime dir)."""
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.skip(f"no jupyter next to {sys.executable}")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(REPO / "examples" / "quickstart.ipynb", work / "quickstart.ipynb")
    runtime = home / "runtime"
    env = dict(os.environ, HOME=str(home), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(runtime), IPYTHONDIR=str(home / ".ipython"),
               NOTEBOOKCARTO_CACHE=str(shared_cache(tmp_path_factory)))
    # no "news" toast over the page
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "themes.jupyterlab-settings").write_text(
        json.dumps({"theme": THEMES[getattr(request, "param", "light")]}))
    port = free_port()
    command = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", "--IdentityProvider.token=",
               "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
               f"--ServerApp.root_dir={work}", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(command, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail("jupyter lab exited:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not start within 90 s")
                time.sleep(0.5)
        yield url, runtime
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def kernel_client(url, runtime):
    sessions = json.load(urllib.request.urlopen(f"{url}/api/sessions", timeout=10))
    (session,) = [s for s in sessions if s["path"].endswith("quickstart.ipynb")]
    client = jupyter_client.BlockingKernelClient(
        connection_file=str(runtime / f"kernel-{session['kernel']['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return client


def wait_for_kernel(url, timeout: float = 120) -> None:
    """Wait until the notebook's kernel has started and is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = json.load(urllib.request.urlopen(f"{url}/api/sessions", timeout=10))
        states = [s["kernel"]["execution_state"] for s in sessions
                  if s["path"].endswith("quickstart.ipynb") and s.get("kernel")]
        if states and states[0] == "idle":
            return
        time.sleep(0.5)
    pytest.fail("the notebook's kernel did not start")


def run_in_kernel(client, code: str) -> str:
    """Run code in the notebook's kernel; its printed output."""
    msg_id = client.execute(code, store_history=False)
    out = []
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


class Lab:
    """The JupyterLab page as the helpers of pages.py read it."""

    def __init__(self, page):
        self.page = page

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)


def check_fit(page, theme):
    """The views in this notebook: their theme, their layout by the notebook's width, the
    wheel left to the notebook."""
    lab = Lab(page)
    explorer = page.locator(".nc-explorer").first
    width = explorer.bounding_box()["width"]
    layout = page.get_attribute(".nc-explorer", "data-layout")
    assert layout == ("wide" if width >= 1180 else "medium" if width >= 760 else "narrow"), (layout, width)
    sizes = lab.js("""() => { const w = (s) => document.querySelector(s).getBoundingClientRect().width;
        return [w('.nc-slot[data-part=scatter]'), w('.nc-scatter canvas'), w('.nc-slot[data-part=chart]'),
                w('.nc-slot[data-part=chart] .main-svg')]; }""")
    slot, canvas, chart, figure = sizes
    assert canvas >= slot - 4 and canvas >= 400, sizes
    assert chart - 24 <= figure <= chart + 1, sizes
    assert lab.js("document.querySelector('.nc-scatter').closest('.notebookcarto').dataset.theme") == theme
    for panel in lab.js("[...document.querySelectorAll('.nc-view')].map((v) => getComputedStyle(v).backgroundColor)"):
        assert (luminance(parse_colour(panel)) < 0.06) == (theme == "dark"), panel
    assert low_contrast(lab) == []
    ground = luminance(canvas_colour(lab))
    assert ground < 0.06 if theme == "dark" else ground > 0.8
    assert (luminance(canvas_colour(lab, ".nc-graph .nc-viewport")) < 0.06) == (theme == "dark")
    # the wheel over the projection scrolls the notebook, and zooms nothing
    canvas_box = page.locator(".nc-scatter canvas").first.bounding_box()
    page.mouse.move(canvas_box["x"] + canvas_box["width"] / 2, canvas_box["y"] + canvas_box["height"] / 2)
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    before = lab.js(f"document.querySelector({scroller!r}).scrollTop")
    probe = lab.js("document.querySelector('.nc-scatter').ncScatter.position(3)")
    page.mouse.wheel(0, 200)
    page.wait_for_function(f"document.querySelector({scroller!r}).scrollTop !== {before}")
    assert lab.js("document.querySelector('.nc-scatter').ncScatter.position(3)") == probe


@pytest.mark.parametrize("lab, width", [("light", 1600), ("dark", 1100)], indirect=["lab"],
                         ids=["light-wide", "dark-narrow"])
def test_quickstart_live_in_jupyterlab(lab, width, request, browser):
    theme = request.node.callspec.params["lab"]
    url, runtime = lab
    page = browser.new_page(viewport={"width": width, "height": 1300})
    page.set_default_timeout(TIMEOUT)
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{url}/lab/tree/quickstart.ipynb")
    client = None
    try:
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        if width < 1400:  # a narrow notebook: the file browser open beside it
            if not page.locator(".jp-FileBrowser").first.is_visible():
                page.locator(".jp-SideBar [data-id='filebrowser']").first.click()
            page.wait_for_selector(".jp-FileBrowser", state="visible")
        wait_for_kernel(url)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_selector(".nc-explorer[data-ready='1']")
        page.wait_for_selector(".nc-scatter[data-drawn]")
        page.get_by_text("notebookcarto-quickstart.html").first.wait_for()  # last cell ran
        page.wait_for_selector(".nc-slot[data-part=chart] .main-svg")
        page.wait_for_timeout(500)
        page.locator(".nc-explorer").first.scroll_into_view_if_needed()
        check_fit(page, theme)
        client = kernel_client(url, runtime)
        before = run_in_kernel(client, "print(list(explorer.selection))")
        assert "block4:" in before  # the notebook set it from Python; the views show it
        page.wait_for_selector(".nc-gallery-row[data-neuron^='block4:']")

        # interact: click a node of the graph -> the kernel sees the new selection
        page.locator(".nc-graph .nc-fit").click()  # all of the graph in view
        node = page.locator(".nc-graph .nc-node").last
        node.scroll_into_view_if_needed()
        neuron = node.get_attribute("data-id")
        node.click()
        page.wait_for_selector(f".nc-gallery-row[data-neuron='{neuron}']")
        deadline = time.monotonic() + 60
        while True:
            now = run_in_kernel(client, "print(list(explorer.selection))")
            if now.strip() == str([neuron]):
                break
            assert time.monotonic() < deadline, f"kernel selection stayed {now!r}"
            time.sleep(0.5)
        frame = run_in_kernel(client, "print(explorer.selection.frame.index.tolist())")
        assert neuron in frame
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".nc-explorer").first.screenshot(path=str(ARTIFACTS / f"lab-click-{theme}.png"))

        # set it from Python -> every view follows
        run_in_kernel(client, "explorer.selection = ['block2:5', 'block3:1']\n"
                              "explorer.selected_class = test.classes[3]")
        page.wait_for_selector(".nc-gallery-row[data-neuron='block2:5']")
        page.wait_for_selector(".nc-gallery-row[data-neuron='block3:1']")
        page.wait_for_selector(".nc-class-row.nc-on[data-cls='3']")
        expected = run_in_kernel(client, "print([atlas.neuron_ids.index(i) for i in "
                                         "('block2:5', 'block3:1')])")
        page.wait_for_function(
            "(want) => { const s = document.querySelector('.nc-scatter').ncScatter.selected();"
            " return JSON.stringify(s.slice().sort((a, b) => a - b)) === want; }",
            arg=json.dumps(sorted(json.loads(expected))).replace(" ", ""))
        placeholder = page.get_attribute(".nc-class-search", "placeholder")
        assert placeholder == run_in_kernel(client, "print(test.classes[3], end='')")
        page.locator(".nc-explorer").first.screenshot(path=str(ARTIFACTS / f"lab-{theme}.png"))
        page.screenshot(path=str(ARTIFACTS / f"lab-window-{theme}.png"))
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"lab-failure-{theme}.png"), full_page=True)
        raise
    finally:
        if client is not None:
            client.stop_channels()
        page.close()
    assert not errors, errors
