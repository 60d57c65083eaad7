"""Feature visualisation: VITAL against the Lucent-style baseline (and torch-lucent where it
imports), on the playground CNN and the CIFAR-10 ResNet-20.

Models and their independent judges:

- small: the playground CNN (seed 0) trained on ``ConceptPlayground(n=3000, seed=0)`` (8 epochs);
  judge: the same architecture and data, seed 1. Real images: ``ConceptPlayground(n=1000,
  seed=1)`` (atlas, class and exemplar references).
- resnet20 (when ../shared is present): the pretrained CIFAR-10 ResNet-20. ../shared holds no
  other CIFAR model and no CIFAR training images, so the judge is trained here: a playground CNN
  (width 16, 10 classes, seed 1, ``--judge-epochs`` 8) trained on the CIFAR-10 *test* JPEGs
  themselves, de-normalised to [0, 1]. Those are also the reference images, so its transfer and
  Fréchet distance are measured in-sample (it has seen the references; its training accuracy
  is printed).

Targets: every class and 32 inner neurons (the 16 with the highest maximum in each of the
atlas's two deepest layers). Metrics, per model and method:

- transfer: share of class visualisations the judge classifies as their class (``--class-seeds``
  3 images per class: the main run's and two more seeds; torch-lucent: one per class);
- fd: Fréchet distance between all visualisations (classes and neurons) and the union of their
  reference images, in the judge's pooled penultimate features (64-d);
- act: median over the inner neurons of their activation on the visualisation relative to their
  maximum over the reference images (their top exemplars);
- speedup: VITAL visualisations per minute batched (the classes in one batch, the inner neurons
  in another) against one target at a time (two of each kind, weighted by the kinds' counts),
  same ``--speed-steps`` (100) steps, end to end (references, optimisation, result).

Settings: VITAL runs ``--vital-steps`` (default 400, warm-up 5%) instead of the released 2000,
to fit a shared 2-core CPU (a step of 42 ResNet-20 targets, with LRP, takes about 1.1-1.5 s); the baseline runs Lucent's default 512 steps. Torch runs on one
thread (on a shared 2-core machine two threads are several times slower). torch-lucent
(greentfrapp/lucent 0.1.8 with kornia 0.4.1) is used when importable, with the same 32 px
transforms (pad 3, jitter 2, scale 0.9-1.1, rotate +-10, its ``jitter`` needs > 1 px so the
last one is dropped) and all targets in one batch (it draws one transform per batch).

Run from the repo root:  .venv/bin/python benchmarks/bench_featvis.py
Last line: transfer_vital=... transfer_baseline=... fd_vital=... fd_baseline=...
speedup_small=... speedup_resnet20=... (the unsuffixed scores are the small model's; the
``_resnet20`` ones follow).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from timing import shared_folder

from notebookcarto import Atlas
from notebookcarto.capture import Capture
from notebookcarto.datasets import IMAGENET_MEAN, IMAGENET_STD, ConceptPlayground, cifar10_test
from notebookcarto.datasets.items import ImageData
from notebookcarto.featvis import class_targets, visualize
from notebookcarto.models import (PlaygroundCNN, evaluate, load_or_train, load_resnet20,
                                  train_playground_cnn)

CACHE = Path(tempfile.gettempdir()) / "notebookcarto-bench-featvis"


# ----------------------------------------------------------------------- models and data


def small_setup():
    train = ConceptPlayground(n=3000, size=32, seed=0)
    test = ConceptPlayground(n=1000, size=32, seed=1)
    model, _ = load_or_train(CACHE / "small-seed0.pt", train_set=train, epochs=8, seed=0,
                             progress=False)
    judge, _ = load_or_train(CACHE / "small-seed1.pt", train_set=train, epochs=8, seed=1,
                             progress=False)
    x, y = test.tensors()
    print(f"small: accuracy on held-out images {evaluate(model, test):.3f}, judge "
          f"{evaluate(judge, test):.3f}")
    return dict(name="small", model=model, judge=judge, data=(x, y), classes=test.classes,
                layers=["block1", "block2", "block3", "block4"], norm=None,
                judge_input=lambda u8: torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255)


def resnet_setup(shared: Path, epochs: int):
    model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
    dataset = cifar10_test(shared / "data" / "cifar10-test")
    parts = [(b.images, b.labels) for b in ImageData(dataset, batch_size=500).batches()]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    unit = (x * std + mean).clamp(0, 1)
    path = CACHE / f"cifar-judge-{epochs}.pt"
    if path.is_file():
        judge = PlaygroundCNN(10, 16)
        judge.load_state_dict(torch.load(path, weights_only=True))
        judge.eval()
    else:
        start = time.perf_counter()
        judge, _ = train_playground_cnn((unit, y), epochs=epochs, seed=1, progress=False)
        torch.save(judge.state_dict(), path)
        print(f"resnet20: trained the judge in {time.perf_counter() - start:.0f} s")
    print(f"resnet20: judge accuracy on its own training images (the CIFAR-10 test set) "
          f"{evaluate(judge, (unit, y)):.3f}; ResNet-20 {evaluate(model, (x, y)):.3f}")
    keep = torch.arange(0, len(x), 2)  # 5000 images for the atlas and the references
    return dict(name="resnet20", model=model, judge=judge, data=(x[keep], y[keep]),
                classes=dataset.classes, layers=["conv1", "layer1", "layer2", "layer3"],
                atlas_layers=["layer1", "layer2", "layer3"], norm=(IMAGENET_MEAN, IMAGENET_STD),
                judge_input=lambda u8: torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255)


def targets_of(atlas: Atlas) -> tuple[list, list]:
    """(class keys, 32 inner neuron keys: 16 per deepest layer, highest maximum first)."""
    neurons = atlas.neurons
    inner = []
    for layer in atlas.layers[-2:]:
        rows = neurons[neurons["layer"] == layer].sort_values("max", ascending=False)
        inner += list(rows.index[:16])
    return class_targets(atlas), inner


# ----------------------------------------------------------------------- metrics


def judge_features(judge, images: torch.Tensor) -> np.ndarray:
    with Capture(judge, ["pool"]) as capture, torch.no_grad():
        capture.forward(images)
        return capture.outputs["pool"].flatten(1).numpy().astype(np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(ca @ cb)
    root = root.real if np.iscomplexobj(root) else root
    return float(mu @ mu + np.trace(ca + cb - 2 * root))


def score(setup, class_images: np.ndarray, all_images: np.ndarray, real: np.ndarray) -> tuple:
    judge = setup["judge"]
    with torch.no_grad():
        predicted = judge(setup["judge_input"](class_images)).argmax(1).numpy()
    n_classes = len(setup["classes"])
    transfer = float((predicted == np.arange(len(class_images)) % n_classes).mean())
    fd = frechet(judge_features(judge, setup["judge_input"](all_images)),
                 judge_features(judge, setup["judge_input"](real)))
    return transfer, fd


def real_images(setup, result) -> np.ndarray:
    """uint8 images of the union of every target's references."""
    ids = np.unique(result.reference_ids[result.reference_ids >= 0])
    x = setup["data"][0][torch.from_numpy(ids)]
    if setup["norm"] is not None:
        mean = torch.tensor(setup["norm"][0]).view(1, 3, 1, 1)
        std = torch.tensor(setup["norm"][1]).view(1, 3, 1, 1)
        x = x * std + mean
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------- runs


