"""An observation leaves the training exactly as it was."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch import nn

from ..capture import ModelGuard, rng_state, set_rng_state

__all__ = ["undisturbed"]


@contextlib.contextmanager
def undisturbed(model: nn.Module):
    """Run a block (an observation) so that the training loop around it goes on exactly as if
    it had not run: the model's parameters, buffers (BatchNorm running statistics), gradients,
    ``requires_grad`` flags, train/eval modes and hooks (``capture.ModelGuard``), the global
    RNGs of torch (CPU and CUDA), Python's ``random`` and numpy, torch's thread count, the
    grad mode and the deterministic-algorithms setting are put back on exit, also after an
    error. Everything the observation draws from an RNG is undone: it runs only library code."""
    torch_rng, python_rng, numpy_rng = rng_state(), random.getstate(), np.random.get_state()
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    with ModelGuard(model):
        try:
            yield
        finally:
            set_rng_state(torch_rng)
            random.setstate(python_rng)
            np.random.set_state(numpy_rng)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            torch.set_grad_enabled(grad)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
