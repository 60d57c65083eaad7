"""Explanations of single predictions: deletion / insertion AUCs of iGOS++, I-GOS and Captum's
peers, and the speed of the batched optimisation against the one-image loop.

Quality: the CIFAR ResNet-20 on 200 CIFAR-10 test JPEGs (every 50th; a playground CNN trained
once and cached, on playground images, without ../shared); targets are the model's
predictions; one run of iGOS++ and I-GOS at the released defaults (8 x 8 cells at 32 px, see
notebookcarto.explain.igos), Captum's IntegratedGradients (zero baseline, 50 steps; ranked by
the signed and by the absolute channel sum), LayerGradCam on the last block (upsampled,
ReLU) and Occlusion (4 x 4 window, stride 2, zero baseline), and a random ordering; deletion
and insertion AUCs under the I-GOS code's cell protocol (the last line) and RISE's pixel
protocol.

Speed: s/image of iGOS++ batched (``--batch`` 64 images in one call) against one image at a
time with the same algorithm settings and the same images, in two layouts: the released code's
(``speedup_*``: a pass of 20 inputs per path, 4 paths, line-search steps one after another;
``chunk_size=points, trials=1``) and this library's for one image (``speedup_*_own``: its 4 x 20
path points in shared passes, 4 steps per line-search pass), on an untrained playground CNN
(32 px, where one image is mostly overhead) and on ResNet-20 (where compute dominates on two
cores); ``--timing-iterations`` (3) iterations instead of 15, in alternating rounds so a busy
machine slows all sides alike. ``efficiency``: the time the algorithm's forward and backward
passes (counted) take at the rate of bare passes of the same chunk size (measured just before
and after), over the measured time of the batched run on ResNet-20. ``s_per_image_resnet20``:
the quality run (``--iterations``, 15 by default). With a GPU: the same on a torchvision
ResNet-50 at random init, 224 px (time only).

Run from the repo root:  .venv/bin/python benchmarks/bench_explain.py [--images 200]
Last line: del_igospp=... ins_igospp=... del_best_peer=... ins_best_peer=... speedup_small=...
speedup_resnet20=... efficiency=... s_per_image_resnet20=... (then the own-layout speedups,
images, iterations and device). On two shared cores the defaults take hours; the recorded run
used ``--images 8 --iterations 5 --batch 8 --loop-images 2 --small-loop-images 4
--timing-iterations 1 --rounds 1``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from notebookcarto.explain import (IGOS, IGOSPlusPlus, PixelProtocol, deletion_insertion,
                                   random_heatmaps)
from notebookcarto.explain.model import Scorer
from timing import shared_folder, timed


def setup(n: int):
    """(model, images, description, last block) for the quality run."""
    shared = shared_folder()
    if shared is not None:
        from notebookcarto.datasets import cifar10_test
        from notebookcarto.models import load_resnet20

        data = cifar10_test(shared / "data" / "cifar10-test")
        model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
        step = len(data) // n
        x = torch.stack([data[i][0] for i in range(0, step * n, step)])
        return model, x, f"resnet20 on {n} CIFAR-10 test JPEGs (every {step}th)", "layer3"
    from notebookcarto.datasets import ConceptPlayground
    from notebookcarto.models import load_or_train

    cache = Path(tempfile.gettempdir()) / "notebookcarto-bench" / "cnn.pt"
    model, _ = load_or_train(cache, train_set=ConceptPlayground(n=3000, size=32, seed=0),
                             epochs=8, progress=True)
    x, _ = ConceptPlayground(n=n, size=32, seed=1).tensors()
    return model, x, f"trained playground CNN on {n} playground images (no ../shared)", \
        "block4"


def captum_heatmaps(model, x, targets, layer: str, batch: int = 50) -> dict:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    module = dict(model.named_modules())[layer]
    out = {"ig": [], "ig_abs": [], "gradcam": [], "occlusion": []}
    for s in range(0, len(x), batch):
        xb, tb = x[s:s + batch], targets[s:s + batch]
        ig = IntegratedGradients(model).attribute(xb, baselines=0.0, target=tb, n_steps=50,
                                                  internal_batch_size=500)
        out["ig"].append(ig.sum(1))
        out["ig_abs"].append(ig.abs().sum(1))
        cam = LayerGradCam(model, module).attribute(xb, target=tb, relu_attributions=True)
        out["gradcam"].append(LayerAttribution.interpolate(cam, tuple(x.shape[-2:]),
                                                           "bilinear")[:, 0])
        occ = Occlusion(model).attribute(xb, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2),
                                         baselines=0.0, target=tb, perturbations_per_eval=64)
        out["occlusion"].append(occ.sum(1))
    return {k: torch.cat(v).detach() for k, v in out.items()}


def pass_rates(model, x, chunk: int, rounds: int = 3) -> tuple[float, float]:
    """Seconds per input of a bare forward + backward (input requiring grad, frozen weights)
    and of a bare forward, at ``chunk`` inputs per pass (what the algorithm runs)."""
    xb = x[:1].expand(chunk, *x.shape[1:]).contiguous()
    with Scorer(model) as scorer:
        def both():
            leaf = xb.clone().requires_grad_(True)
            scorer.logits(leaf)[:, 0].sum().backward()

        def forward():
            with torch.no_grad():
                scorer.logits(xb)

        both(), forward()
        fb = min(timed(both) for _ in range(rounds)) / chunk
        f = min(timed(forward) for _ in range(rounds)) / chunk
    return fb, f


def run_batched(model, x, targets, settings: dict, batch: int):
    """Seconds and pass counts of iGOS++ over ``x``, ``batch`` images a call."""
    counts = {"forward": 0, "backward": 0}
    explainer = IGOSPlusPlus(model, **settings)
    start = time.perf_counter()
    for s in range(0, len(x), batch):
        explainer.attribute(x[s:s + batch], targets[s:s + batch],
                            image_ids=range(s, min(len(x), s + batch)))
        for k in counts:
            counts[k] += getattr(explainer.counts_, k)
    return time.perf_counter() - start, counts, explainer.chunk_


def run_loop(model, x, targets, settings: dict, released: bool = False) -> float:
    """Seconds of iGOS++ one image at a time. ``released``: laid out as the released code runs
    one image (a pass per path, of ``points`` inputs; line-search steps one after another);
    else this library's layout for one image (its 4 paths' points in shared passes, 4 steps
    per line-search pass)."""
    layout = {"chunk_size": settings.get("points", 20), "trials": 1} if released else {}
    explainer = IGOSPlusPlus(model, **settings, **layout)
    start = time.perf_counter()
    for i in range(len(x)):
        explainer.attribute(x[i:i + 1], targets[i:i + 1], image_ids=[i])
    return time.perf_counter() - start


def speed(model, x, targets, settings: dict, n_loop: int, batch: int, rounds: int = 2):
    """Alternating rounds of the batched run (all of ``x``) and of both one-image loops (the
    first ``n_loop`` images, default all), each batched run between two measurements of the
    bare pass rates, so a busy machine slows all sides alike. Medians of (batched, own-layout
    loop and released-layout loop s/image, efficiency), the chunk, and the bare
    forward+backward cost per input at one path's points over that at the chunk (the most
    batching can gain)."""
    batched, own, released, eff = [], [], [], []
    rates = None
    n_loop = len(x) if n_loop is None else min(n_loop, len(x))
    for _ in range(rounds):
        before = rates or pass_rates(model, x, _chunk(model, x, settings))
        seconds, counts, chunk = run_batched(model, x, targets, settings, batch)
        rates = pass_rates(model, x, chunk)
        fb, f = (before[0] + rates[0]) / 2, (before[1] + rates[1]) / 2
        eff.append((counts["backward"] * fb + counts["forward"] * f) / seconds)
        batched.append(seconds / len(x))
        own.append(run_loop(model, x[:n_loop], targets[:n_loop], settings) / n_loop)
        released.append(run_loop(model, x[:n_loop], targets[:n_loop], settings, True) / n_loop)
    ceiling = pass_rates(model, x, settings.get("points", 20))[0] / rates[0]
    return (statistics.median(batched), statistics.median(own), statistics.median(released),
            statistics.median(eff), chunk, ceiling)


def _chunk(model, x, settings) -> int:
    e = IGOSPlusPlus(model, **{**settings, "iterations": 1, "points": 1})
    e.attribute(x[:1], 0)
    return e.chunk_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--loop-images", type=int, default=None,
                        help="images of the one-image loops (default: all the batched run's; "
                        "fewer are cheaper but the line search's depth varies by image)")
    parser.add_argument("--small-loop-images", type=int, default=None)
    parser.add_argument("--timing-iterations", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=15,
                        help="iterations of the quality run (15: the released default)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds (medians)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, load average at start "
          f"{os.getloadavg()[0]:.2f} (other work on this machine slows every number below)")

    model, x, name, last = setup(args.images)
    model.to(args.device)
    x = x.to(args.device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    print(f"quality: {name}, device {args.device}")

    heatmaps, seconds = {}, {}
    start = time.perf_counter()
    e_pp = IGOSPlusPlus(model, iterations=args.iterations)
    masks, counts = [], {"forward": 0, "backward": 0}
    for s in range(0, len(x), args.batch):
        masks.append(e_pp.attribute(x[s:s + args.batch], targets[s:s + args.batch],
                                    image_ids=range(s, min(len(x), s + args.batch))))
        for k in counts:
            counts[k] += getattr(e_pp.counts_, k)
    seconds["igospp"] = time.perf_counter() - start
    heatmaps["igospp"] = 1 - torch.cat(masks)
    start = time.perf_counter()
    e_igos = IGOS(model, iterations=args.iterations)
    heatmaps["igos"] = torch.cat([1 - e_igos.attribute(x[s:s + args.batch],
                                                       targets[s:s + args.batch],
                                                       image_ids=range(s, min(len(x),
                                                                              s + args.batch)))
                                  for s in range(0, len(x), args.batch)])
    seconds["igos"] = time.perf_counter() - start
    start = time.perf_counter()
    heatmaps.update(captum_heatmaps(model, x, targets, last))
    seconds["captum (4 maps)"] = time.perf_counter() - start
    heatmaps["random"] = random_heatmaps(len(x), (32, 32), seed=0)
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), flush=True)

    table = {}
    for protocol in ("cells", PixelProtocol()):
        for method, heat in heatmaps.items():
            c = deletion_insertion(model, x, heat, targets, protocol=protocol)
            table[(c.protocol["name"], method)] = (float(c.deletion_auc.mean()),
                                                   float(c.insertion_auc.mean()))
    print(f"\n{'protocol':8} {'method':10} {'deletion':>9} {'insertion':>9}")
    for (protocol, method), (d, i) in table.items():
        print(f"{protocol:8} {method:10} {d:9.4f} {i:9.4f}")
    peers = ["ig", "ig_abs", "gradcam", "occlusion"]  # Captum's
    d_pp, i_pp = table[("cells", "igospp")]
    del_best = min(table[("cells", p)][0] for p in peers)
    ins_best = max(table[("cells", p)][1] for p in peers)
    for protocol in ("cells", "pixels"):
        others = [m for m in heatmaps if m != "igospp"]
        d, i = table[(protocol, "igospp")]
        d_other = min(others, key=lambda m: table[(protocol, m)][0])
        i_other = max(others, key=lambda m: table[(protocol, m)][1])
        print(f"goal ({protocol}): iGOS++ lowest deletion of all methods ({d:.4f} vs "
              f"{d_other} {table[(protocol, d_other)][0]:.4f}: "
              f"{'met' if d < table[(protocol, d_other)][0] else 'NOT met'}), highest "
              f"insertion ({i:.4f} vs {i_other} {table[(protocol, i_other)][1]:.4f}: "
              f"{'met' if i > table[(protocol, i_other)][1] else 'NOT met'})")

    # speed: batched against the one-image loops, identical settings, fewer iterations
    timing = {"iterations": args.timing_iterations}
    b, own, rel, eff, chunk, ceiling = speed(model, x[:args.batch], targets[:args.batch],
                                             timing, args.loop_images, args.batch, args.rounds)
    speedup_big, own_big = rel / b, own / b
    s_batched = seconds["igospp"] / len(x)
    print(f"\nspeed, {name.split(' on ')[0]} ({args.timing_iterations} iterations): batched "
          f"{b:.2f} s/image ({min(args.batch, len(x))} images a call, chunk {chunk}); one "
          f"image at a time: released layout {rel:.2f} s/image ({speedup_big:.2f}x), this "
          f"library's layout {own:.2f} s/image ({own_big:.2f}x; "
          f"{args.loop_images or min(args.batch, len(x))} images); "
          f"efficiency {eff:.2f}; a bare forward+backward costs {ceiling:.2f}x per input at one "
          f"path's 20 points what it costs at {chunk} (the most batching can gain); quality run "
          f"({args.iterations} iterations): {s_batched:.2f} s/image", flush=True)

    from notebookcarto.datasets import ConceptPlayground
    from notebookcarto.models import PlaygroundCNN

    torch.manual_seed(0)
    small = PlaygroundCNN(num_classes=8).eval().to(args.device)
    xs, _ = ConceptPlayground(n=args.batch, size=32, seed=1).tensors()
    xs = xs.to(args.device)
    with torch.no_grad():
        ts = small(xs).argmax(1)
    bs, own_s, rel_s, eff_small, _, ceiling_small = speed(
        small, xs, ts, {**timing, "noise": 0.045}, args.small_loop_images, args.batch,
        args.rounds)
    speedup_small, own_small = rel_s / bs, own_s / bs
    print(f"speed, untrained playground CNN: batched {bs * 1e3:.0f} ms/image; one image at a "
          f"time: released layout {rel_s * 1e3:.0f} ms/image ({speedup_small:.2f}x), this "
          f"library's {own_s * 1e3:.0f} ms/image ({own_small:.2f}x); efficiency "
          f"{eff_small:.2f}, bare-pass ceiling {ceiling_small:.2f}x", flush=True)
    print(f"goals on CPU: batched >= 3x the released-layout loop ({speedup_small:.2f}x small, "
          f"{speedup_big:.2f}x resnet20: "
          f"{'met' if min(speedup_small, speedup_big) >= 3 else 'NOT met'}); efficiency >= 0.7 "
          f"({eff:.2f}: {'met' if eff >= 0.7 else 'NOT met'})")

    gpu = ""
    if args.device == "cuda":
        from notebookcarto.models import torchvision_model

        big, _ = torchvision_model("resnet50", pretrained=False)
        big = big.to("cuda").eval()
        xg = torch.randn(32, 3, 224, 224, device="cuda")
        tg = torch.zeros(32, dtype=torch.long, device="cuda")
        b, _, lp, eff_gpu, *_ = speed(big, xg, tg, timing, 2, 32, rounds=1)
        gpu = f" speedup_gpu_resnet50={lp / b:.2f} efficiency_gpu={eff_gpu:.2f}"
        print(f"GPU resnet50 224 px: batched {b:.2f} s/image, released-layout loop {lp:.2f} "
              f"s/image: {lp / b:.2f}x (goal >= 20x)")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"del_igospp={d_pp:.4f} ins_igospp={i_pp:.4f} del_best_peer={del_best:.4f} "
          f"ins_best_peer={ins_best:.4f} speedup_small={speedup_small:.2f} "
          f"speedup_resnet20={speedup_big:.2f} efficiency={eff:.2f} "
          f"s_per_image_resnet20={s_batched:.2f}{gpu} speedup_small_own={own_small:.2f} "
          f"speedup_resnet20_own={own_big:.2f} images={len(x)} iterations={args.iterations} "
          f"device={args.device}")


if __name__ == "__main__":
    main()
