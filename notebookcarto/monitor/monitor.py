"""The Monitor: map a model at chosen steps of its training, into a series on disk.

In a plain training loop::

    monitor = Monitor("runs/cnn", probe=(images, labels), layers=["block1", "block2"],
                      every=100, concepts=PlaygroundConcepts(ConceptPlayground(200, seed=1)))
    monitor.observe(model, 0)                 # the untrained network
    for step in range(1, steps + 1):
        train_one_step(model)
        monitor.observe(model, step)          # maps the model when the schedule says so
    monitor.close()
    timeline = monitor.timeline()             # curves over the steps; any snapshot as an Atlas

Each observation runs the statistics pass over the probe (top images, Summit's A, moments,
accuracy) and the analyses asked for (clusters, dissection, attribution graphs; a warning they
give at every snapshot, as clustering an untrained network does, is given once), under a guard
that leaves the training untouched (``monitor.guard.undisturbed``); the snapshot is then written
to disk on a background thread while training goes on. Resuming: ``monitor.state_dict()`` goes
into the training checkpoint, ``monitor.load_state_dict(state)`` (on a ``Monitor(...,
resume=True)``) rewinds the series to it.

Under ``torch.distributed`` (DDP) every rank calls ``observe`` in its training loop: the probe
pass is sharded over the ranks and combined (``collect_stats``), the analyses run on the
combined statistics, and only rank 0 writes the series (see ``Monitor``'s ``distributed``).
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..atlas import Atlas
from ..capture import resolve_layers
from ..capture.layers import layer_list, mappable_layers
from ..datasets.shard import current_world
from ..stats import ActivationStats, collect_stats
from ..stats.collective import agree, share_config
from .guard import undisturbed
from .plan import Plan
from .probe import Probe, concept_probe
from .schedule import DEFAULT_EVERY, Schedule, _step
from .series import Series
from .writer import Writer, Written

__all__ = ["DEFAULT_TOP_N", "Monitor", "Snapshot"]

DEFAULT_TOP_N = 20
STATE_FORMAT = "notebookcarto.monitor"
_COMPARED = ("layers", "class_names", "probe", "top_n", "analyses")


@dataclass
class Snapshot:
    """One observation: its step, where it is (being) written, the atlas (in memory) and the
    seconds each stage took. The atlas may still be being written on the writer thread: read
    it freely, but attach results only after ``monitor.flush()`` (or to ``Atlas.load(path)``)."""

    step: int
    path: Path
    atlas: Atlas
    seconds: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        total = sum(self.seconds.values())
        return f"Snapshot(step {self.step}, {total:.2f} s, {self.path})"


class Monitor:
    """Maps a model at chosen training steps into a series of atlases on disk.

    Args:
        path: the series folder (created; see ``monitor.series``).
        probe: the images mapped at every snapshot, read once (a tensor, ``(images, labels)``,
            a data set, a loader; a few hundred images). Labels give per-class accuracy, A and
            the graphs.
        layers: module paths to map (default: ``mappable_layers(model)`` at the first
            observation).
        every: the schedule: every N steps (default 100: steps 0, 100, ...), a list of steps
            (e.g. ``log_steps(10_000)``), a function ``step -> bool`` or a ``Schedule``.
        class_names: names of the classes (default: the probe data set's ``classes``).
        top_n: top images kept per neuron (default 20, at most the probe's size); the timeline
            follows these sets.
        clusters: True (or options of ``analyses.cluster_neurons``) to cluster the neurons at
            every snapshot.
        concepts: concept data (``ConceptData``, e.g. ``PlaygroundConcepts``) to run Network
            Dissection at every snapshot, rendered into memory once; ``dissection``: options
            of ``analyses.dissect``.
        graphs: classes whose Summit attribution graphs to draw at every snapshot;
            ``influence`` and ``graph_options``: options of ``analyses.count_influence`` and
            ``analyses.attribution_graphs``.
        batch_size: batch size of the passes over the probe.
        resume: continue the series at ``path`` (after its last snapshot, or from a
            checkpoint's state with ``load_state_dict``); without it an existing series is
            refused.
        background: write snapshots on a background thread (default) while training goes on.
        distributed: under ``torch.distributed`` (a process group of two or more processes,
            initialised before the monitor is made; every rank makes the monitor and calls
            ``observe`` at the same steps): ``"auto"`` (the default) shards the probe pass over
            the ranks, runs the analyses on the combined statistics on every rank (their passes
            sharded where the analysis supports it) and returns the same snapshot everywhere;
            ``"rank0"`` the same, with the snapshot returned on rank 0 only (None elsewhere);
            ``"off"`` makes each process map the whole probe alone and write its own series
            (for a monitor made and called on one rank only). Only rank 0 writes the series (and
            calls ``on_snapshot``'s callbacks); the other ranks never touch its folder. A DDP
            model is mapped through its ``module``.
    """

    def __init__(self, path, probe, layers=None, *, every=DEFAULT_EVERY, class_names=None,
                 top_n: int | None = None, clusters=False, concepts=None, dissection=None,
                 graphs=None, influence=None, graph_options=None, batch_size: int = 64,
                 resume: bool = False, background: bool = True, distributed: str = "auto"):
        self.distributed = distributed
        self.world = current_world(distributed)
        self.series = Series(path)
        self.schedule = Schedule(every)
        self.probe = probe if isinstance(probe, Probe) else Probe(probe, batch_size=batch_size)
        if len(self.probe) < 2:
            raise ValueError(f"the probe holds {len(self.probe)} image(s): give a few hundred "
                             "(at least 2), the same at every snapshot")
        self.class_names = ([str(c) for c in class_names] if class_names is not None
                            else self.probe.class_names)
        if top_n is None:
            top_n = min(DEFAULT_TOP_N, len(self.probe))
        if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= len(
                self.probe):
            raise ValueError(f"top_n must be an integer in 1..{len(self.probe)} (the probe's "
                             f"size), got {top_n!r}")
        self.top_n, self.batch_size = top_n, batch_size
        self.plan = Plan(clusters=clusters,
                         concepts=None if concepts is None else concept_probe(concepts),
                         dissection=dissection, graphs=graphs, influence=influence,
                         graph_options=graph_options)
        if self.plan.clusters is not None:
            need = self.plan.clusters.get("min_exemplars", 10)
            if top_n < need:
                raise ValueError(f"clusters need at least min_exemplars={need} top images per "
                                 f"neuron but top_n={top_n}: raise top_n or lower "
                                 "clusters={'min_exemplars': ...}")
        self._layers = None if layers is None else layer_list(layers)
        self.plan.check(self.class_names, self.probe.labels is not None, self._layers)
        self.resume = bool(resume)
        self._on_writer(self._check_new, "monitor's setup")
        self.writer = Writer(self.series, background=background)
        self.last_step: int | None = None
        self.observed = 0
        self._opened = False
        self._listeners: list[Callable[[Written], None]] = []

    # -- the series -----------------------------------------------------------------------------
    @property
    def writes(self) -> bool:
        """Whether this process writes the series (rank 0 under a process group)."""
        return self.world is None or self.world.rank == 0

    def _on_writer(self, work: Callable[[], dict | None], what: str) -> dict | None:
        """Run ``work`` where the series is written; under a process group the other ranks
        learn of its failure (and raise too, instead of waiting in the next collective) and get
        its JSON result."""
        if self.world is None:
            return work()
        error, result = None, None
        if self.writes:
            try:
                result = work()
            except Exception as err:
                error = err
        agree(error, what, self.world)
        if error is not None:
            raise error
        return share_config({"result": result} if self.writes else None, self.world)["result"]

    def _check_new(self) -> None:
        if self.series.exists() and not self.resume:
            raise FileExistsError(f"{self.series.path} already holds a series: pass resume=True "
                                  "to continue it, or choose another path")

    @property
    def path(self) -> Path:
        return self.series.path

    @property
    def layers(self) -> list[str] | None:
        """The mapped layers (known once the first observation resolved them)."""
        return self._layers

    def _config(self) -> dict:
        return {"layers": self._layers, "class_names": self.class_names,
                "probe": self.probe.describe(), "top_n": self.top_n,
                "analyses": self.plan.describe()}

    def _open(self, model: nn.Module) -> None:
        """At the first observation: resolve the layers, check the plan and start (or check
        and continue) the series."""
        if self._layers is None:
            self._layers = mappable_layers(model)
            if not self._layers:
                raise ValueError("found no blocks to map in this model: pass layers=[...] with "
                                 "module paths from model.named_modules()")
        self._layers = list(resolve_layers(model, self._layers))
        self.plan.check(self.class_names, self.probe.labels is not None, self._layers)
        if current_world(self.distributed) != self.world:
            raise RuntimeError("torch.distributed was initialised (or ended) after this monitor "
                               "was made: make the Monitor after init_process_group, on every "
                               "rank")
        found = self._on_writer(self._open_series, "monitor's series check")
        self.class_names, self.last_step = found["class_names"], found["last_step"]
        self._opened = True

    def _open_series(self) -> dict:
        """Check and continue the series on disk; the class names and last step it gives."""
        if self.series.has_manifest():
            manifest = self.series.read_manifest()
            if self.class_names is None and manifest.get("class_names"):
                self.class_names = list(manifest["class_names"])  # named by the first run
            self._check_same(manifest)
            self.series.clean()
        elif self.series.steps():
            raise FileExistsError(f"{self.series.path} holds snapshots but no series.json: it "
                                  "was not started by a Monitor; choose another path")
        steps = self.series.steps()
        last = steps[-1] if self.last_step is None and steps else self.last_step
        return {"class_names": self.class_names, "last_step": last}

    def _start(self) -> None:
        """Before the first snapshot is written: the series' manifest (so settings refused at
        the first observation leave nothing on disk)."""
        if not self.series.has_manifest():
            self.series.write_manifest({
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "schedule": self.schedule.describe(), **self._config()})

    def _check_same(self, manifest: dict) -> None:
        """A resumed series must map the same probe, layers and analyses."""
        mine = self._config()
        differ = [key for key in _COMPARED
                  if key in manifest and _normal(manifest[key]) != _normal(mine[key])]
        if differ:
            details = "; ".join(f"{k}: the series has {_brief(manifest[k])}, this monitor "
                                f"{_brief(mine[k])}" for k in differ)
            raise ValueError(f"the series at {self.series.path} was made with another "
                             f"{', '.join(differ)} ({details}): resume with the same settings, "
                             "or choose another path")

    # -- observing ----------------------------------------------------------------------------
    def observe(self, model: nn.Module, step: int) -> Snapshot | None:
        """Map ``model`` as it is now, labelled ``step``, if the schedule says so (else return
        None at once). Call it after each training step (and once with step 0 before training,
        to map the untrained network). The model, RNGs, grads, modes and thread count are left
        exactly as they were. Steps must grow; the last observed step again is skipped."""
        step = _step(step)
        if step not in self.schedule:
            self._announce()
            return None
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, DistributedDataParallel):
            model = model.module  # its forward would sync buffers across the ranks
        self._on_writer(self._announce, "monitor's last write")
        if not self._opened:
            self._open(model)
        if self.last_step is not None and step <= self.last_step:
            if step == self.last_step:
                return None
            raise ValueError(f"step {step} comes before the series' last snapshot (step "
                             f"{self.last_step}): steps must grow. To resume from a checkpoint, "
                             "load the monitor's state saved with it (monitor.load_state_dict), "
                             "which rewinds the series to that checkpoint")
        with undisturbed(model):
            atlas, seconds = self._map(model, step)
        self.last_step = step
        self.observed += 1
        if atlas is None:  # "rank0": the snapshot stays on rank 0
            return None
        path = self.series.snapshot_path(step)
        if self.writes:
            self._start()
            self.writer.submit(step, atlas, {"seconds": seconds})
            if not self.writer.background:
                self._announce()
        return Snapshot(step, path, atlas, seconds)

    def _map(self, model: nn.Module, step: int) -> tuple[Atlas | None, dict]:
        start = time.perf_counter()
        stats = collect_stats(model, self.probe.data, self._layers, top_n=self.top_n,
                              class_names=self.class_names, batch_size=self.batch_size,
                              progress=False, distributed="off" if self.world is None else "auto")
        seconds = {"statistics": time.perf_counter() - start}
        if stats.layers[self._layers[0]].top.index.device.type != "cpu":
            stats = ActivationStats.from_state_dict(stats.state_dict(), device="cpu")
        if self.class_names is None and stats.num_classes:
            self.class_names = [str(k) for k in range(stats.num_classes)]
        atlas = Atlas(stats, class_names=self.class_names,
                      model_info={"class": type(model).__name__,
                                  "parameters": sum(p.numel() for p in model.parameters()),
                                  "training": model.training},
                      data_info={"probe": self.probe.describe(),
                                 "monitor": {"step": step, "seconds": seconds,
                                             "time": datetime.datetime.now(
                                                 datetime.timezone.utc).isoformat()}})
        # every rank runs the analyses, over the same atlas: their passes shard where they can
        seconds.update(self.plan.run(model, atlas, self.probe,
                                     distributed="off" if self.world is None else "auto"))
        if self.world is not None and not self.world.keeps_result:
            return None, seconds
        return atlas, seconds

    # -- listeners, flushing, closing ---------------------------------------------------------
    def on_snapshot(self, callback: Callable[[Written], None]) -> None:
        """Call ``callback(written)`` once a snapshot is safely on disk (``written.step``,
        ``.path``, ``.seconds``), on the training thread: at the next ``observe`` or ``flush``
        after the write ended. A live view refreshes its ``Timeline`` there."""
        if not callable(callback):
            raise TypeError("callback must be callable: callback(written)")
        self._listeners.append(callback)

    def _announce(self) -> None:
        for written in self.writer.poll():
            for callback in self._listeners:
                callback(written)
        self.writer.check()

    def flush(self) -> None:
        """Wait until every observed snapshot is on disk (and announce them)."""
        self.writer.flush()
        self._announce()

    def close(self) -> None:
        """Flush and end the writer's thread; the monitor can still observe afterwards."""
        self.writer.close()
        self._announce()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def timeline(self):
        """The series' ``Timeline`` (after flushing what is still being written); empty, and
        filled by ``refresh()``, when nothing was observed yet."""
        from .timeline import Timeline

        if not self.writes:
            raise RuntimeError(f"rank {self.world.rank} does not write the series: read the "
                               "timeline on rank 0 (if dist.get_rank() == 0: ...)")
        self.flush()
        return Timeline(self.series.path, empty_ok=True)

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The monitor's place in the series, for the training checkpoint: waits until every
        observed snapshot is on disk, so a checkpoint never names a snapshot that is not."""
        self.flush()
        return {"format": STATE_FORMAT, "version": 1, "last_step": self.last_step,
                "observed": self.observed, "probe_sha256": self.probe.sha256,
                "top_n": self.top_n, "library_version": __version__}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's ``state_dict``: snapshots after the checkpoint's last one
        are dropped (the resumed run recomputes them), so the series goes on without a gap or
        a duplicate. Needs ``resume=True``."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("state is not a monitor state_dict (monitor.state_dict())")
        if state.get("probe_sha256") != self.probe.sha256:
            raise ValueError("the checkpoint's monitor mapped another probe: resume with the "
                             "same probe images and labels")
        if not self.resume:
            raise ValueError("load_state_dict continues an existing series: make the monitor "
                             "with resume=True")
        self.flush()
        last = state["last_step"]
        self._on_writer(lambda: self._rewind(last), "monitor's rewind")
        self.last_step, self.observed = last, int(state.get("observed", 0))

    def _rewind(self, last: int | None) -> None:
        steps = self.series.steps()
        if last is not None and last not in steps:
            raise ValueError(f"the checkpoint's monitor had written the snapshot of step {last}, "
                             f"but the series at {self.series.path} lacks it (it has "
                             f"{steps[-5:]}...): resume with the series that checkpoint wrote")
        self.series.rewind(last)

    def __repr__(self) -> str:
        last = "nothing observed yet" if self.last_step is None else f"last step {self.last_step}"
        return (f"Monitor({str(self.series.path)!r}, {self.schedule!r}, {len(self.probe)} probe "
                f"images, {last})")


def _normal(value):
    """JSON round trip, so tuples and lists compare equal."""
    import json

    return json.loads(json.dumps(value))


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
