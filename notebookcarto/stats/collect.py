"""One streaming pass over a DataLoader that fills every statistic for every chosen layer."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..capture import Capture, as_channels, model_device, position_shape
from ..capture.layers import layer_list
from ..datasets.items import image_data
from ..datasets.shard import current_world
from .checkpoint import CHECKPOINT_EVERY, Checkpoint, Seen
from .collective import finish_pass, together
from .merging import check_disjoint, check_same, union
from .pending import Pending
from .reducers import (ClassAccuracy, ClassAggregation, ClassMeans, LayerBatch, NeuronMoments,
                       TopImages, check_tau, layer_tau, top_spatial_max)

__all__ = ["ActivationStats", "LayerStats", "check_device", "check_labels", "collect_stats"]


class LayerStats:
    """The reducers of one layer; class-wise ones only when the pass has labels."""

    def __init__(self, channels: int, *, top_n: int, num_classes: int | None,
                 tau: float | str, exclude=(), device=None):
        self.channels = channels
        self.tau = layer_tau(tau, channels)
        self.top = TopImages(channels, top_n, device=device)
        self.moments = NeuronMoments(channels, device=device)
        self.aggregation = self.class_means = None
        if num_classes:
            self.aggregation = ClassAggregation(channels, num_classes, self.tau, exclude,
                                                device=device)
            self.class_means = ClassMeans(channels, num_classes, device=device)

    @property
    def reducers(self) -> dict:
        names = ("top", "moments", "aggregation", "class_means")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def update(self, batch: LayerBatch):
        for reducer in self.reducers.values():
            reducer.update(batch)

    @property
    def mean_prefix(self) -> float | None:
        """Mean length of Summit's prefix S(x) per image (channels each image adds to A), or
        None without labels. About 1 means A is an argmax histogram (see ``layer_tau``)."""
        if self.aggregation is None:
            return None
        images = int(self.class_means.count.sum())
        return float(self.aggregation.counts.sum()) / images if images else None


class ActivationStats:
    """Streaming statistics of several layers of one model over one data set.

    Per layer (``stats.layers[name]``): top-N images per channel (``top``), per-channel moments
    (``moments``) and, with labels, Summit's aggregation matrix A (``aggregation``) and per-class
    means (``class_means``). Model-wide, with labels: per-class accuracy (``accuracy``).
    Mergeable (``merge``) and serialisable (``state_dict`` / ``from_state_dict``).
    """

    def __init__(self, *, top_n: int = 100, tau: float | str = "auto",
                 num_classes: int | None = None, bins: int = 10, exclude: dict | None = None,
                 skip_tokens: int = 0):
        self.config = dict(top_n=top_n, tau=check_tau(tau), num_classes=num_classes, bins=bins,
                           exclude={k: list(v) for k, v in (exclude or {}).items()},
                           skip_tokens=skip_tokens, shapes={}, channels={}, n_images=0,
                           image_ranges=[])
        self.layers: dict[str, LayerStats] = {}
        self.accuracy: ClassAccuracy | None = None

    @property
    def n_images(self) -> int:
        return self.config["n_images"]

    @property
    def num_classes(self) -> int | None:
        return self.config["num_classes"]

    @property
    def shapes(self) -> dict[str, tuple]:
        """Position shape of each layer: (H, W), (T,) or ()."""
        return {k: tuple(v) for k, v in self.config["shapes"].items()}

    def add_layer(self, name: str, channels: int, shape, device=None):
        c = self.config
        bad = [ch for ch in c["exclude"].get(name, ()) if not 0 <= int(ch) < channels]
        if bad:
            raise ValueError(f"exclude: channel {bad[0]} of {name!r} is out of range (the layer "
                             f"has {channels} channels)")
        self.layers[name] = LayerStats(channels, top_n=c["top_n"], num_classes=c["num_classes"],
                                       tau=c["tau"], exclude=c["exclude"].get(name, ()),
                                       device=device)
        c["shapes"][name], c["channels"][name] = list(shape), channels

    def add_classes(self, num_classes: int, with_accuracy: bool, device=None):
        self.config["num_classes"] = num_classes
        if with_accuracy:
            self.accuracy = ClassAccuracy(num_classes, self.config["bins"], device=device)

    def merge(self, other: "ActivationStats") -> "ActivationStats":
        """Add another pass's statistics (over different images) into these."""
        if not isinstance(other, ActivationStats):
            hint = " (merge atlas.stats)" if hasattr(other, "stats") else ""
            raise TypeError(f"cannot merge a {type(other).__name__} into statistics: give the "
                            f"ActivationStats of another pass{hint}")
        check_same(self.config, other.config, ("top_n", "tau", "num_classes", "bins", "exclude",
                                               "shapes", "channels"), "statistics")
        if (self.accuracy is None) != (other.accuracy is None):  # checked before changing self
            raise ValueError("cannot merge statistics with and without accuracy")
        check_disjoint(self.config["image_ranges"], other.config["image_ranges"], "statistics")
        for name, layer in self.layers.items():
            for rname, reducer in layer.reducers.items():
                reducer.merge(other.layers[name].reducers[rname])
        if self.accuracy is not None:
            self.accuracy.merge(other.accuracy)
        self.config["n_images"] += other.n_images
        self.config["image_ranges"] = union(self.config["image_ranges"]
                                            + other.config["image_ranges"])
        return self

    def state_dict(self) -> dict:
        """``{"config": json-ready dict, "tensors": {"layer/reducer/key": tensor}}``."""
        tensors = {f"{name}/{rname}/{key}": value
                   for name, layer in self.layers.items()
                   for rname, reducer in layer.reducers.items()
                   for key, value in reducer.state_dict().items()}
        if self.accuracy is not None:
            tensors.update({f"/accuracy/{k}": v for k, v in self.accuracy.state_dict().items()})
        config = dict(self.config, layers=list(self.layers), accuracy=self.accuracy is not None)
        return {"config": config, "tensors": tensors}

    @property
    def reducers(self) -> list:
        """Every reducer, layer by layer, then the accuracy."""
        found = [r for layer in self.layers.values() for r in layer.reducers.values()]
        return found + ([self.accuracy] if self.accuracy is not None else [])

    @classmethod
    def empty(cls, config: dict, device=None) -> "ActivationStats":
        """Statistics of no images, with the layers and options of a ``state_dict()["config"]``."""
        stats = cls(top_n=config["top_n"], tau=config["tau"], bins=config["bins"],
                    exclude=config["exclude"], skip_tokens=config["skip_tokens"])
        if config["num_classes"]:
            stats.add_classes(config["num_classes"], config["accuracy"], device)
        for name in config["layers"]:
            stats.add_layer(name, config["channels"][name], config["shapes"][name], device)
        return stats

    @classmethod
    def from_state_dict(cls, state: dict, device=None) -> "ActivationStats":
        config = dict(state["config"])
        stats = cls.empty(config, device)
        stats.config["n_images"] = config["n_images"]
        stats.config["image_ranges"] = [list(r) for r in config["image_ranges"]]
        tensors = state["tensors"]
        for name, layer in stats.layers.items():
            for rname, reducer in layer.reducers.items():
                prefix = f"{name}/{rname}/"
                reducer.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                         if k.startswith(prefix)})
        if stats.accuracy is not None:
            stats.accuracy.load_state_dict({k[len("/accuracy/"):]: v for k, v in tensors.items()
                                            if k.startswith("/accuracy/")})
        return stats


