"""The back-end switch shared by the analyses with compiled CPU loops."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["BACKENDS", "choose_backend", "torch_threads_kept"]

BACKENDS = ("auto", "numba", "torch")


def choose_backend(backend: str, device=None) -> str:
    """``"numba"`` (compiled loops, CPU only) or ``"torch"`` for ``backend`` on ``device``:
    ``"auto"`` takes numba on the CPU and torch elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cpu = torch.device(device or "cpu").type == "cpu"
    if backend == "numba" and not on_cpu:
        raise ValueError(f"backend='numba' runs on the CPU only: use backend='torch' on {device}")
    if backend == "auto":
        return "numba" if on_cpu else "torch"
    return backend


@contextlib.contextmanager
def torch_threads_kept():
    """Keep torch's thread count across code that starts numba's parallel threading layer (a
    compiled parallel loop, UMAP): that layer shares the OpenMP runtime with torch and sets its
    thread count when it starts, which would change the user's ``torch.set_num_threads``."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
