"""Builders shared by the test files (imported as ``from helpers import ...``): model-free
atlases, small playground atlases with every result, Broden-layout folders, the browser."""

import csv
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from notebookcarto import ActivationStats, Atlas
from notebookcarto.analyses import (AttributionGraphs, ClassEmbedding, ClusterGraphs, Clusters,
                                    Dissection, DissectionGallery, Embedding, Influence,
                                    cluster_table, example_patches)
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.models import PlaygroundCNN

ROOT = Path(__file__).resolve().parents[1]


def shared_folder() -> Path | None:
    """The shared data folder: ``$NOTEBOOKCARTO_SHARED`` or ``../shared`` beside the checkout,
    when it holds the CIFAR-10 test images and the ResNet-20 weights."""
    folder = Path(os.environ.get("NOTEBOOKCARTO_SHARED", ROOT.parent / "shared"))
    ready = ((folder / "data" / "cifar10-test").is_dir()
             and (folder / "models" / "resnet20-cifar10.th").is_file())
    return folder if ready else None


def atlas_from_aggregation(aggregation: dict, prefix: str = "class ") -> Atlas:
    """An atlas without a model: Summit's A per layer ({layer: (classes, channels)}), classes
    named ``f"{prefix}{i}"``."""
    k = next(iter(aggregation.values())).shape[0]
    stats = ActivationStats(num_classes=k)
    stats.add_classes(k, with_accuracy=False)
    for name, a in aggregation.items():
        stats.add_layer(name, a.shape[1], (1, 1))
        stats.layers[name].aggregation.counts[:] = torch.as_tensor(a)
    return Atlas(stats, class_names=[f"{prefix}{i}" for i in range(k)])


# ---- small playground atlases for the views -----------------------------------------------

XSS = "<img src=x onerror=alert(1)>"
# user strings that must stay text everywhere: a link, huge text, an image, SVG with a handler, a
# script (each would make an element, a style or a dialog if read as HTML)
HOSTILE = [XSS, '<a href="javascript:alert(4)">CLICKME</a>',
           '<span style="font-size:80px">BIGTEXT</span>', "<svg onload=alert(2)>",
           "<script>alert(3)</script>", "<b>bold</b> & <i>more</i>"]


def small_atlas(n: int = 240, seed: int = 1, class_names=None, trained=None, layers=None):
    """A playground atlas of an (untrained unless given) PlaygroundCNN, with patches."""
    data = ConceptPlayground(n=n, size=32, seed=seed)
    images, labels = data.tensors(progress=False)
    if trained is None:
        torch.manual_seed(0)
        trained = PlaygroundCNN(num_classes=len(data.classes), width=8).eval()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=120)
    atlas = Atlas.build(trained, loader, layers, class_names=class_names or data.classes,
                        top_n=12, progress=False)
    atlas.attach(example_patches(atlas, trained, data, n_patches=9, size=24, progress=False))
    return atlas, trained, data