def check_labels(y: torch.Tensor, num_classes: int, i: int):
    """Refuse labels outside 0..num_classes-1 (batch ``i``)."""
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"batch {i}: label {bad} is out of range for {num_classes} classes "
                         f"(labels must be in 0..{num_classes - 1}; pass num_classes=... if the "
                         "model's output does not tell)")


def collect_stats(model: nn.Module, data, layers, *, num_classes: int | None = None,
                  top_n: int = 100, tau: float | str = "auto", bins: int = 10,
                  exclude: dict | None = None,
                  skip_tokens: int = 0, device=None, autocast: bool = False,
                  index_offset: int = 0, batch_size: int = 64, image_key: str | None = None,
                  label_key: str | None = None, class_names=None,
                  progress: bool = True, distributed: str = "auto", checkpoint=None,
                  checkpoint_every: int = CHECKPOINT_EVERY) -> ActivationStats | None:
    """Run the model once over ``data`` and fill every statistic for every layer in ``layers``.

    ``data`` is a DataLoader, a data set, a tensor of images or a tuple (images, labels) (see
    ``notebookcarto.datasets.items``; data sets are read in order in batches of ``batch_size``,
    dict items by ``image_key`` / ``label_key``); without labels the class-wise statistics are
    absent. Images get ids ``index_offset``, ``index_offset + 1``, ... in loader order, so passes
    over disjoint parts of a data set can be merged. ``num_classes`` defaults to the width of the
    model's (B, K) output. ``tau`` is Summit's mass for the aggregation A: ``"auto"`` (the
    default) scales it with each layer's width (``stats.reducers.layer_tau``: about 3 to 6
    channels per image on any width); pass ``tau=0.03`` to reproduce Summit. Batches move
    to the model's device; ``device``, if given, must be that device. ``autocast`` runs the
    forward pass in bfloat16. ``skip_tokens`` drops leading tokens (e.g. a class token) of
    (B, T, C) outputs. ``class_names``, when given, are checked
    against the labels and the logits on the first batch. The model is left exactly as it was.

    Under ``torch.distributed`` (``distributed="auto"``, see ``datasets.shard``) each process
    reads its shard and the statistics of all are combined with collectives: every rank gets
    those of one process over all the data (``"rank0"``: rank 0 only, the others get None).
    ``checkpoint`` names a folder where the pass saves its state every ``checkpoint_every``
    batches; started again after a crash it resumes there (``stats.checkpoint``).
    """
    model_dev = check_device(model, device)
    _check_options(top_n=top_n, bins=bins, num_classes=num_classes, skip_tokens=skip_tokens,
                   index_offset=index_offset, exclude=exclude, layers=layers)
    items = image_data(data, batch_size=batch_size, image_key=image_key, label_key=label_key,
                       model=model)
    world = current_world(distributed)
    with together("statistics", world):
        run = Checkpoint.open(checkpoint, kind="statistics", every=checkpoint_every, world=world,
                              model=model, fingerprint=dict(
                                  layers=[str(x) for x in layer_list(layers)], top_n=top_n,
                                  tau=tau, num_classes=num_classes, bins=bins, exclude=exclude,
                                  skip_tokens=skip_tokens, index_offset=index_offset,
                                  batch_size=batch_size, autocast=autocast,
                                  images=items.n_images))
        stats = ActivationStats(top_n=top_n, tau=tau, num_classes=num_classes, bins=bins,
                                exclude=exclude, skip_tokens=skip_tokens)
        done, seen = 0, Seen()
        if run is not None and run.restored is not None:
            done, state = run.restored
            seen = Seen(state)
            stats = ActivationStats.from_state_dict(state, device=model_dev)
        batches = items.batches(index_offset=index_offset, device=model_dev, world=world,
                                skip=done, progress=progress and (world is None or world.rank == 0),
                                desc="statistics")
        _fill(stats, model, layers, batches, done, seen, run, skip_tokens=skip_tokens,
              autocast=autocast, device=model_dev, class_names=class_names)
    stats = finish_pass("statistics", stats if stats.layers else None,
                        empty=lambda config: ActivationStats.empty(config, model_dev),
                        reducers=lambda s: s.reducers, ids=seen.ids, offset=index_offset,
                        world=world, run=run)
    if stats is None:
        return None
    # The states were made under inference mode; copies made outside it can be merged in place.
    return ActivationStats.from_state_dict(stats.state_dict(), device=model_dev)


