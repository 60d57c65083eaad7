"""A Hugging Face ``transformers.Trainer`` callback around a Monitor (optional: ``pip install
'notebookcarto[huggingface]'``, i.e. transformers and the accelerate its Trainer needs).

::

    monitor = Monitor("runs/vit", probe=(images, labels), every=100)
    trainer = Trainer(model, args, train_dataset=data,
                      callbacks=[huggingface_callback(monitor)])
    trainer.train()

The callback observes ``state.global_step`` (the optimizer steps done) when training starts and
at the end of every step, so its series is the one a plain loop gets. The model must map a batch
of probe images to logits when called as ``model(images)``. Only the main process observes,
unless the monitor itself runs under ``torch.distributed`` (then every process does, as the
monitor needs). Each checkpoint folder gets the monitor's state (``monitor.json``); a run
resumed from a checkpoint in ``args.output_dir`` (``trainer.train(resume_from_checkpoint=True)``
or its path, with ``Monitor(..., resume=True)``) rewinds the series to it. transformers is
imported only when a callback is made.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ["STATE_FILE", "huggingface_callback"]

STATE_FILE = "monitor.json"
_CLASSES: list[type] = []


def _checkpoint_folder(args, state) -> str:
    """The folder the Trainer saves the checkpoint of this step in."""
    return os.path.join(args.output_dir, f"checkpoint-{state.global_step}")


def _callback_class() -> type:
    if _CLASSES:
        return _CLASSES[0]
    try:
        base = importlib.import_module("transformers").TrainerCallback
    except ImportError:
        raise ImportError("the Hugging Face callback needs transformers: pip install "
                          "'notebookcarto[huggingface]' (or transformers)") from None

    class MonitorCallback(base):
        """Observes the Trainer's model with a ``Monitor`` at the start of training and after
        every step; checkpoints carry the monitor's state."""

        def __init__(self, monitor: "Monitor"):
            from .monitor import Monitor

            if not isinstance(monitor, Monitor):
                raise TypeError(f"monitor must be a notebookcarto Monitor, got "
                                f"{type(monitor).__name__}")
            self.monitor = monitor

        def _observes(self, state) -> bool:
            return self.monitor.world is not None or state.is_world_process_zero

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if not self._observes(state):
                return
            saved = os.path.join(_checkpoint_folder(args, state), STATE_FILE)
            if state.global_step and self.monitor.resume and os.path.isfile(saved):
                with open(saved) as f:
                    self.monitor.load_state_dict(json.load(f))
            self.monitor.observe(model, state.global_step)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self._observes(state):
                self.monitor.observe(model, state.global_step)

        def on_save(self, args, state, control, **kwargs):
            monitor_state = self.monitor.state_dict()  # waits for the writes it names
            folder = _checkpoint_folder(args, state)
            if state.is_world_process_zero and os.path.isdir(folder):
                with open(os.path.join(folder, STATE_FILE), "w") as f:
                    json.dump(monitor_state, f)

        def on_train_end(self, args, state, control, **kwargs):
            self.monitor.flush()

    MonitorCallback.__module__ = __name__
    _CLASSES.append(MonitorCallback)
    return MonitorCallback


def huggingface_callback(monitor: "Monitor"):
    """A ``transformers.TrainerCallback`` that drives ``monitor`` (see the module docstring)."""
    return _callback_class()(monitor)