class HostileCNN(PlaygroundCNN):
    """A PlaygroundCNN whose first block is registered under a hostile module name (user data
    that must never be run as HTML)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._modules[XSS] = self._modules.pop("block1")

    def forward(self, x):
        x = self._modules[XSS](x - 0.5)
        x = self.block4(self.block3(self.block2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def hostile_atlas(class_names=None):
    torch.manual_seed(0)
    model = HostileCNN(num_classes=8, width=8).eval()
    return small_atlas(class_names=class_names, trained=model,
                       layers=[XSS, "block2", "block3", "block4"])


def fake_results(atlas, *, seed: int = 0, xss: bool = False, concepts=None,
                 gallery: bool = False) -> None:
    """Attach well-formed stand-ins of the clusters, embedding, influence, attribution graphs,
    cluster graphs, class embedding and dissection results (fast, with known values).
    ``concepts`` names the dissection's concepts (default four; ``xss`` makes the last one
    hostile); ``gallery`` adds a dissection gallery of three masked images per unit."""
    rng = np.random.default_rng(seed)
    ids = atlas.neuron_ids
    n, layers, names = len(ids), atlas.layers, atlas.class_names
    k = len(names)
    layer_of = np.array([atlas.parse_neuron(i)[0] for i in ids])
    cluster = np.full(n, -1, dtype=np.int64)
    label = 0
    for name in layers:
        members = np.flatnonzero(layer_of == name)
        for start in range(0, len(members) - 2, 3):
            cluster[members[start:start + 3]] = label
            label += 1
    atlas.attach(Clusters(cluster, cluster.copy(), ids, cluster_table(atlas, cluster),
                          {"fake": True}))
    centres = rng.normal(size=(label + 1, 2)) * 4
    xy = centres[np.where(cluster >= 0, cluster, label)] + rng.normal(size=(n, 2)) * 0.4
    snaps = np.stack([xy * f + rng.normal(size=(n, 2)) * (1 - f) * 3 for f in (0.2, 0.6)])
    vectors = np.concatenate([xy, rng.normal(size=(n, 6)) * 0.1], axis=1).astype(np.float32)
    atlas.attach(Embedding(vectors, xy.astype(np.float32), np.stack([vectors, vectors]),
                           snaps.astype(np.float32), [1, 3], ids, {"fake": True}))
    pairs = list(zip(layers[:-1], layers[1:]))
    counts = {}
    for a, b in pairs:
        ca, cb = atlas.stats.layers[a].channels, atlas.stats.layers[b].channels
        counts[(a, b)] = rng.integers(0, 20, size=(k, cb, ca)).astype(np.int64)
    atlas.attach(Influence(counts, "fake", 5, {}))
    graphs, cgraphs = {}, {}
    for c, cname in enumerate(names):
        nodes, edges, cnodes, cedges = [], [], [], []
        kept = {}
        for li, name in enumerate(layers):
            top = atlas.top_neurons(c, name, n=4).index.tolist() or [f"{name}:0"]
            kept[name] = top
            for j, nid in enumerate(top):
                nodes.append({"id": nid, "layer": name, "count": float(40 - 7 * j + li),
                              "pagerank": 0.05, "x": (j + 0.5) / len(top), "y": float(li),
                              "members": [nid],
                              "top_inputs": kept[layers[li - 1]][:3] if li else []})
            clusters_here = sorted({int(cluster[ids.index(t)]) for t in top} - {-1})
            for cl in clusters_here:
                members = [ids[i] for i in np.flatnonzero(cluster == cl)]
                cnodes.append({"id": f"cluster:{cl}", "layer": name, "count": 30.0,
                               "pagerank": 0.1, "x": 0.5, "y": float(li), "members": members,
                               "top_inputs": []})
        for a, b in pairs:
            for s in kept[a]:
                for t in kept[b]:
                    edges.append({"source": s, "target": t, "weight": float(rng.integers(1, 60))})
        by_layer = {}
        for node in cnodes:
            by_layer.setdefault(node["layer"], []).append(node["id"])
        for a, b in pairs:
            for s in by_layer.get(a, []):
                for t in by_layer.get(b, []):
                    cedges.append({"source": s, "target": t,
                                   "weight": float(rng.uniform(0.5, 5))})
        graphs[cname] = {"class": cname, "layers": layers, "nodes": nodes, "edges": edges}
        cgraphs[cname] = {"class": cname, "layers": layers, "nodes": cnodes, "edges": cedges}
    atlas.attach(AttributionGraphs(graphs, {"fake": True}))
    atlas.attach(ClusterGraphs(cgraphs, {"fake": True}))
    similarity = rng.uniform(0, 1, size=(k, k)).astype(np.float32)
    atlas.attach(ClassEmbedding(rng.normal(size=(len(layers), k, 2)).astype(np.float32),
                                (similarity + similarity.T) / 2, list(layers), {"fake": True}))
    concepts = list(concepts or ["red", "sky", "stripes", "grass"])
    if xss:
        concepts[-1] = XSS
    dissection = atlas.attach(fake_dissection(atlas, rng, concepts))
    if gallery:
        atlas.attach(fake_gallery(atlas, dissection))


def fake_dissection(atlas, rng, concepts) -> Dissection:
    """A dissection of every atlas layer in which each unit overlaps a random one of
    ``concepts`` (intersection 4 to 30 of 40 pixels, so IoU from 0.05 to 0.6; a few below
    the 0.04 threshold) or none; the concepts alternate between the categories "colour" and
    "texture"."""
    k = len(concepts)
    categories = ["colour", "texture"]
    concept_categories = [categories[i % 2] for i in range(k)]
    per_layer = {kind: {} for kind in ("thresholds", "intersection", "area", "top_images",
                                       "top_values")}
    for name in atlas.layers:
        c = atlas.stats.layers[name].channels
        pick = rng.integers(0, k + 1, size=c)  # k: no concept
        inter = np.zeros((c, k), np.int64)
        hit = np.flatnonzero(pick < k)
        inter[hit, pick[hit]] = rng.integers(2, 31, size=len(hit))
        per_layer["thresholds"][name] = np.zeros(c, np.float32)
        per_layer["intersection"][name] = inter
        per_layer["area"][name] = np.full((c, 2), 40, np.int64)
        per_layer["top_images"][name] = np.full((c, 1), -1, np.int64)
        per_layer["top_values"][name] = np.zeros((c, 1), np.float32)
    return Dissection(layers=list(atlas.layers), concepts=list(concepts),
                      concept_categories=concept_categories, categories=categories,
                      ground=np.full(k, 40, np.int64), params={"iou_threshold": 0.04},
                      **per_layer)


def fake_gallery(atlas, dissection, n_images: int = 3, size: int = 16) -> DissectionGallery:
    """Three images per dissected unit, a grey square with a yellow frame (the mask), the
    last image of every other unit missing (id -1)."""
    images, ids = {}, {}
    for name in dissection.layers:
        c = atlas.stats.layers[name].channels
        block = np.full((c, n_images, size, size, 3), 90, np.uint8)
        block[:, :, 4:12, 4:12] = (255, 214, 0)
        block[:, :, 5:11, 5:11] = 160
        images[name] = block
        taken = np.tile(np.arange(n_images, dtype=np.int64), (c, 1)) + 10
        taken[1::2, -1] = -1
        ids[name] = taken
    return DissectionGallery(list(dissection.layers), images, ids, {"n_images": n_images})


# ---- Broden-layout folders -------------------------------------------------------------------

# label number, name, category field as in Broden's label.csv
LABELS = [(1, "red", "color(9)"), (2, "green", "color(7);object(2)"), (300, "deep", "color(3)"),
          (4, "box", "object(5)"), (5, "disc", "color(1);object(6)"),
          (6, "striped", "texture(4)"), (7, "dotted", "texture(3)")]
PIXEL = {"color": [1, 2, 300], "object": [4, 5]}
IMAGE_LEVEL = {"texture": [6, 7]}


def write_broden(root, images, label_maps, image_labels, labels=LABELS, splits=None):
    """Write a Broden-layout folder: images (N, H, W, 3) uint8; label_maps {category: (N, h, w)
    int label numbers, an all-zero map leaves the cell empty}; image_labels {category: [[numbers]
    per image]}; labels [(number, name, category field)]."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    n = len(images)
    sh, sw = next(iter(label_maps.values())).shape[1:]
    columns = ["image", "split", "ih", "iw", "sh", "sw", *label_maps, *image_labels]
    with open(root / "index.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for i in range(n):
            name = f"img{i}.png"
            Image.fromarray(images[i]).save(root / "images" / name)
            row = [name, (splits or ["train"] * n)[i], images.shape[1], images.shape[2], sh, sw]
            for category, maps in label_maps.items():
                if not maps[i].any():
                    row.append("")
                    continue
                rgb = np.zeros((sh, sw, 3), dtype=np.uint8)
                rgb[..., 0], rgb[..., 1] = maps[i] % 256, maps[i] // 256
                mask_name = f"img{i}_{category}.png"
                Image.fromarray(rgb).save(root / "images" / mask_name)
                row.append(mask_name)
            for category, numbers in image_labels.items():
                row.append(";".join(str(v) for v in numbers[i]))
            out.writerow(row)
    with open(root / "label.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        out.writerow([0, "-", "", 0, 0, ""])
        for number, name, category in labels:
            out.writerow([number, name, category, 1, 0.1, ""])
    return root


def random_broden_arrays(n=10, size=16, seed=0):
    """Random images (multiples of 32, so /256 is exact), rectangles of colour and object
    labels at half resolution (some images without object masks) and texture labels."""
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 8, size=(n, size, size, 3)) * 32).astype(np.uint8)
    h = size // 2
    maps = {c: np.zeros((n, h, h), dtype=np.int64) for c in PIXEL}
    for category, numbers in PIXEL.items():
        for i in range(n):
            if category == "object" and i % 3 == 2:
                continue  # sparse annotation: no object labels in this image
            for number in rng.permutation(numbers)[: rng.integers(1, len(numbers) + 1)]:
                y, x = rng.integers(0, h - 2, size=2)
                dy, dx = rng.integers(2, h // 2 + 2, size=2)
                maps[category][i, y:y + dy, x:x + dx] = number
    textures = [list(rng.permutation(IMAGE_LEVEL["texture"])[: i % 3]) for i in range(n)]
    return images, maps, {"texture": textures}


# ---- the browser -----------------------------------------------------------------------------

CHROMIUM = os.environ.get("NOTEBOOKCARTO_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--enable-unsafe-swiftshader"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT = 60_000


def launch(playwright):
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium "
                    "(or set NOTEBOOKCARTO_CHROMIUM)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def shared_cache(tmp_path_factory) -> Path:
    """One folder per test session for the trained playground CNN (used by the JupyterLab test
    too), so the quickstart model is trained once."""
    folder = tmp_path_factory.getbasetemp() / "notebookcarto-cache"
    folder.mkdir(exist_ok=True)
    return folder


# ---- the model, the RNG and the threads as the user left them -------------------------------

class untouched:
    """``with untouched(model): entry_point(...)`` fails unless the block leaves the model
    (parameter and buffer values, gradients, ``requires_grad`` flags, train/eval modes, hooks),
    the global torch RNG and torch's thread count exactly as they were."""

    def __init__(self, model):
        self.model = model

    def snapshot(self):
        m = self.model
        return {
            "state": {k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
            "grads": {n: None if p.grad is None else p.grad.clone()
                      for n, p in m.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in m.named_parameters()},
            "modes": {n: s.training for n, s in m.named_modules()},
            "hooks": {n: {k: list(v) for k, v in vars(s).items()
                          if "hooks" in k and isinstance(v, dict)}
                      for n, s in m.named_modules()},
            "rng": torch.get_rng_state(), "threads": torch.get_num_threads()}

    def __enter__(self):
        self.before = self.snapshot()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        after = self.snapshot()
        for key in ("requires_grad", "modes", "hooks", "threads"):
            assert after[key] == self.before[key], f"the call changed the model's {key}"
        for name, value in self.before["state"].items():
            assert torch.equal(after["state"][name], value), f"the call changed {name}"
        for name, grad in self.before["grads"].items():
            other = after["grads"][name]
            assert (grad is None) == (other is None) and (grad is None or
                                                          torch.equal(grad, other)), \
                f"the call changed the gradient of {name}"
        assert torch.equal(after["rng"], self.before["rng"]), "the call drew from the global RNG"
        return False


# the steps a writer can die at: file system calls and numpy's array writes
WRITE_STEPS = [(os, "rename"), (os, "replace"), (os, "fsync"), (os, "mkdir"), (os, "unlink"),
               (np, "save"), (shutil, "rmtree")]


def kill_at_step(at: int, *, thread: int | None = None, log: list | None = None,
                 calls: list | None = None):
    """Wrap every write step (``WRITE_STEPS``); the ``at``-th call (from 0) made by ``thread``
    (any thread when None) kills the process before it runs. ``log`` collects the steps' names.
    Returns the call counter (a one-item list, ``calls`` when given) and an undo function."""
    calls = [0] if calls is None else calls
    undo = []
    for module, name in WRITE_STEPS:
        real = getattr(module, name)

        def step(*args, _real=real, _name=name, **kwargs):
            if thread is None or threading.get_ident() == thread:
                if log is not None:
                    log.append(_name)
                calls[0] += 1
                if calls[0] - 1 == at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kwargs)

        setattr(module, name, step)
        undo.append((module, name, real))

    def restore():
        for module, name, real in undo:
            setattr(module, name, real)

    return calls, restore


def train_watched(monitor, model, data, steps: int, *, batch_size: int = 16,
                  weight_decay: float = 0.01, after_step=None) -> None:
    """Train ``model`` for ``steps`` steps (AdamW, lr 3e-3, random batches of ``data`` =
    (images, labels) from a generator seeded 0) under ``monitor``: observed at step 0 and after
    every step; ``after_step(step)`` runs after each observation."""
    images, labels = data
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(0)
    model.train()
    for step in range(steps + 1):
        if step:
            idx = torch.randint(0, len(images), (batch_size,), generator=order)
            loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        monitor.observe(model, step)
        if after_step is not None:
            after_step(step)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(fn, rank, size, port, out, args):
    import datetime
    import traceback

    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size, timeout=datetime.timedelta(seconds=60))
    try:
        result = {"value": fn(rank, *args)}
    except BaseException as err:  # reported to the test, which asserts on it
        result = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
    finally:
        dist.destroy_process_group()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def run_ranks(fn, size: int, folder, *args, timeout: float = 180) -> list[dict]:
    """Run ``fn(rank, *args)`` in ``size`` spawned processes of one gloo process group on
    127.0.0.1; one ``{"value": ...}``, ``{"error": "Type: message"}`` or (a rank that died)
    ``{"exitcode": code}`` per rank. ``fn`` must be a module-level function of an importable
    module (a test file)."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    port, folder = free_port(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    procs = [ctx.Process(target=_rank_main, args=(fn, r, size, port, str(folder), args))
             for r in range(size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            raise TimeoutError(f"a rank did not finish within {timeout} s (a hang)")
    return [torch.load(folder / f"rank{r}.pt", weights_only=False)
            if (folder / f"rank{r}.pt").exists() else {"exitcode": p.exitcode}
            for r, p in enumerate(procs)]
