"""The back-end switch shared by the analyses with compiled CPU loops."""

from __future__ import annotations

import torch

__all__ = ["BACKENDS", "choose_backend"]

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
