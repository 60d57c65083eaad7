"""Cost of Network Dissection against a bare forward pass; the quantile sketch's speed and error.

Data: playground images rendered once into memory (``ConceptTensors``), 20 concepts with masks
at 32x32. Models (untrained: the cost does not depend on the weights):

- CIFAR ResNet-20, its three stages (``layer1`` .. ``layer3``) dissected, as the paper dissects a
  network's conv stages: the headline ``ratio``;
- the playground CNN, all four blocks: ``ratio_small_cnn``. It does about 120 multiply-adds per
  activation it outputs, so the per-activation work of a dissection costs as much as its own
  convolutions there; it shows the worst case.

For each model, in one process, several rounds of (in turn) the following; each ratio is the
median over the rounds of that round's time against the same round's forward pass:

- forward: a bare forward pass over the images (inference mode, same batches);
- dissect: the whole dissection, original method: per-unit thresholds from the raw activations
  (exact top values under the default estimator="auto") and, in the same forward pass, the
  counts above and inside the band guessed around them; a second pass only for layers whose
  band misses (the number of passes is printed);
- tally: counting alone, with the thresholds given (one pass);
- dissect_2020: the whole 2020 variant (thresholds from the resampled activations).

Then the sketch alone: throughput (values per second) over 10^7 values per channel and its rank
error against the exact quantiles (max over quantiles 0.5 .. 0.999, as a share of positions).
Uses CUDA when available. On the playground CNN, counting costs more than its forward pass, so
there ``cache_limit=0`` (two passes) would be a little faster.

Run from the repo root:  .venv/bin/python benchmarks/bench_dissect.py [--images 2000] [--rounds 5]
Last line: ratio=... ratio_tally=... ratio_2020=... ratio_small_cnn=... quantile_rank_error=...
sketch_mvalues_per_s=...
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from notebookcarto.analyses.dissection import dissect
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.datasets.concept_data import ConceptTensors, PlaygroundConcepts
from notebookcarto.models import PlaygroundCNN, resnet20
from notebookcarto.stats import QuantileSketch
from timing import timed


def sketch_figures(n: int, channels: int, device) -> tuple[float, float]:
    """(million values per second, max rank error) of QuantileSketch on n values per channel."""
    gen = torch.Generator().manual_seed(0)
    data = torch.cat([(torch.randn(channels // 2, n, generator=gen) + 0.3).relu(),
                      torch.randn(channels - channels // 2, n, generator=gen).mul(2).exp()])
    chunks = [c.to(device) for c in data.split(1 << 17, dim=1)]
    sketch = QuantileSketch(channels, device=device)
    seconds = timed(lambda: [sketch.update(c, dim=0) for c in chunks])
    qs = torch.tensor([0.5, 0.9, 0.99, 0.995, 0.999])
    estimate = sketch.quantile(qs).cpu()
    worst = 0.0
    for row, est in zip(data, estimate):
        ordered = row.sort().values
        below = torch.searchsorted(ordered, est, right=False).double()
        upto = torch.searchsorted(ordered, est, right=True).double()
        target = qs.double() * n
        err = ((below - target).clamp(min=0) + (target - upto).clamp(min=0)) / n
        worst = max(worst, float(err.max()))
    return channels * n / seconds / 1e6, worst


def model_figures(name, model, layers, data, bs, rounds, device) -> dict[str, float]:
    """Best times of a bare forward, a dissection, its IoU pass alone and the 2020 variant."""
    model = model.eval().to(device)

    def forward():
        with torch.inference_mode():
            for s in range(0, len(data), bs):
                model(data.images[s:s + bs].to(device))

    result = dissect(model, data, layers, batch_size=bs, progress=False)  # warm-up
    runs = {
        "forward": forward,
        "dissect": lambda: dissect(model, data, layers, batch_size=bs, progress=False),
        "tally": lambda: dissect(model, data, layers, batch_size=bs, thresholds=result.thresholds,
                                 progress=False),
        "dissect_2020": lambda: dissect(model, data, layers, method="2020", batch_size=bs,
                                        progress=False),
    }
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            times[key].append(timed(fn))
    units = sum(result.thresholds[n].size for n in layers)
    print(f"{name}: layers {layers}, {units} units, "
          f"{int(result.summary()['detectors'].sum())} detectors (untrained), "
          f"{result.params['passes']} forward pass(es)")
    for key, t in times.items():
        print(f"{key:>13}: best {min(t):7.3f} s, median {statistics.median(t):7.3f} s "
              f"({len(data) / min(t):6.0f} images/s at best)")
    # each round times everything back to back: the median of the rounds' ratios is the
    # figure least disturbed by other load on a shared machine
    return {k: statistics.median(a / f for a, f in zip(t, times["forward"]))
            for k, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sketch-values", type=int, default=10_000_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    playground = ConceptPlayground(n=args.images, size=32, seed=1)
    start = time.perf_counter()
    data = ConceptTensors.from_data(PlaygroundConcepts(playground))
    print(f"rendered {len(data)} images with {len(data.concepts)} concept masks in "
          f"{time.perf_counter() - start:.1f} s; device={device} threads={torch.get_num_threads()}")
    torch.manual_seed(0)
    big = model_figures("CIFAR ResNet-20", resnet20(), ["layer1", "layer2", "layer3"], data,
                        args.batch_size, args.rounds, device)
    small = model_figures("playground CNN", PlaygroundCNN(num_classes=len(playground.classes)),
                          ["block1", "block2", "block3", "block4"], data, args.batch_size,
                          args.rounds, device)
    rate, error = sketch_figures(args.sketch_values, 2, device)
    print(f"sketch: {rate:.1f} M values/s, max rank error {error:.5f} of the positions "
          f"on {args.sketch_values:.0e} values per channel")
    print(f"ratio={big['dissect']:.2f} ratio_tally={big['tally']:.2f} "
          f"ratio_2020={big['dissect_2020']:.2f} ratio_small_cnn={small['dissect']:.2f} "
          f"ratio_small_cnn_2020={small['dissect_2020']:.2f} "
          f"quantile_rank_error={error:.5f} sketch_mvalues_per_s={rate:.1f}")


if __name__ == "__main__":
    main()
