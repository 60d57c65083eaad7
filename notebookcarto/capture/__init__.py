"""Capture layer outputs by module path, leaving the model exactly as it was."""

from .guard import ModelGuard, model_device, rng_state, set_rng_state
from .hooks import Capture, LayerError, StopForward, as_channels, position_shape
from .layers import mappable_layers, resolve_layers, split_call

__all__ = ["Capture", "LayerError", "ModelGuard", "StopForward", "as_channels",
           "mappable_layers", "model_device", "position_shape", "resolve_layers", "rng_state",
           "set_rng_state", "split_call"]
