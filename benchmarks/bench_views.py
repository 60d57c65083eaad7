"""The projection scatter in headless Chromium (software GL, so the figures are relative).

For 10k, 100k and 1M points (random clusters, clustered positions): time from navigation to the
first drawn frame of the exported page (all points on screen), time from navigation until hover
works (for many points the hover index is built in a worker and arrives after the first frame),
the hover response once it works (mouse move to hover card, median of five points), and bytes
sent per point (binary traits of the scatter and its data, plus their JSON, without the front-end
code). Then the size of the offline HTML export of the demo atlas (the concept playground CNN,
with example patches), and of a real one: the pretrained CIFAR-10 ResNet-20 mapped on a few
thousand test images with the analyses (example patches, clusters, neuron embedding, influence
counts, attribution and cluster graphs, class embedding): its size, and the time from opening the
page until every view is drawn and hover works in the projection. Without ../shared (the
weights and the CIFAR-10 images, see timing.py) that atlas is made of the playground instead, and
the line says so. No GPU is needed: the page renders with SwiftShader. Run from the repo root:

    .venv/bin/python benchmarks/bench_views.py [--sizes 10000 100000 1000000] [--images 2000]

Goal: the 1M-point first frame under 3 s, hover answers within 100 ms, <= 12 bytes per point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--enable-unsafe-swiftshader"]


def points(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = max(8, n // 500)
    centres = rng.normal(size=(k, 2)) * 10
    cluster = rng.integers(0, k, size=n)
    xy = centres[cluster] + rng.normal(size=(n, 2))
    cluster[rng.random(n) < 0.2] = -1
    return xy.astype(np.float32), cluster.astype(np.int32)


def bytes_per_point(view, n: int) -> float:
    from notebookcarto.views.export import split_buffers

    total = 0
    for widget in (view, view.data, view.state):
        state = {k: v for k, v in widget.get_state().items() if k not in ("_esm", "_css")}
        json_state, _, buffers = split_buffers(state)
        total += len(json.dumps(json_state)) + sum(len(b) for b in buffers)
    return total / n


def measure(browser, path: Path, n: int, timeout: float = 120_000) -> tuple[float, float, float]:
    """Seconds to the first frame, milliseconds of the hover response, seconds until hover works."""
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(timeout)
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
    page.goto(path.as_uri())
    page.wait_for_selector(".nc-scatter[data-first-frame]")
    first = float(page.get_attribute(".nc-scatter", "data-first-frame")) / 1000
    page.wait_for_selector(".nc-scatter[data-interactive]")  # the hover index is in place
    ready = float(page.get_attribute(".nc-scatter", "data-interactive")) / 1000
    page.evaluate("window.addEventListener('mousemove', e => { window.__move = e.timeStamp; }, true)")
    box = page.locator(".nc-scatter canvas").first.bounding_box()
    rng = np.random.default_rng(1)
    latencies = []
    for i in rng.choice(n, size=5, replace=False):
        pos = page.evaluate(f"document.querySelector('.nc-scatter').ncScatter.position({int(i)})")
        if not pos or not (5 < pos[0] < box["width"] - 5 and 5 < pos[1] < box["height"] - 5):
            continue
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.wait_for_timeout(150)
        before = page.get_attribute(".nc-scatter", "data-hover-at")
        page.mouse.move(box["x"] + pos[0], box["y"] + pos[1])
        page.wait_for_function(
            f"document.querySelector('.nc-scatter').dataset.hoverAt !== {json.dumps(before)}")
        latencies.append(page.evaluate(
            "Number(document.querySelector('.nc-scatter').dataset.hoverAt) - window.__move"))
    page.close()
    return first, statistics.median(latencies) if latencies else float("nan"), ready


def demo_export(folder: Path) -> float:
    """MB of the offline export of a quick demo atlas with example patches."""
    import torch

    from notebookcarto import Atlas
    from notebookcarto.analyses import example_patches
    from notebookcarto.datasets import ConceptPlayground
    from notebookcarto.models import load_or_train
    from notebookcarto.views import to_html

    train = ConceptPlayground(n=1200, size=32, seed=0)
    test = ConceptPlayground(n=1000, size=32, seed=1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_or_train(folder / "cnn.pt", train_set=train, epochs=1, device=device,
                             progress=False)
    data = test.tensors()
    atlas = Atlas.build(model, data, class_names=test.classes, batch_size=250, progress=False)
    atlas.attach(example_patches(atlas, model, data, progress=False))
    path = to_html(atlas, folder / "demo.html")
    return Path(path).stat().st_size / 2**20


def real_atlas(n_images: int):
    """(atlas of the ResNet-20 on n_images CIFAR-10 test images with the analyses attached,
    what it is of). The playground CNN on the playground where ../shared is absent."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import shared_folder

    from notebookcarto import Atlas, analyses

    shared = shared_folder()
    weights = shared / "models" / "resnet20-cifar10.th" if shared else None
    if weights is not None and weights.is_file():
        from notebookcarto.datasets import cifar10_test
        from notebookcarto.models import load_resnet20

        data = cifar10_test(shared / "data" / "cifar10-test")
        model = load_resnet20(weights)
        step = max(1, len(data) // n_images)
        data = torch.utils.data.Subset(data, range(0, len(data), step)[:n_images])
        names = [str(c) for c in data.dataset.classes]
        source = f"resnet20 on {len(data)} CIFAR-10 test images"
    else:
        from notebookcarto.datasets import ConceptPlayground
        from notebookcarto.models import load_or_train

        train = ConceptPlayground(n=1200, size=32, seed=0)
        test = ConceptPlayground(n=min(n_images, 1000), size=32, seed=1)
        model, _ = load_or_train(Path(tempfile.gettempdir()) / "nc-bench-cnn.pt",
                                 train_set=train, epochs=1, progress=False)
        data, names = test.tensors(progress=False), test.classes
        source = "playground (no ../shared: the ResNet-20 figures are the playground's)"
    atlas = Atlas.build(model, data, class_names=names, batch_size=250, progress=False)
    atlas.attach(analyses.example_patches(atlas, model, data, progress=False))
    atlas.attach(analyses.cluster_neurons(atlas, model, data, progress=False))
    atlas.attach(analyses.embed_neurons(atlas, progress=False))
    atlas.attach(analyses.count_influence(atlas, model, data, progress=False))
    atlas.attach(analyses.attribution_graphs(atlas, progress=False))
    atlas.attach(analyses.cluster_graphs(atlas))
    atlas.attach(analyses.embed_classes(atlas))
    return atlas, source


def open_explorer(browser, path: Path, timeout: float = 120_000) -> float:
    """Seconds from navigation until the exported Explorer is drawn (every view) and hover
    works in its projection."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout)
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(".nc-scatter[data-interactive]")
    page.wait_for_selector(".nc-graph[data-nodes]")
    ready = float(page.get_attribute("body", "data-ready-at"))
    hover = float(page.get_attribute(".nc-scatter", "data-interactive"))
    page.close()
    return max(ready, hover) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--images", type=int, default=2000,
                        help="CIFAR-10 test images the ResNet-20 atlas is built on")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from notebookcarto.views import ProjectionScatter

    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    import torch

    print(f"device for the demo model: {'cuda' if torch.cuda.is_available() else 'cpu'} "
          "(the browser uses software GL either way)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        folder = Path(tmp)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in args.sizes:
            xy, cluster = points(n)
            view = ProjectionScatter.from_points(xy, cluster=cluster, color_by="cluster")
            per_point = bytes_per_point(view, n)
            start = time.perf_counter()
            path = Path(view.save_html(folder / f"scatter_{n}.html"))
            export_s = time.perf_counter() - start
            first, hover, ready = measure(browser, path, n)
            results[n] = (first, hover, per_point, ready)
            print(f"{n:>9,} points: first frame {first:6.2f} s, hover works at {ready:6.2f} s "
                  f"and answers in {hover:6.1f} ms, "
                  f"{per_point:5.2f} bytes/point, page {path.stat().st_size / 2**20:6.1f} MB "
                  f"(written in {export_s:.1f} s)", flush=True)
            view.close()
        export_mb = demo_export(folder)
        print(f"demo atlas export: {export_mb:.2f} MB", flush=True)
        start = time.perf_counter()
        atlas, source = real_atlas(args.images)
        built_s = time.perf_counter() - start
        path = Path(atlas.to_html(folder / "resnet20.html"))
        real_mb = path.stat().st_size / 2**20
        open_explorer(browser, path)  # warm the browser's code caches once
        real_s = statistics.median(open_explorer(browser, path) for _ in range(3))
        print(f"{source}: {len(atlas.layers)} layers, {len(atlas.neuron_ids)} neurons, analyses "
              f"in {built_s:.0f} s; export {real_mb:.2f} MB, interactive in {real_s:.2f} s",
              flush=True)
        browser.close()
    big = max(results)
    first, hover, per_point, ready = results[big]
    print(f"first_frame_1m_s={first:.2f} hover_ms={hover:.1f} bytes_per_point={per_point:.2f} "
          f"export_mb={export_mb:.2f} largest_n={big} interactive_1m_s={ready:.2f} "
          f"export_resnet20_mb={real_mb:.2f} interactive_resnet20_s={real_s:.2f} "
          + " ".join(f"first_frame_{n}_s={v[0]:.2f} hover_{n}_ms={v[1]:.1f}"
                     for n, v in results.items() if n != big))


if __name__ == "__main__":
    main()
