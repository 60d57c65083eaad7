"""A context manager that puts a model back exactly as it found it."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ModelGuard", "model_device", "rng_state", "set_rng_state"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _hook_dicts(module: nn.Module) -> dict[str, dict]:
    # Also the flag dicts beside the hooks (_forward_hooks_with_kwargs, ..._always_called).
    return {k: v for k, v in vars(module).items() if "hooks" in k and isinstance(v, dict)}


def _restore(tensor: torch.Tensor, version: int, copy: torch.Tensor):
    """Put ``copy``'s values back into ``tensor`` if they changed. The version counter alone
    misses some changes (BatchNorm's running statistics, ``.data`` writes, ``model.double()``)."""
    if (tensor.dtype, tensor.shape, tensor.device) != (copy.dtype, copy.shape, copy.device):
        tensor.data = copy
    elif tensor._version != version or (not tensor.is_meta and not torch.equal(tensor, copy)):
        tensor.copy_(copy)


def rng_state():
    """The global torch RNG state: the CPU's and that of every initialised CUDA device."""
    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    return torch.get_rng_state(), cuda


def set_rng_state(state) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


class ModelGuard:
    """Snapshot what running a model could change, and restore it on exit (also after an error).

    Covers parameter and buffer values (e.g. BatchNorm running statistics), dtypes and gradients,
    and the tensor objects themselves, train/eval mode, ``requires_grad`` flags and the hooks
    registered on every module. The global RNG is not the model's: ``Capture`` undoes what the
    model's own forward passes draw from it, and leaves every other draw (a shuffled loader's,
    the user's) as it happened.
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        modules = list(self.model.modules())
        self._tensors = []
        for module in modules:
            for kind in ("_parameters", "_buffers"):
                for name, tensor in getattr(module, kind).items():
                    if tensor is not None:
                        grad = tensor.grad if kind == "_parameters" else None
                        grad = None if grad is None else (grad, grad._version,
                                                          grad.detach().clone())
                        self._tensors.append((module, kind, name, tensor, tensor._version,
                                              tensor.detach().clone(), tensor.requires_grad,
                                              grad))
        self._training = [(m, m.training) for m in modules]
        self._hooks = [(m, {k: dict(v) for k, v in _hook_dicts(m).items() if v},
                        getattr(m, "_is_full_backward_hook", None))
                       for m in modules]
        return self

    def __exit__(self, *exc):
        # Attributes are set only where they changed: nn.Module.__setattr__ is slow.
        with torch.no_grad():
            for module, kind, name, tensor, version, copy, requires_grad, grad in self._tensors:
                if getattr(module, kind).get(name) is not tensor:
                    getattr(module, kind)[name] = tensor
                _restore(tensor, version, copy)
                if tensor.requires_grad != requires_grad:
                    tensor.requires_grad_(requires_grad)
                if kind == "_parameters":
                    if grad is not None:
                        _restore(*grad)
                    saved = None if grad is None else grad[0]
                    if tensor.grad is not saved:
                        tensor.grad = saved
        for module, training in self._training:
            if module.training != training:
                module.training = training
        for module, saved, full_backward in self._hooks:
            for attr, hooks in _hook_dicts(module).items():
                if hooks or saved.get(attr):
                    hooks.clear()
                    hooks.update(saved.get(attr, {}))
            if getattr(module, "_is_full_backward_hook", None) is not full_backward:
                module._is_full_backward_hook = full_backward
        self._tensors = self._training = self._hooks = None
        return False
