"""What monitoring a training run costs: the monitor's overhead on total training time, one
observation against a bare forward pass over the probe, and the series' size per snapshot.

Training: the playground CNN (width 16) from scratch on generated playground images, as
``models.train_playground_cnn`` trains it (AdamW, one-cycle schedule, random flips), once without
and once with a ``Monitor`` at the default schedule (every 100 steps; statistics only) over a
probe of held-out playground images. The two runs go epoch by epoch in turn, so both see the
same load on a shared machine; the monitored epoch includes waiting for its snapshot writes to
end, so work the background writer does is charged to it. Both runs must end with bit-identical
weights (the monitor leaves training as it was). ``--runs`` (3) such pairs are trained and the
overhead is their median: on a shared 2-core machine one pair's overhead moved from -0.08 to
+0.11 between runs.

Then, on the trained model, several rounds of (in turn) a bare forward pass over the probe
(inference mode, same batches) and one observation: ``observe_ratio`` is the median of the time
``observe`` holds the training loop over the forward pass; ``observe_ratio_with_write`` adds
the snapshot's write, which normally runs on the writer thread while training goes on.

Run from the repo root:  .venv/bin/python benchmarks/bench_monitor.py [--images 3000]
[--epochs 8] [--probe 256] [--rounds 7] [--runs 3]
Last line: overhead=... observe_ratio=... observe_ratio_with_write=... mb_per_snapshot=...
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from notebookcarto.datasets import ConceptPlayground
from notebookcarto.models import PlaygroundCNN
from notebookcarto.monitor import DEFAULT_EVERY, Monitor, Series
from timing import timed


class Run:
    """One training run, epoch by epoch (the loop of ``train_playground_cnn``)."""

    def __init__(self, x, y, *, epochs: int, batch_size: int = 64, lr: float = 3e-3,
                 seed: int = 0, monitor: Monitor | None = None):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.x, self.y, self.batch_size, self.monitor = x, y, batch_size, monitor
        self.model = PlaygroundCNN(int(y.max()) + 1, 16)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=5e-4)
        total = epochs * ((len(x) + batch_size - 1) // batch_size)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=total,
                                                         pct_start=0.25)
        self.step = 0
        self.seconds = 0.0
        if monitor is not None:
            self.seconds += timed(lambda: monitor.observe(self.model, 0))

    def epoch(self):
        def work():
            self.model.train()
            order = torch.randperm(len(self.x), generator=self.gen)
            for start in range(0, len(self.x), self.batch_size):
                idx = order[start:start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
                flip = torch.rand(len(idx), generator=self.gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                loss = nn.functional.cross_entropy(self.model(xb), yb)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
                self.step += 1
                if self.monitor is not None:
                    self.monitor.observe(self.model, self.step)
            if self.monitor is not None:
                self.monitor.flush()  # the writes of this epoch are charged to it

        self.seconds += timed(work)


def observation_ratios(model, probe, folder: Path, rounds: int) -> tuple[float, float]:
    """Median ratios of one observation (without and with its write) to a bare forward pass."""
    monitor = Monitor(folder, probe, every=1)
    images = monitor.probe.images
    model.eval()

    def forward():
        with torch.inference_mode():
            for start in range(0, len(images), monitor.batch_size):
                model(images[start:start + monitor.batch_size])

    forward()
    monitor.observe(model, 0)  # warm up: the first observation writes the manifest
    monitor.flush()
    blocking, total = [], []
    for step in range(1, rounds + 1):
        bare = timed(forward)
        start = time.perf_counter()
        monitor.observe(model, step)
        held = time.perf_counter() - start
        monitor.flush()
        done = time.perf_counter() - start
        blocking.append(held / bare)
        total.append(done / bare)
    return statistics.median(blocking), statistics.median(total)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--probe", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3,
                        help="training runs of both models (the overhead is their median)")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, load average before "
          f"{os.getloadavg()[0]:.1f}")
    x, y = ConceptPlayground(n=args.images, size=32, seed=0).tensors()
    probe = ConceptPlayground(n=args.probe, size=32, seed=1)
    overheads = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            folder = Path(tmp) / f"run{run}"
            plain = Run(x, y, epochs=args.epochs)
            monitor = Monitor(folder, probe)
            watched = Run(x, y, epochs=args.epochs, monitor=monitor)
            for epoch in range(args.epochs):
                plain.epoch()
                watched.epoch()
            monitor.close()
            identical = all(torch.equal(a, b) for a, b in
                            zip(plain.model.state_dict().values(),
                                watched.model.state_dict().values()))
            if not identical:
                raise SystemExit("the monitored run's weights differ from the plain run's")
            overheads.append(watched.seconds / plain.seconds - 1)
            print(f"run {run + 1}: plain {plain.seconds:.1f} s, monitored {watched.seconds:.1f} s, "
                  f"overhead {overheads[-1]:+.4f}; weights bit-identical", flush=True)
        series = Series(folder)
        snapshots = len(series.steps())
        mb = series.size_bytes() / snapshots / 1e6
        overhead = statistics.median(overheads)
        print(f"{plain.step} steps, {snapshots} snapshots (every {DEFAULT_EVERY} steps), "
              f"probe {args.probe} images; overhead the median of {args.runs} runs")
        blocking, with_write = observation_ratios(watched.model, probe, Path(tmp) / "ratio",
                                                  args.rounds)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    print(f"overhead={overhead:.4f} observe_ratio={blocking:.3f} "
          f"observe_ratio_with_write={with_write:.3f} mb_per_snapshot={mb:.3f}")


if __name__ == "__main__":
    main()
