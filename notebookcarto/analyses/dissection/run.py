"""``dissect``: the passes of a Network Dissection over a concept data set."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import nn

from ...capture import mappable_layers, model_device
from ...datasets.concept_data import ConceptData
from ...datasets.shard import World, current_world
from ...stats.checkpoint import CHECKPOINT_EVERY, Checkpoint, model_digest
from ...stats.collective import (agree, combine, gather_tensors, share_config, sum_tensors,
                                 together)
from ...stats.quantile import TopValues
from .batches import Concepts, forward
from .counting import Search, Tally, estimator as make_estimator, unprefixed
from .result import Dissection

__all__ = ["METHODS", "dissect"]

METHODS = {"original": 0.005, "2020": 0.01}
SEED_STEP = 1_000_003  # between the sketch seeds of two ranks (their errors are independent)


def dissect(model: nn.Module, data: ConceptData, layers=None, *, method: str = "original",
            quantile: float | None = None, iou_threshold: float = 0.04, concepts=None,
            thresholds: dict | None = None, estimator: str = "auto", sketch_size: int = 8192,
            exact_limit: int = 1 << 26, cache_limit: int = 1 << 25, batch_size: int = 64,
            top_n: int = 10, num_workers: int = 0, seed: int = 0, progress: bool = True,
            distributed: str = "auto", checkpoint=None,
            checkpoint_every: int = CHECKPOINT_EVERY) -> Dissection | None:
    """Network Dissection of ``layers`` (default: ``mappable_layers(model)``) over ``data``.

    Args:
        model: the network (left exactly as it was); data runs on its device.
        data: a ``ConceptData`` (images with concept masks and/or image-level labels).
        method: ``"original"`` (threshold from the raw activations) or ``"2020"`` (threshold
            from the activations resampled to the mask grid).
        quantile: share of positions above each unit's threshold; default 0.005 (original)
            or 0.01 (2020).
        iou_threshold: a unit with best IoU above this is a detector (0.04).
        concepts: names of the concepts to score (default all); unknown names raise KeyError.
        thresholds: {layer: (C,) thresholds} to skip the quantile pass.
        estimator: how the quantile pass finds thresholds: "exact" keeps the top values of every
            unit (``stats.TopValues``: exact, about ``quantile`` x positions values per unit),
            "sketch" uses ``stats.QuantileSketch`` (fixed memory, rank error about
            1/sketch_size of the positions), "auto" is exact when a layer needs at most
            ``exact_limit`` values.
        sketch_size: capacity of the quantile sketch.
        exact_limit: the most values per layer the exact estimator may hold under "auto".
        cache_limit: the most fired pixels kept per layer (12 bytes each: 400 MB at 2**25)
            from the band around T that lets one forward pass give the thresholds and the
            counts (see ``counting``); a layer that needs more is counted in a second pass; 0
            always takes two passes (faster for tiny models, whose forward costs less than
            the counting).
        batch_size, num_workers: how images are loaded (workers run ``data.load_batch``).
        top_n: top images kept per unit (for galleries).
        seed: seed of the sketch's sampling.
        progress: show progress bars (on rank 0 only under ``torch.distributed``).
        distributed: under ``torch.distributed`` (``"auto"``, see ``datasets.shard``) each
            process reads images ``rank, rank + W, ...``; the estimators are merged before
            the thresholds are read (the same thresholds on every rank: exact ones equal those
            of one process, sketched ones are within the sketch's bound, each rank sampling
            with its own seed) and the counts and top images are combined, so every rank gets
            the result of one process over all the data (``"rank0"``: rank 0 only, the others
            get None; ``"off"``: each process dissects all the data alone). A layer whose band
            missed T on any rank is counted in a second pass by all of them.
        checkpoint: a folder where each pass saves its state (the estimators, band and counts)
            every ``checkpoint_every`` batches; a dissection started again with the same folder
            after a crash resumes there, skipping the passes already done, and ends with the
            result of an uninterrupted run. A checkpoint of other layers, parameters, concepts,
            model weights, data size or process count is refused.

    Returns a ``Dissection`` (None on ranks other than 0 with ``distributed="rank0"``). Raises
    ValueError when the data set has no concept masks or labels (for the chosen concepts), when
    a layer has no spatial maps, or on bad parameters.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    quantile = METHODS[method] if quantile is None else quantile
    if not (isinstance(quantile, (int, float)) and 0 < quantile < 1):
        raise ValueError(f"quantile (the share of positions above the threshold) must be in "
                         f"(0, 1), got {quantile!r}")
    if not iou_threshold >= 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold!r}")
    for name, value in (("batch_size", batch_size), ("top_n", top_n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(data, ConceptData):
        raise TypeError(f"data must be a ConceptData (see notebookcarto.datasets.concept_data), "
                        f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("the data set is empty: dissection needs annotated images")
    if layers is None:
        layers = mappable_layers(model)
        if not layers:
            raise ValueError("found no blocks to dissect in this model: pass layers=[...]")
    layers = [layers] if isinstance(layers, str) else list(layers)
    if estimator not in ("auto", "exact", "sketch"):
        raise ValueError(f"estimator must be 'auto', 'exact' or 'sketch', got {estimator!r}")
    world = current_world(distributed)
    device = model_device(model)
    chosen = Concepts(data, concepts, device)
    params = dict(method=method, quantile=float(quantile), iou_threshold=float(iou_threshold),
                  estimator=estimator if thresholds is None else "given",
                  sketch_size=sketch_size, seed=seed, batch_size=batch_size, top_n=top_n,
                  n_images=len(data))
    rank = world.rank if world is not None else 0
    runs = _Runs(checkpoint, checkpoint_every, world, dict(
        layers=[str(x) for x in layers], method=method, quantile=float(quantile),
        concepts=chosen.names, estimator=estimator, sketch_size=sketch_size,
        exact_limit=exact_limit, cache_limit=cache_limit, batch_size=batch_size, top_n=top_n,
        seed=seed, thresholds=_digest(thresholds, layers), images=len(data),
        model=model_digest(model) if checkpoint is not None else None))
    feed = dict(batch_size=batch_size, num_workers=num_workers, world=world,
                progress=progress and rank == 0)
    passes = 1
    if thresholds is None:
        def search(kind, cache):
            def make(name, shape, mask_shape):
                positions = math.prod(shape[1:] if method == "original" else mask_shape)
                estimate = make_estimator(kind, shape[0], len(data) * positions,
                                          1.0 - quantile, k=sketch_size,
                                          seed=seed * 1000 + layers.index(name) + SEED_STEP * rank,
                                          exact_limit=exact_limit, device=device)
                return Search(estimate, method, quantile, chosen.targets, top_n, cache)
            return make

        states, ground = _pass(model, data, layers, chosen, search(estimator, cache_limit),
                               desc="dissection", run=runs.open("dissection", layers), **feed)
        found = {name: s.thresholds() for name, s in states.items()}
        failed = [name for name, t in found.items() if t is None]
        if failed:  # images of several sizes made the stream longer than planned
            if estimator == "exact":
                raise ValueError(f"layers {failed} saw more positions than len(data) times those "
                                 "of the first batch (images of several sizes?): use "
                                 "estimator='sketch'")
            again, _ = _pass(model, data, failed, chosen, search("sketch", 0),
                             desc="dissection: thresholds",
                             run=runs.open("dissection-thresholds", failed), **feed)
            found.update({name: s.thresholds() for name, s in again.items()})
            passes += 1
        counts = _summed({name: s.counts(found[name]) for name, s in states.items()}, found,
                         chosen.targets, world)
    else:
        found = _given_thresholds(thresholds, layers, device)
        states, ground = _pass(model, data, layers, chosen,
                               lambda name, shape, _: Tally(_checked(found, name, shape[0]),
                                                            chosen.targets, top_n),
                               desc="dissection", run=runs.open("dissection", layers), **feed)
        counts = _summed({name: s.result() for name, s in states.items()}, found,
                         chosen.targets, world)
    rest = [name for name in layers if counts[name] is None]
    if rest:
        again, _ = _pass(model, data, rest, chosen,
                         lambda name, shape, _: Tally(found[name], chosen.targets),
                         desc="dissection: IoU", run=runs.open("dissection-iou", rest), **feed)
        counts.update(_summed({name: s.result() for name, s in again.items()}, found,
                              chosen.targets, world))
        passes += 1
    runs.finish()
    if world is not None and not world.keeps_result:
        return None
    params["passes"] = passes
    k_ = chosen.k
    return Dissection(
        layers=layers, concepts=chosen.names, concept_categories=chosen.concept_categories,
        categories=chosen.categories,
        thresholds={n: found[n].cpu().numpy().astype(np.float32) for n in layers},
        intersection={n: counts[n][:, :k_].cpu().numpy() for n in layers},
        area={n: counts[n][:, k_:].cpu().numpy() for n in layers},
        ground=ground.cpu().numpy(),
        top_images={n: states[n].top.index.cpu().numpy() for n in layers},
        top_values={n: states[n].top.values.cpu().numpy() for n in layers}, params=params)


def _pass(model, data, layers, chosen, make_counter, *, desc, run, world, batch_size,
          num_workers, progress):
    """One forward pass over this rank's shard of ``data`` (all of it without ``world``);
    ``make_counter(name, (C, h, w), mask_shape)`` builds each layer's ``Search`` or ``Tally``
    at its first batch. Resumes from ``run``'s checkpoint and saves it as it goes. Returns
    (counters, G), combined over the ranks: the merged estimators and top images, the
    summed G (the counters' counts stay this rank's: ``_summed``)."""
    device = model_device(model)
    counters, shapes = {}, {}
    ground = torch.zeros(chosen.k, dtype=torch.long, device=device)
    done = 0
    if run is not None and run.restored is not None:
        done, state = run.restored
        ground = state["tensors"]["/ground"].to(device, copy=True)
        for name, shape in state["config"].items():
            shapes[name] = shape
            counters[name] = make_counter(name, *shape).load(
                unprefixed(state["tensors"], name))

    def saved():
        tensors = {f"{name}/{key}": value for name, counter in counters.items()
                   for key, value in counter.state().items()}
        return {"config": shapes, "tensors": dict(tensors, **{"/ground": ground})}

    batches = done
    with together(desc, world):
        for batch, outputs in forward(model, data, layers, batch_size, num_workers, progress,
                                      desc, world=world, skip=done):
            if batch is None:  # the end of one load_batch
                batches += 1
                if run is not None:
                    run.step(batches, saved)
                continue
            masks, mask_target, image_target, batch_ground = chosen.batch(batch, device)
            ground += batch_ground
            index = batch.index.to(device)
            for name in layers:
                z = outputs[name]
                if name not in counters:
                    shapes[name] = [[int(d) for d in z.shape[1:]],
                                    [int(d) for d in batch.mask_shape]]
                    counters[name] = make_counter(name, *shapes[name])
                counters[name].update(z, batch.mask_shape, masks, mask_target, image_target,
                                      index)
    if run is not None and batches % run.every:  # the pass's end, for a later pass's resume
        run.save(batches, saved())
    if world is not None:
        agree(None, desc, world)
        for name, shape in share_config(shapes or None, world).items():
            if name not in counters:  # an empty shard: the others' layers, no images
                counters[name] = make_counter(name, *shape)
        counters = {name: counters[name] for name in layers}
        everywhere = World(world.rank, world.size)  # every rank needs the thresholds
        for name in _uneven(shapes, counters, everywhere):
            counters[name].estimate = None  # its thresholds come from a sketch pass
        combine([r for c in counters.values() for r in c.reducers], everywhere)
        ground = sum_tensors([ground], everywhere)[0].to(device)
    if int(ground.sum()) == 0:
        raise ValueError(NO_MASKS)
    return counters, ground


def _summed(counts: dict, found: dict, targets: int, world) -> dict:
    """Each layer's (C, K + G) counts summed over the ranks, or None where any rank lacks
    them (its band missed T: the layer is counted in another pass)."""
    if world is None:
        return counts
    names = list(counts)
    missed = torch.tensor([counts[n] is None for n in names], dtype=torch.long)
    local = [counts[n] if counts[n] is not None
             else torch.zeros(len(found[n]), targets, dtype=torch.long, device=found[n].device)
             for n in names]
    missed, *total = sum_tensors([missed] + local, World(world.rank, world.size))
    return {n: None if missed[i] else t.to(found[n].device)
            for i, (n, t) in enumerate(zip(names, total))}


def _uneven(shapes: dict, counters: dict, world: World) -> list:
    """The layers whose first batch had other shapes on other ranks (images of several sizes)
    and an exact estimator on some rank: those were planned for other stream lengths and may
    not merge (sketches need no plan)."""
    rows = [shapes[name][0] + shapes[name][1] + [int(_planned(counter))] if name in shapes
            else [-1] * 6 for name, counter in counters.items()]
    seen = torch.stack([t[0] for t in gather_tensors([torch.tensor(rows)], world)])
    return [name for i, name in enumerate(counters)
            if len({tuple(row[:5].tolist()) for row in seen[:, i] if row[0] >= 0}) > 1
            and bool((seen[:, i, 5] == 1).any())]


def _planned(counter) -> bool:
    return isinstance(counter, Search) and isinstance(counter.estimate, TopValues)


class _Runs:
    """The checkpoints of a dissection's passes in one folder (none when it is None): each
    pass's file stays until the whole dissection is done, so that a run resumed in a later
    pass skips the finished ones."""

    def __init__(self, folder, every, world, fingerprint):
        self.folder, self.every, self.world, self.fingerprint = folder, every, world, fingerprint
        self.opened = []

    def open(self, kind: str, layers) -> Checkpoint | None:
        run = Checkpoint.open(self.folder, kind=kind, every=self.every, world=self.world,
                              fingerprint=dict(self.fingerprint, pass_layers=list(layers)))
        if run is not None:
            self.opened.append(run)
        return run

    def finish(self):
        for run in self.opened:
            run.finish()


def _digest(thresholds, layers) -> str | None:
    """A hash of the given thresholds of ``layers`` (None when they are to be found)."""
    if thresholds is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for name in layers:
        if name in thresholds:
            h.update(name.encode() + np.asarray(thresholds[name], dtype=np.float32).tobytes())
    return h.hexdigest()


NO_MASKS = ("the data set has no concept masks or image-level labels (for the chosen concepts): "
            "dissection needs annotated images; check sample(i).masks / .labels")


def _given_thresholds(thresholds: dict, layers, device) -> dict[str, torch.Tensor]:
    missing = [n for n in layers if n not in thresholds]
    if missing:
        raise KeyError(f"thresholds given for {sorted(thresholds)} but not for {missing}")
    return {n: torch.as_tensor(np.asarray(thresholds[n], dtype=np.float32)).to(device)
            for n in layers}


def _checked(found: dict, name: str, channels: int) -> torch.Tensor:
    t = found[name]
    if t.shape != (channels,):
        raise ValueError(f"layer {name!r} has {channels} units but {tuple(t.shape)} "
                         "thresholds were given")
    return t
