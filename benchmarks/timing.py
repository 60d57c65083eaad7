"""Timing and data shared by the benchmark scripts (they import it from this folder)."""

import os
import time
from pathlib import Path

import torch


def shared_folder() -> Path | None:
    """``$NOTEBOOKCARTO_SHARED`` or ``../shared`` beside the checkout, if it holds the CIFAR-10
    test images (the benchmarks use the playground otherwise)."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(os.environ.get("NOTEBOOKCARTO_SHARED", root.parent / "shared"))
    return folder if (folder / "data" / "cifar10-test").is_dir() else None


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a local process group)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn) -> float:
    """Seconds ``fn()`` takes, with CUDA work finished before and after."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start
