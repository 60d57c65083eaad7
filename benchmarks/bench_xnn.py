"""XNN x-features: faithfulness (R^2 of the class logit rebuilt from the x-features, on held-out
images) and training seconds per class.

The CIFAR ResNet-20 on CIFAR-10 test JPEGs (every k-th of the 10000; the playground CNN of
bench_explain, trained once and cached, on playground images, without ../shared), x-features
of its last block (``layer3``; ``block4`` of the playground CNN), ``--features`` (3) per class
for the first ``--classes`` classes, trained on the same activations (read once) for
``--steps`` Adam steps, a quarter of the images held out. ``xnn_s_per_class`` is the mean
training time of one class (reading the activations, once for all classes, is printed apart).

``measure(model, images, layer, classes)`` is what another benchmark (SAG's) calls for the same
numbers on its own model and images; ``line(numbers)`` formats them.

Run from the repo root:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_xnn.py
Last line: xnn_s_per_class=... xnn_faithfulness_r2=... (then features, classes, images, steps,
device). The networks are tiny: on a busy two-core machine one thread was about 25x faster
than two. Recorded with one thread on two shared cores, the defaults (1000 images, 10 classes,
1000 steps, 2 restarts): xnn_s_per_class=9.026 xnn_faithfulness_r2=0.992 (every class >= 0.986).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench_explain import setup
from notebookcarto.capture import model_device
from notebookcarto.explain import xnn


def measure(model, images: torch.Tensor, layer: str, classes, *, features: int = 3,
            steps: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """XNN of ``classes`` on ``layer`` over ``images`` (n, C, H, W): mean faithfulness R^2 over
    the classes, mean training seconds per class, the seconds reading the activations, and the
    result itself (``"result"``)."""
    result = xnn(model, images, layer, list(classes), features=features, steps=steps,
                 seed=seed, show=0, progress=progress)
    return {"xnn_s_per_class": float(np.mean(result.seconds)),
            "xnn_faithfulness_r2": float(np.mean(result.faithfulness_r2)),
            "capture_s": float(result.capture_seconds), "result": result}


def line(numbers: dict) -> str:
    """``xnn_s_per_class=... xnn_faithfulness_r2=...`` of ``measure``'s numbers."""
    return (f"xnn_s_per_class={numbers['xnn_s_per_class']:.3f} "
            f"xnn_faithfulness_r2={numbers['xnn_faithfulness_r2']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    model, x, described, layer = setup(args.images)
    print(f"{described}; x-features of {layer}")
    numbers = measure(model, x, layer, range(args.classes), features=args.features,
                      steps=args.steps)
    print(numbers["result"].summary().round(3).to_string())
    print(f"reading the activations: {numbers['capture_s']:.2f} s (once for all classes)")
    print(f"{line(numbers)} features={args.features} classes={args.classes} "
          f"images={len(x)} steps={args.steps} device={model_device(model).type}")


if __name__ == "__main__":
    main()
