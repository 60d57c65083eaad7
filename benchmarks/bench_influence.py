"""Cost of the influence pass against a bare forward pass, its peak memory at Summit's scale, and
the attribution graphs it feeds.

Part 1, the CIFAR ResNet-20 on CIFAR-10 test JPEGs when ../shared is present (else an untrained
playground CNN on generated playground images): influence over every pair of consecutive blocks.
Both passes run in this process on the same pre-decoded batches, alternating, and the median of
several rounds is compared. The gradient estimator runs on a smaller subset against a bare
forward pass over that subset. Graphs: an Atlas over the same images, the conv-estimator counts,
then every class's attribution graph (PageRank, threshold, Sugiyama layout).

Part 2, Summit's scale: random-init torchvision GoogLeNet (Summit's InceptionV1, its nine
inception blocks), VGG-11 and ResNet-18 at 224 px, 64 random images each, each in a subprocess
of its own: a bare forward pass over the 64 images, then the conv-estimator pass over
consecutive mappable layers at the default memory budget (time, and the process's peak resident
memory during the pass, model and data included). GoogLeNet's pass is ``count_influence`` on an
Atlas over its nine blocks (10 classes: the graphs read dense per-class counts), with the
bottleneck pairs of its 3x3 and 5x5 branches, followed by every class's attribution graph at the
default caps (nodes and edges kept by Summit's threshold, and shown by the default view).

Uses CUDA when available. Run from the repo root:
    .venv/bin/python benchmarks/bench_influence.py [--images 2000] [--scale-images 64]
Last line: ratio=... ratio_gradient=... ratio_googlenet_224=... peak_mb_googlenet_224=...
peak_mb_vgg11_224=... (and the rest: ResNet-18, graphs, images, device)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from notebookcarto import Atlas
from notebookcarto.analyses.attribution_graph import attribution_graphs
from notebookcarto.analyses.influence import collect_influence, count_influence
from notebookcarto.capture import mappable_layers
from timing import shared_folder, timed

SCALE_MODELS = ("googlenet", "vgg11", "resnet18")
GRAPH_CLASSES = 10


def setup(n: int):
    """(model, dataset, class names, description), n images spread over the classes."""
    shared = shared_folder()
    if shared is not None:
        from notebookcarto.datasets.folder import cifar10_test
        from notebookcarto.models.resnet_cifar import load_resnet20

        data = cifar10_test(shared / "data" / "cifar10-test")
        model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
        names = list(data.classes)
        name = "resnet20 on CIFAR-10 test JPEGs"
    else:
        from notebookcarto.datasets.playground import ConceptPlayground
        from notebookcarto.models.playground_cnn import PlaygroundCNN

        data = ConceptPlayground(n=10_000, size=32, seed=1)
        torch.manual_seed(0)
        model, names = PlaygroundCNN(num_classes=len(data.classes)).eval(), data.classes
        name = "untrained playground CNN on playground images"
    step = max(1, len(data) // n)
    data = torch.utils.data.Subset(data, range(0, len(data), step)[:n])
    return model, data, names, name


def compare(fn, bare, rounds: int) -> tuple[float, float]:
    """Median seconds of ``fn`` and of ``bare`` over alternating rounds (after a warm-up)."""
    fn(), bare()
    a, b = [], []
    for _ in range(rounds):
        b.append(timed(bare))
        a.append(timed(fn))
    return statistics.median(a), statistics.median(b)


def cifar_part(args) -> dict:
    model, data, names, name = setup(args.images)
    model.to(args.device)
    layers = mappable_layers(model)
    pairs = list(zip(layers[:-1], layers[1:]))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size)
    batches = [(x.to(args.device), y.to(args.device)) for x, y in loader]
    n = sum(len(y) for _, y in batches)
    print(f"{name}: {n} images, {len(pairs)} pairs of consecutive blocks, device {args.device}, "
          f"{torch.get_num_threads()} threads" + ("" if args.device != "cpu" else
                                                  " (no GPU in this run)"), flush=True)

    def bare(part=batches):
        with torch.inference_mode():
            for x, _ in part:
                model(x)

    def conv():
        collect_influence(model, batches, pairs, estimator="conv", progress=False)

    conv_t, bare_t = compare(conv, bare, args.rounds)
    print(f"conv estimator: {conv_t:.2f} s, bare forward {bare_t:.2f} s, ratio "
          f"{conv_t / bare_t:.2f} (goal <= 3 on CPU)", flush=True)

    m = min(args.gradient_images, n)
    xs, ys = (torch.cat(t)[:m] for t in zip(*batches))
    part = [(xs[i:i + args.batch_size], ys[i:i + args.batch_size])
            for i in range(0, m, args.batch_size)]

    def gradient():
        return collect_influence(model, part, pairs, estimator="gradient", progress=False)

    stats = gradient()  # warm up; one timed round, a bare pass just before and after it
    before = timed(lambda: bare(part))
    grad_t = timed(gradient)
    bare_part_t = (before + timed(lambda: bare(part))) / 2
    on = sorted({v["on"] for v in stats.config["gradient"].values()})
    print(f"gradient estimator on {m} images ({'/'.join(on)}): {grad_t:.2f} s, bare forward "
          f"{bare_part_t:.3f} s, ratio {grad_t / bare_part_t:.1f} (goal <= 10 on CPU)",
          flush=True)

    atlas = Atlas.build(model, batches, layers, class_names=names, progress=False)
    atlas.attach(count_influence(atlas, model, batches, pairs, progress=False))
    attribution_graphs(atlas, progress=False)  # warm up
    graph_times = [timed(lambda: attribution_graphs(atlas, progress=False))
                   for _ in range(args.rounds)]
    graphs = attribution_graphs(atlas, progress=False).graphs
    nodes, edges = _sizes(graphs)
    graphs_s = statistics.median(graph_times)
    print(f"{len(graphs)} class graphs in {graphs_s:.3f} s: {nodes}, {edges}", flush=True)
    return {"ratio": conv_t / bare_t, "ratio_gradient": grad_t / bare_part_t,
            "graphs_s": graphs_s, "images": n, "gradient_images": m}


def _sizes(graphs: dict) -> tuple[str, str]:
    """Node and edge counts over the graphs: kept (all), and shown by the default view."""
    def span(values):
        return f"{min(values)}-{max(values)} (median {np.median(values):.0f})"

    def shown(items):
        return sum(1 for item in items if item.get("shown", True))

    kept_n = [len(g["nodes"]) for g in graphs.values()]
    kept_e = [len(g["edges"]) for g in graphs.values()]
    shown_n = [shown(g["nodes"]) for g in graphs.values()]
    shown_e = [shown(g["edges"]) for g in graphs.values()]
    return (f"nodes kept {span(kept_n)}, shown {span(shown_n)}",
            f"edges kept {span(kept_e)}, shown {span(shown_e)}")


# -- part 2: one model at 224 px, in a subprocess -------------------------------------------------

def _status(key: str) -> float:
    """A /proc/self/status figure in MB."""
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """VmHWM := VmRSS (Linux): the peak of what follows, not of the bare pass before."""
    try:
        open("/proc/self/clear_refs", "w").write("5")
        return True
    except OSError:
        return False


def scale_model(name: str, size: int, n: int, device: str) -> dict:
    """Bare forward and influence pass of one random-init torchvision model (part 2)."""
    import torchvision

    torch.manual_seed(0)
    build = {"googlenet": lambda: torchvision.models.googlenet(
                 weights=None, aux_logits=False, init_weights=True),
             "vgg11": lambda: torchvision.models.vgg11(weights=None),
             "resnet18": lambda: torchvision.models.resnet18(weights=None)}[name]
    model = build().eval().to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=g).to(device)
    layers = mappable_layers(model)
    pairs = list(zip(layers[:-1], layers[1:]))
    graph = name == "googlenet"
    y = (torch.arange(n) % GRAPH_CLASSES if graph
         else torch.randint(0, 1000, (n,), generator=g)).to(device)
    with torch.inference_mode():
        model(x[:2])  # warm up
    bare_t = timed(lambda: _bare(model, x))
    atlas = None
    if graph:
        atlas = Atlas.build(model, (x, y), layers, num_classes=GRAPH_CLASSES, progress=False)
    collect_influence(model, (x[:2], y[:2]), pairs[:1], progress=False)  # compile the kernel
    base = _status("VmRSS")
    measured = _reset_peak()
    start = time.perf_counter()
    if graph:
        result = count_influence(atlas, model, (x, y), progress=False)
        chunking, pairs_done = result.params["chunking"], result.pairs
    else:
        stats = collect_influence(model, (x, y), pairs, progress=False)
        chunking, pairs_done = stats.config["chunking"], stats.pairs
    influence_t = time.perf_counter() - start
    out = {"model": name, "size": size, "images": n, "layers": len(layers),
           "pairs": len(pairs), "pairs_counted": len(pairs_done), "bare_s": bare_t,
           "influence_s": influence_t, "ratio": influence_t / bare_t,
           "peak_mb": _status("VmHWM") if measured else float("nan"), "base_mb": base,
           "images_per_pass": chunking["images"],
           "per_image_mb": chunking["per_image"] / 2 ** 20}
    if graph:
        atlas.attach(result)
        start = time.perf_counter()
        graphs = attribution_graphs(atlas, progress=False).graphs
        out["graphs_s"] = time.perf_counter() - start
        out["graph_layers"] = len(next(iter(graphs.values()))["layers"])
        out["nodes"], out["edges"] = _sizes(graphs)
    return out


def _bare(model, x):
    with torch.inference_mode():
        model(x)


def scale_part(args) -> dict:
    results = {}
    for name in args.models.split(","):
        run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", name,
                              "--size", str(args.size), "--scale-images",
                              str(args.scale_images), "--device", args.device],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{name}: failed\n{run.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        results[name] = r
        print(f"{name} at {r['size']} px, {r['images']} images, {r['pairs']} pairs of "
              f"{r['layers']} layers ({r['pairs_counted']} counted): influence "
              f"{r['influence_s']:.1f} s, bare forward {r['bare_s']:.1f} s, ratio "
              f"{r['ratio']:.2f}; peak {r['peak_mb']:.0f} MB during the pass (resident before "
              f"it {r['base_mb']:.0f} MB); {r['images_per_pass']} images a pass, about "
              f"{r['per_image_mb']:.1f} MB each", flush=True)
        if "nodes" in r:
            print(f"  {name} graphs over {r['graph_layers']} layers in {r['graphs_s']:.1f} s: "
                  f"{r['nodes']}; {r['edges']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--gradient-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--scale-images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--models", default=",".join(SCALE_MODELS))
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # part 2's subprocess
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(scale_model(args.one, args.size, args.scale_images, args.device)))
        return

    cifar = cifar_part(args)
    scale = {} if args.skip_scale else scale_part(args)
    line = [f"ratio={cifar['ratio']:.3f}", f"ratio_gradient={cifar['ratio_gradient']:.2f}"]
    for name in SCALE_MODELS:
        r = scale.get(name)
        if r is not None:
            line += [f"ratio_{name}_{r['size']}={r['ratio']:.2f}",
                     f"peak_mb_{name}_{r['size']}={r['peak_mb']:.0f}"]
    line += [f"graphs_s={cifar['graphs_s']:.3f}", f"images={cifar['images']}",
             f"gradient_images={cifar['gradient_images']}", f"device={args.device}"]
    print(" ".join(line))


if __name__ == "__main__":
    main()