def run_method(setup, atlas, targets, method, steps, seed=0) -> tuple:
    norm = setup["norm"] or (None, None)
    kw = dict(steps=steps)
    if method == "vital":
        kw.update(warmup=max(1, steps // 20), layers=setup["layers"])
    start = time.perf_counter()
    result = visualize(setup["model"], targets, method=method, data=setup["data"], atlas=atlas,
                       mean=norm[0], std=norm[1], seed=seed, progress=False, **kw)
    return result, time.perf_counter() - start


def run_torch_lucent(setup, targets, steps) -> np.ndarray | None:
    """uint8 images by torch-lucent, or None when it does not import."""
    try:
        from lucent.optvis import objectives, param, render, transform
    except ImportError as err:
        print(f"{setup['name']}: torch-lucent not importable ({err}); skipped")
        return None
    torch.manual_seed(0)
    np.random.seed(0)
    model = copy.deepcopy(setup["model"]).eval()  # lucent leaves its hooks on the model
    objective = None
    for b, key in enumerate(targets):
        if key.startswith("class:"):
            term = objectives.channel("labels", int(key.split(":")[1]), batch=b)
        else:
            layer, _, channel = key.rpartition(":")
            term = objectives.channel(layer.replace(".", "_"), int(channel), batch=b)
        objective = term if objective is None else objective + term
    transforms = [transform.pad(3, mode="constant", constant_value=0.5), transform.jitter(2),
                  transform.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
                  transform.random_rotate(list(range(-10, 11)) + 5 * [0])]
    size = setup["data"][0].shape[-1]
    images = render.render_vis(
        model, objective, lambda: param.image(size, batch=len(targets)), transforms=transforms,
        thresholds=(steps,), preprocess=setup["norm"] is not None, progress=False,
        show_image=False, fixed_image_size=size)[-1]
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def speed(setup, atlas, classes, inner, steps) -> tuple[float, float]:
    """(VITAL visualisations per minute batched, the same targets one at a time).

    Batched: the classes in one batch, the inner neurons in another (as a user would ask for
    them). One at a time: two of each kind, weighted by how many of each kind there are."""
    norm = setup["norm"] or (None, None)
    kw = dict(steps=steps, warmup=max(1, steps // 20), layers=setup["layers"], data=setup["data"],
              atlas=atlas, mean=norm[0], std=norm[1], progress=False)
    start = time.perf_counter()
    for group in (classes, inner):
        visualize(setup["model"], group, **kw)
    batched = time.perf_counter() - start
    single = 0.0
    for group in (classes, inner):
        sample = group[:1] + group[-1:]
        start = time.perf_counter()
        for key in sample:
            visualize(setup["model"], [key], batch_size=1, **kw)
        single += (time.perf_counter() - start) / len(sample) * len(group)
    n = len(classes) + len(inner)
    return 60 * n / batched, 60 * n / single


def bench_model(setup, args) -> dict:
    name = setup["name"]
    start = time.perf_counter()
    atlas = Atlas.build(setup["model"], setup["data"], setup.get("atlas_layers", setup["layers"]),
                        class_names=setup["classes"], top_n=50, progress=False)
    print(f"{name}: atlas in {time.perf_counter() - start:.0f} s")
    classes, inner = targets_of(atlas)
    targets = classes + inner
    out = {}
    real = None
    for method, steps in (("vital", args.vital_steps), ("baseline", args.lucent_steps)):
        result, seconds = run_method(setup, atlas, targets, "vital" if method == "vital"
                                     else "lucent", steps)
        if real is None:
            real = real_images(setup, result)
        class_images = [result.images[:len(classes)]]
        for seed in range(1, args.class_seeds):  # more class images: transfer is a share
            extra, _ = run_method(setup, atlas, classes, "vital" if method == "vital"
                                  else "lucent", steps, seed=seed)
            class_images.append(extra.images)
        transfer, fd = score(setup, np.concatenate(class_images), result.images, real)
        act = float(np.nanmedian(result.relative_activation[len(classes):]))
        act_cls = float(np.nanmedian(result.relative_activation[:len(classes)]))
        out.update({f"transfer_{method}": transfer, f"fd_{method}": fd, f"act_{method}": act})
        print(f"{name} {method}: {len(targets)} targets, {steps} steps in {seconds:.0f} s; "
              f"transfer {transfer:.3f}, FD {fd:.2f}, inner activation / exemplar max "
              f"{act:.2f} (classes: logit / max over class images {act_cls:.2f})")
    lucent_images = run_torch_lucent(setup, targets, args.lucent_steps) if args.torch_lucent \
        else None
    if lucent_images is not None:
        transfer, fd = score(setup, lucent_images[:len(classes)], lucent_images, real)
        out.update(transfer_torch_lucent=transfer, fd_torch_lucent=fd)
        print(f"{name} torch-lucent: transfer {transfer:.3f}, FD {fd:.2f}")
    batched, single = speed(setup, atlas, classes, inner, args.speed_steps)
    out["speedup"] = batched / single
    out["vis_per_min_batched"], out["vis_per_min_single"] = batched, single
    print(f"{name} speed (VITAL, {args.speed_steps} steps): {batched:.1f} visualisations/min "
          f"batched, {single:.1f} one at a time: {batched / single:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vital-steps", type=int, default=400)
    parser.add_argument("--lucent-steps", type=int, default=512)
    parser.add_argument("--speed-steps", type=int, default=100)
    parser.add_argument("--class-seeds", type=int, default=3)
    parser.add_argument("--judge-epochs", type=int, default=8)
    parser.add_argument("--no-torch-lucent", dest="torch_lucent", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    results = {"small": bench_model(small_setup(), args)}
    shared = shared_folder()
    if shared is not None and (shared / "models" / "resnet20-cifar10.th").is_file():
        results["resnet20"] = bench_model(resnet_setup(shared, args.judge_epochs), args)
    else:
        print("resnet20: ../shared not found; skipped")
    small, big = results["small"], results.get("resnet20", {})
    goals = []
    for name, r in results.items():
        goals.append(r["transfer_vital"] > r["transfer_baseline"])
        goals.append(r["fd_vital"] < r["fd_baseline"])
        goals.append(r["speedup"] >= 3)
    keys = [f"transfer_vital={small['transfer_vital']:.3f}",
            f"transfer_baseline={small['transfer_baseline']:.3f}",
            f"fd_vital={small['fd_vital']:.2f}", f"fd_baseline={small['fd_baseline']:.2f}",
            f"speedup_small={small['speedup']:.2f}",
            f"speedup_resnet20={big.get('speedup', float('nan')):.2f}"]
    for key in ("transfer_vital", "transfer_baseline", "fd_vital", "fd_baseline", "act_vital",
                "act_baseline", "transfer_torch_lucent", "fd_torch_lucent"):
        if key in big:
            keys.append(f"{key}_resnet20={big[key]:.3f}")
    for key in ("act_vital", "act_baseline", "transfer_torch_lucent", "fd_torch_lucent"):
        if key in small:
            keys.append(f"{key}_small={small[key]:.3f}")
    keys.append(f"goals_met={sum(goals)}/{len(goals)}")
    print(" ".join(keys))


if __name__ == "__main__":
    main()
