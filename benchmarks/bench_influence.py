"""Cost of the influence pass against a bare forward pass, and time to build all class graphs.

Model and data: the CIFAR ResNet-20 on CIFAR-10 test JPEGs when ../shared is present, else an
untrained playground CNN on generated playground images; influence over every pair of consecutive
blocks. Both passes run in this process on the same pre-decoded batches, alternating, and the
median of several rounds is compared. The gradient estimator (one batched backward pass per later
channel, far dearer) runs on a smaller subset against a bare forward pass over that subset.
Graphs: an Atlas over the same images, the conv-estimator counts, then every class's attribution
graph (PageRank, threshold, Sugiyama layout). Uses CUDA when available.

Run from the repo root:  .venv/bin/python benchmarks/bench_influence.py [--images 2000]
Last line: ratio=... ratio_gradient=... graphs_s=... (plus images and device)
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from notebookcarto import Atlas
from notebookcarto.analyses.attribution_graph import attribution_graphs
from notebookcarto.analyses.influence import collect_influence, count_influence
from notebookcarto.capture import mappable_layers
from timing import shared_folder, timed


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--gradient-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model, data, names, name = setup(args.images)
    model.to(args.device)
    layers = mappable_layers(model)
    pairs = list(zip(layers[:-1], layers[1:]))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size)
    batches = [(x.to(args.device), y.to(args.device)) for x, y in loader]
    n = sum(len(y) for _, y in batches)
    print(f"{name}: {n} images, {len(pairs)} pairs of consecutive blocks, device {args.device}, "
          f"{torch.get_num_threads()} threads" + ("" if args.device != "cpu" else
                                                  " (no GPU in this run)"))

    def bare(part=batches):
        with torch.inference_mode():
            for x, _ in part:
                model(x)

    def conv():
        collect_influence(model, batches, pairs, estimator="conv", progress=False)

    conv_t, bare_t = compare(conv, bare, args.rounds)
    print(f"conv estimator: {conv_t:.2f} s, bare forward {bare_t:.2f} s, ratio "
          f"{conv_t / bare_t:.2f} (goal <= 3 on CPU)")

    m = min(args.gradient_images, n)
    xs, ys = (torch.cat(t)[:m] for t in zip(*batches))
    part = [(xs[i:i + args.batch_size], ys[i:i + args.batch_size])
            for i in range(0, m, args.batch_size)]

    def gradient():
        collect_influence(model, part, pairs, estimator="gradient", progress=False)

    gradient()  # warm up; one timed round (it is slow), a bare pass just before and after it
    before = timed(lambda: bare(part))
    grad_t = timed(gradient)
    bare_part_t = (before + timed(lambda: bare(part))) / 2
    print(f"gradient estimator on {m} images: {grad_t:.2f} s, bare forward "
          f"{bare_part_t:.3f} s, ratio {grad_t / bare_part_t:.1f}")

    atlas = Atlas.build(model, batches, layers, class_names=names, progress=False)
    atlas.attach(count_influence(atlas, model, batches, pairs, progress=False))
    attribution_graphs(atlas, progress=False)  # warm up
    graph_times = [timed(lambda: attribution_graphs(atlas, progress=False))
                   for _ in range(args.rounds)]
    graphs = attribution_graphs(atlas, progress=False).graphs
    nodes = [len(g["nodes"]) for g in graphs.values()]
    edges = [len(g["edges"]) for g in graphs.values()]
    graphs_s = statistics.median(graph_times)
    print(f"{len(graphs)} class graphs in {graphs_s:.3f} s: nodes {min(nodes)}-{max(nodes)} "
          f"(median {np.median(nodes):.0f}), edges {min(edges)}-{max(edges)} "
          f"(median {np.median(edges):.0f})")
    print(f"ratio={conv_t / bare_t:.3f} ratio_gradient={grad_t / bare_part_t:.2f} "
          f"graphs_s={graphs_s:.3f} images={n} gradient_images={m} device={args.device}")


if __name__ == "__main__":
    main()