def _fill(stats: ActivationStats, model, layers, batches, done: int, seen: Seen, run, *,
          skip_tokens, autocast, device, class_names):
    """Update ``stats`` with every batch (the first ``done`` were counted before a resume),
    saving a checkpoint with ``run`` as it goes."""
    reduced, shapes = {}, {}
    kept = {name: layer.top.values for name, layer in stats.layers.items()}  # resumed: so far

    def on_output(name, z):
        shapes[name] = position_shape(z, skip_tokens=skip_tokens)
        values, positions, kept[name] = top_spatial_max(
            as_channels(z, skip_tokens=skip_tokens, layer=name), kept.get(name),
            stats.config["top_n"])
        reduced[name] = values, positions

    cast = (torch.autocast(device.type, dtype=torch.bfloat16) if autocast
            else contextlib.nullcontext())

    def state() -> dict:
        pending.flush()
        return seen.into(stats.state_dict())

    pending = Pending(stats)
    with Capture(model, layers, on_output=on_output) as capture, torch.inference_mode(), cast:
        for i, batch in enumerate(batches, start=done):
            if stats.num_classes and batch.labels is not None:
                check_labels(batch.labels, stats.num_classes, i)
            out = model(batch.images)
            if not stats.layers:
                _init_layers(stats, capture.layers, reduced, shapes, out, batch.labels, device,
                             class_names)
            pending.add(i, reduced, batch.index, batch.labels,
                        None if stats.accuracy is None else out)
            stats.config["n_images"] += batch.images.shape[0]
            seen.add(batch.index)
            if run is not None:
                run.step(i + 1, state)
        pending.flush()


