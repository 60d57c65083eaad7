"""A PyTorch Lightning callback around a Monitor (optional: ``pip install
notebookcarto[lightning]``).

::

    monitor = Monitor("runs/cnn", probe=(images, labels), every=100)
    trainer = pl.Trainer(max_steps=5000, callbacks=[lightning_callback(monitor)])
    trainer.fit(module, loader)

The callback observes ``trainer.global_step`` (the optimizer steps done) when training starts
and after every training batch, so its series is the one a plain loop gets by calling
``monitor.observe(model, 0)`` before training and ``monitor.observe(model, step)`` after each
step. In multi-process runs only global rank 0 observes (so its forward passes must not wait
for the other ranks, as SyncBatchNorm's would). Its ``state_dict`` is the monitor's: it goes
into Lightning's checkpoints, and resuming from one (``trainer.fit(..., ckpt_path=...)``, with
``Monitor(..., resume=True)``) rewinds the series to it. Lightning is imported only when a
callback is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ["PACKAGES", "callback_class", "lightning_callback"]

PACKAGES = ("pytorch_lightning", "lightning.pytorch")
_CLASSES: dict[str, type] = {}


def _base(package: str):
    names = PACKAGES if package == "auto" else (package,)
    if package != "auto" and package not in PACKAGES:
        raise ValueError(f"package must be 'auto' or one of {PACKAGES}, got {package!r}")
    for name in names:
        try:
            return name, importlib.import_module(name).Callback
        except ImportError:
            continue
    raise ImportError("the Lightning callback needs PyTorch Lightning: pip install "
                      "'notebookcarto[lightning]' (or pytorch-lightning)")


def callback_class(package: str = "auto") -> type:
    """The callback class, a subclass of ``Callback`` of ``package`` ("pytorch_lightning" or
    "lightning.pytorch"; "auto": the first installed). Use the package your Trainer is from."""
    name, base = _base(package)
    if name in _CLASSES:
        return _CLASSES[name]

    class MonitorCallback(base):
        """Observes the LightningModule with a ``Monitor`` at the start of training and after
        every training batch; checkpoints carry the monitor's state."""

        def __init__(self, monitor: "Monitor"):
            from .monitor import Monitor

            if not isinstance(monitor, Monitor):
                raise TypeError(f"monitor must be a notebookcarto Monitor, got "
                                f"{type(monitor).__name__}")
            super().__init__()
            self.monitor = monitor

        @property
        def state_key(self) -> str:
            return f"MonitorCallback[{self.monitor.path}]"

        def on_train_start(self, trainer, pl_module):
            if trainer.is_global_zero:
                self.monitor.observe(pl_module, trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.is_global_zero:
                self.monitor.observe(pl_module, trainer.global_step)

        def on_train_end(self, trainer, pl_module):
            self.monitor.flush()

        def on_exception(self, trainer, pl_module, exception):
            try:  # what was observed reaches the disk; the training's error is the one raised
                self.monitor.writer.flush()
            except Exception:
                pass

        def state_dict(self) -> dict:
            return self.monitor.state_dict()

        def load_state_dict(self, state_dict: dict) -> None:
            self.monitor.load_state_dict(state_dict)

    MonitorCallback.__module__ = __name__
    _CLASSES[name] = MonitorCallback
    return MonitorCallback


def lightning_callback(monitor: "Monitor", package: str = "auto"):
    """A Lightning callback that drives ``monitor`` (see the module docstring)."""
    return callback_class(package)(monitor)
