"""Inspect a model mid-training: a ``Monitor`` maps it at chosen steps into a series of atlases
on disk, and a ``Timeline`` reads the curves back (accuracy, neuron drift, detectors, cluster
turnover; any snapshot as an Atlas).

| piece | what |
| --- | --- |
| ``Monitor(path, probe, layers, every=...)`` | ``observe(model, step)`` in a training loop |
| ``lightning_callback(monitor)`` | the same from a PyTorch Lightning ``Trainer`` (optional) |
| ``huggingface_callback(monitor)`` | the same from a Hugging Face ``Trainer`` (optional) |
| ``Schedule``, ``log_steps`` | which steps are observed |
| ``Series(path)`` | the folder: ``steps()``, ``load(step)`` -> Atlas |
| ``Timeline(path)`` | curves over the steps; ``refresh()`` follows a run still going |
| ``undisturbed(model)`` | the guard each observation runs under |
"""

from .drift import cluster_continuity, set_jaccard, settled_steps, turnover
from .guard import undisturbed
from .huggingface import huggingface_callback
from .lightning import callback_class, lightning_callback
from .monitor import DEFAULT_TOP_N, Monitor, Snapshot
from .probe import Probe
from .schedule import DEFAULT_EVERY, Schedule, log_steps
from .series import Series, SeriesFormatError
from .timeline import Timeline
from .writer import Written

__all__ = ["DEFAULT_EVERY", "DEFAULT_TOP_N", "Monitor", "Probe", "Schedule", "Series",
           "SeriesFormatError", "Snapshot", "Timeline", "Written", "callback_class",
           "cluster_continuity", "huggingface_callback", "lightning_callback", "log_steps",
           "set_jaccard", "settled_steps", "turnover", "undisturbed"]