def check_device(model: nn.Module, device) -> torch.device:
    """The model's device, checked against a requested ``device`` (None: any)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model_dev = model_device(model)
    if device is None:
        return model_dev
    try:
        requested = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device: use 'cpu', 'cuda' or "
                         "'cuda:N'") from None
    if requested.type != model_dev.type or (
            requested.index is not None and requested.index != (model_dev.index or 0)):
        raise ValueError(f"the model is on {model_dev} but device={device!r} was requested: move "
                         f"the model first with model.to({str(device)!r})")
    return model_dev


def _init_layers(stats: ActivationStats, layers, reduced, shapes, out, y, device,
                 class_names):
    """After the first forward pass: the class count (from the logits unless given) and one
    LayerStats per layer with the channel count and position shape seen; ``class_names``, when
    given, must fit the labels and the logits."""
    if class_names is not None:
        if y is None:
            raise ValueError(f"class_names has {len(class_names)} names but the data has no "
                             "labels: give (image, label) items, or leave class_names out")
        width = out.shape[1] if isinstance(out, torch.Tensor) and out.ndim == 2 else None
        k = stats.num_classes or width
        if k is not None and len(class_names) != k:
            raise ValueError(f"class_names has {len(class_names)} names but the model's output "
                             f"has {k} classes: give one name per class")
    if y is not None:
        is_logits = isinstance(out, torch.Tensor) and out.ndim == 2
        num_classes = stats.num_classes
        if num_classes is None:
            if not is_logits:
                raise ValueError("labels were given but the model's output is not (B, num_classes) "
                                 "logits: pass num_classes=... to collect class-wise statistics")
            num_classes = out.shape[1]
        check_labels(y, num_classes, 0)
        stats.add_classes(num_classes, is_logits and out.shape[1] == num_classes, device)
    else:
        stats.config["num_classes"] = None
    for name in layers:
        stats.add_layer(name, reduced[name][0].shape[1], shapes[name], device)


def _check_options(*, top_n, bins, num_classes, skip_tokens, index_offset, exclude, layers):
    """Refuse bad options of the statistics pass before it starts."""
    def whole(name, value, low):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    whole("top_n", top_n, 1)
    whole("bins", bins, 1)
    whole("skip_tokens", skip_tokens, 0)
    whole("index_offset", index_offset, 0)
    if num_classes is not None:
        whole("num_classes", num_classes, 1)
    if exclude:
        names = [n if isinstance(n, str) else None for n in layer_list(layers)]
        unknown = sorted(set(exclude) - set(names))
        if unknown:
            raise KeyError(f"exclude names layers {unknown} that are not among the layers "
                           f"mapped ({[n for n in names if n]})")
