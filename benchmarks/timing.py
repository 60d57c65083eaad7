"""Wall-clock timing shared by the benchmark scripts (they import it from this folder)."""

import time

import torch


def timed(fn) -> float:
    """Seconds ``fn()`` takes, with CUDA work finished before and after."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start
