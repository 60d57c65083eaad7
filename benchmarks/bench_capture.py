"""Cost of the full statistics pass against a bare forward pass, and its memory.

Model and data: the CIFAR ResNet-20 on the 10,000 CIFAR-10 test JPEGs when ../shared is present,
else an untrained playground CNN on generated playground images. Both passes run in this process
on the same pre-decoded batches, alternating, and the median of several rounds is compared.
Peak memory is measured in child processes that stream the data from disk (or generate it) with a
DataLoader, once for 2k and once for all images: it must not grow with the number of images.

Run from the repo root:  .venv/bin/python benchmarks/bench_capture.py [--rounds 3] [--device cpu]
Last line: ratio=... images_per_s=... peak_mb_2k=... peak_mb_10k=...
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch

from notebookcarto.capture import mappable_layers
from notebookcarto.stats import collect_stats
from timing import shared_folder, timed


def setup(n: int | None = None):
    """(model, dataset, description): ResNet-20 + CIFAR-10 test JPEGs, or the playground."""
    shared = shared_folder()
    if shared is not None:
        from notebookcarto.datasets.folder import cifar10_test
        from notebookcarto.models.resnet_cifar import load_resnet20

        data = cifar10_test(shared / "data" / "cifar10-test")
        model = load_resnet20(shared / "models" / "resnet20-cifar10.th")
        name = "resnet20 on CIFAR-10 test JPEGs"
    else:
        from notebookcarto.datasets.playground import ConceptPlayground
        from notebookcarto.models.playground_cnn import PlaygroundCNN

        data = ConceptPlayground(n=10_000, size=32, seed=1)
        torch.manual_seed(0)
        model = PlaygroundCNN(num_classes=len(data.classes)).eval()
        name = "untrained playground CNN on playground images"
    if n is not None:
        data = torch.utils.data.Subset(data, range(min(n, len(data))))
    return model, data, name


def child(n: int, batch_size: int, device: str) -> None:
    """Stream n images from their source through the statistics pass; print peak RSS (MB)."""
    model, data, _ = setup(n)
    model.to(device)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = collect_stats(model, loader, mappable_layers(model), progress=False)
    state_mb = sum(t.numel() * t.element_size()
                   for t in stats.state_dict()["tensors"].values()) / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": stats.n_images, "peak_mb": peak_mb, "state_mb": state_mb,
                      "pass_mb": peak_mb - before_mb}))


def peak_memory(n: int, batch_size: int, device: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--batch-size",
                          str(batch_size), "--device", device],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batch_size, args.device)

    model, data, name = setup()
    model.to(args.device)
    layers = mappable_layers(model)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size)
    batches = [(x.to(args.device), y.to(args.device)) for x, y in loader]
    n = sum(len(y) for _, y in batches)
    print(f"{name}: {n} images, {len(layers)} layers {layers}, device {args.device}, "
          f"{torch.get_num_threads()} threads")

    def bare():
        with torch.inference_mode():
            for x, _ in batches:
                model(x)

    def full():
        collect_stats(model, batches, layers, progress=False)

    bare(), full()  # warm up
    bare_s, full_s = [], []
    for _ in range(args.rounds):
        bare_s.append(timed(bare))
        full_s.append(timed(full))
    bare_t, full_t = statistics.median(bare_s), statistics.median(full_s)
    print(f"bare forward {bare_t:.2f} s, statistics pass {full_t:.2f} s "
          f"(rounds: {[round(t, 2) for t in bare_s]} / {[round(t, 2) for t in full_s]})")
    small = peak_memory(2000, args.batch_size, args.device)
    large = peak_memory(n, args.batch_size, args.device)
    print(f"streaming peak RSS: {small['peak_mb']:.0f} MB for {small['n']} images, "
          f"{large['peak_mb']:.0f} MB for {large['n']} images (the pass itself added "
          f"{small['pass_mb']:.0f} and {large['pass_mb']:.0f} MB over the imports and model); "
          f"statistics state {large['state_mb']:.2f} MB")
    print(f"ratio={full_t / bare_t:.3f} images_per_s={n / full_t:.0f} "
          f"peak_mb_2k={small['peak_mb']:.0f} peak_mb_10k={large['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
