"""The Atlas: one result object for a model and a data set."""

from __future__ import annotations

import datetime
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import __version__
from ..capture import mappable_layers
from ..stats import ActivationStats, collect_stats
from . import sections as registry
from . import store

if TYPE_CHECKING:
    from ..analyses.result import Result

__all__ = ["Atlas"]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _available_device(device) -> torch.device:
    """``device`` as a torch device this machine has, or a ValueError that says which it has."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device: use 'cpu', 'cuda' or "
                         "'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available on this machine: "
                         "load with device='cpu' (the default)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r} but this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device


class Atlas:
    """Statistics of a model's layers over a data set, with stable neuron ids ``"layer:channel"``.

    Build one with ``Atlas.build(model, data)``; read it through ``neurons`` and ``classes``
    (pandas DataFrames), ``aggregation(layer)``, ``top_images(neuron)`` and
    ``top_neurons(class)``; keep it with ``save(path)`` / ``Atlas.load(path)``. Analyses return
    results, which ``attach(result)`` stores (checked against the section registry,
    ``notebookcarto.atlas.sections``) and ``get(ResultType)`` gives back; they are saved and
    loaded with the atlas as the same typed objects, and some add columns to ``neurons`` or
    ``classes`` (clusters, dissection labels).
    """

    def __init__(self, stats: ActivationStats, *, class_names=None, model_info: dict | None = None,
                 data_info: dict | None = None):
        self.stats = stats
        k = stats.num_classes
        if class_names is not None and k is not None and len(class_names) != k:
            raise ValueError(f"{len(class_names)} class names given for {k} classes")
        self.class_names = ([str(c) for c in class_names] if class_names is not None
                            else [str(c) for c in range(k or 0)])
        self.model_info = dict(model_info or {})
        self.data_info = dict(data_info or {})
        self._results: dict[str, "Result"] = {}
        self._unread: dict[str, dict] = {}  # sections of no known schema, saved back unchanged

    @classmethod
    def build(cls, model: nn.Module, data, layers=None, *, class_names=None,
              data_info: dict | None = None, **options) -> "Atlas | None":
        """Run the statistics pass (``notebookcarto.stats.collect_stats``; ``options`` go there)
        over ``data`` (a DataLoader, a data set, or tensors) for ``layers`` (default:
        ``mappable_layers(model)``). Under ``torch.distributed`` every rank gets the atlas of
        all the data (with ``distributed="rank0"``, ranks other than 0 get None)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layers is None:
            layers = mappable_layers(model)
            if not layers:
                raise ValueError("found no blocks to map in this model: pass layers=[...] with "
                                 "module paths from model.named_modules()")
        if class_names is not None:
            if isinstance(class_names, str) or not hasattr(class_names, "__len__"):
                raise TypeError(f"class_names must be a list of names, one per class, got "
                                f"{type(class_names).__name__}")
            class_names = [str(c) for c in class_names]
        stats = collect_stats(model, data, layers, class_names=class_names, **options)
        if stats is None:
            return None
        model_info = {"class": type(model).__name__,
                      "parameters": sum(p.numel() for p in model.parameters())}
        return cls(stats, class_names=class_names, model_info=model_info, data_info=data_info)

    # -- layers and neurons ---------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self.stats.layers)

    @property
    def neuron_ids(self) -> list[str]:
        return [f"{name}:{c}" for name, layer in self.stats.layers.items()
                for c in range(layer.channels)]

    @property
    def layer_offsets(self) -> dict[str, int]:
        """Index of each layer's first neuron in ``neuron_ids`` order."""
        offsets, start = {}, 0
        for name, layer in self.stats.layers.items():
            offsets[name] = start
            start += layer.channels
        return offsets

    def neuron_index(self, neurons) -> np.ndarray:
        """Positions in ``neuron_ids`` of neuron ids ``"layer:channel"`` (int64 array)."""
        offsets = self.layer_offsets
        out = []
        for neuron in neurons:
            layer, channel = self.parse_neuron(neuron)
            out.append(offsets[layer] + channel)
        return np.asarray(out, dtype=np.int64)

    def parse_neuron(self, neuron: str) -> tuple[str, int]:
        """``"layer:channel"`` -> (layer, channel), with a clear error for an unknown id."""
        layer, _, channel = str(neuron).rpartition(":")
        if layer not in self.stats.layers or not (channel.isascii() and channel.isdigit()):
            raise KeyError(f"unknown neuron {neuron!r}: ids are 'layer:channel' with a layer "
                           f"from {self.layers}")
        c = int(channel)
        if c >= self.stats.layers[layer].channels:
            raise KeyError(f"unknown neuron {neuron!r}: layer {layer!r} has "
                           f"{self.stats.layers[layer].channels} channels")
        return layer, c

    def _require_layers(self):
        if not self.stats.layers:
            raise ValueError("this atlas holds no layers yet: build one with "
                             "Atlas.build(model, data)")

    @property
    def neurons(self) -> pd.DataFrame:
        """One row per neuron (index: id) with its layer, channel, the mean, std and max of its
        spatial maximum, its firing frequency and, with labels, the class that counts it most
        in A (``top_class``, ``top_class_count``) and its total count in A (``a_total``)."""
        self._require_layers()
        frames = []
        for name, layer in self.stats.layers.items():
            m = layer.moments
            frame = pd.DataFrame({
                "layer": name, "channel": np.arange(layer.channels),
                "mean": _numpy(m.mean), "std": _numpy(m.std), "max": _numpy(m.maximum),
                "frequency": _numpy(m.frequency)})
            if layer.aggregation is not None:
                counts = _numpy(layer.aggregation.counts)
                top = counts.argmax(0)
                frame["top_class"] = top
                frame["top_class_name"] = [self.class_names[t] for t in top]
                frame["top_class_count"] = counts.max(0)
                frame["a_total"] = counts.sum(0)
            frame.index = [f"{name}:{c}" for c in range(layer.channels)]
            frames.append(frame)
        table = pd.concat(frames)
        table.index.name = "neuron"
        for name, result in self._results.items():
            for column, values in result.neuron_columns(self).items():
                table[column] = np.asarray(values)
        return table

    # -- classes ----------------------------------------------------------------------------
    @property
    def classes(self) -> pd.DataFrame:
        """One row per class: name, number of images, correct predictions and accuracy (when the
        model's output gave logits). Empty when the pass had no labels."""
        k = self.stats.num_classes or 0
        table = pd.DataFrame({"name": self.class_names[:k]}, index=pd.RangeIndex(k, name="class"))
        first = next(iter(self.stats.layers.values()), None)
        if k and first is not None:
            table["images"] = _numpy(first.class_means.count)
        if self.stats.accuracy is not None:
            acc = self.stats.accuracy
            table["correct"] = _numpy(acc.confusion.diagonal())
            table["accuracy"] = _numpy(acc.accuracy)
        return table

    # -- results ------------------------------------------------------------------------------
    def attach(self, result: "Result") -> "Result":
        """Store an analysis result (replacing one of the same kind) and return it.

        The result's section is checked against the registry first (``AtlasFormatError`` names
        what does not fit), so nothing half-right is stored."""
        name = getattr(result, "section", "")
        schema = registry.schema_of(name)
        if schema is None or not isinstance(result, registry.result_type(name)):
            raise TypeError(f"cannot attach a {type(result).__name__}: attach the result of an "
                            f"analysis ({', '.join(self._kinds())})")
        schema.check(result.to_section(), self)
        result.check(self)
        self._results[name] = result
        self._unread.pop(name, None)
        return result

    def get(self, kind):
        """The attached result of ``kind`` (its type, e.g. ``analyses.Clusters``, or its
        section name, e.g. ``"clusters"``); ``KeyError`` says which analysis to run."""
        name = self._kind_name(kind)
        if name not in self._results:
            schema = registry.SCHEMAS[name]
            raise KeyError(f"this atlas has no {name!r} result yet: run atlas.attach("
                           f"{schema.call})" + (f" (needs {schema.needs})" if schema.needs
                                                else ""))
        return self._results[name]

    def has(self, kind) -> bool:
        """Whether a result of ``kind`` (type or section name) is attached."""
        return self._kind_name(kind) in self._results

    def detach(self, kind):
        """Remove the result of ``kind`` and return it."""
        self.get(kind)
        return self._results.pop(self._kind_name(kind))

    @property
    def results(self) -> dict:
        """{section name: result} of every attached result (a copy)."""
        return dict(self._results)

    def _kind_name(self, kind) -> str:
        name = kind if isinstance(kind, str) else getattr(kind, "section", None)
        if name not in registry.SCHEMAS:
            raise KeyError(f"unknown kind of result {kind!r}: choose from {self._kinds()}")
        return name

    @staticmethod
    def _kinds() -> list[str]:
        return list(registry.SCHEMAS)

    def class_index(self, cls) -> int:
        """A class given by index or name -> its index."""
        if isinstance(cls, (int, np.integer)) and 0 <= cls < len(self.class_names):
            return int(cls)
        if isinstance(cls, str) and cls in self.class_names:
            return self.class_names.index(cls)
        raise KeyError(f"unknown class {cls!r}: give an index in 0..{len(self.class_names) - 1} "
                       "or one of atlas.class_names")

    def _require_classes(self):
        if self.stats.num_classes is None:
            raise ValueError("this atlas has no class-wise statistics: build it from a loader "
                             "that yields (images, labels)")

    def aggregation(self, layer: str) -> pd.DataFrame:
        """Summit's matrix A for ``layer``: classes (rows) x channels (columns), image counts."""
        self._require_classes()
        counts = _numpy(self._layer(layer).aggregation.counts)
        return pd.DataFrame(counts, index=pd.Index(self.class_names, name="class"),
                            columns=pd.Index([f"{layer}:{c}" for c in range(counts.shape[1])],
                                             name="neuron"))

    def top_neurons(self, cls, layer: str | None = None, n: int = 10) -> pd.DataFrame:
        """The neurons A counts most for a class (Summit's "top channels"): those with A > 0,
        sorted by count, from ``layer`` or from all layers."""
        self._require_classes()
        k = self.class_index(cls)
        rows = []
        for name in ([layer] if layer else self.layers):
            counts = _numpy(self._layer(name).aggregation.counts[k])
            rows += [(f"{name}:{c}", name, c, int(v)) for c, v in enumerate(counts) if v > 0]
        table = pd.DataFrame(rows, columns=["neuron", "layer", "channel", "count"])
        table = table.sort_values("count", ascending=False, kind="stable").head(n)
        return table.set_index("neuron")

    @property
    def probability_histogram(self) -> np.ndarray:
        """(classes, bins) counts of the probability the model gave the true class."""
        if self.stats.accuracy is None:
            raise ValueError("this atlas has no accuracy statistics (no labels or no logits)")
        return _numpy(self.stats.accuracy.histogram)

    # -- exemplars ----------------------------------------------------------------------------
    def top_images(self, neuron: str) -> pd.DataFrame:
        """A neuron's top images, best first: image id, spatial max and argmax position."""
        layer, c = self.parse_neuron(neuron)
        top = self.stats.layers[layer].top
        index = _numpy(top.index[c])
        valid = index >= 0
        positions = _numpy(top.positions[c])[valid]
        table = pd.DataFrame({"image": index[valid], "value": _numpy(top.values[c])[valid]})
        shape = self.stats.shapes[layer]
        if len(shape) == 2:
            table["row"], table["col"] = np.divmod(positions, shape[1])
        else:
            table["position"] = positions
        table.index.name = "rank"
        return table

    # -- analyses and views ---------------------------------------------------------------------
    def attribution_graph(self, cls, **options):
        """Summit's attribution graph of a class (index or name): ``(nodes, edges, data,
        pagerank)`` with nodes and edges as DataFrames and ``data`` JSON-ready; see
        ``notebookcarto.analyses.attribution_graph``. Needs an ``Influence`` result attached
        first (``analyses.count_influence``)."""
        from ..analyses.attribution_graph import attribution_graph

        return attribution_graph(self, cls, **options)

    def show(self, **options):
        """The Explorer widget: all views of this atlas, linked (``notebookcarto.views``)."""
        from ..views import show

        return show(self, **options)

    @property
    def plot(self):
        """Plotly figures of this atlas: ``.aggregation(layer)`` (A), ``.influence(cls,
        layer)`` (I), ``.confusion()`` (``notebookcarto.views.figures.Plots``)."""
        from ..views.figures import Plots

        return Plots(self)

    def to_html(self, path, **options) -> str:
        """Write the Explorer to one self-contained HTML file that opens offline; returns
        the path."""
        from ..views import to_html

        return to_html(self, path, **options)

    def _layer(self, layer: str):
        if layer not in self.stats.layers:
            raise KeyError(f"unknown layer {layer!r}: this atlas has {self.layers}")
        return self.stats.layers[layer]

    # -- storage ------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Save to the folder ``path`` (atomically; an existing atlas there is replaced)."""
        state = self.stats.state_dict()
        arrays = {f"stats/{k}": _numpy(v) for k, v in state["tensors"].items()}
        sections = dict(self._unread)
        for name, result in self._results.items():
            section = result.to_section()
            registry.SCHEMAS[name].check(section, self)
            sections[name] = section
        for name, section in sections.items():
            for key, array in section["arrays"].items():
                arrays[f"sections/{name}/{key}"] = np.asarray(array)
        manifest = {
            "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "model": self.model_info, "data": self.data_info, "class_names": self.class_names,
            "stats": state["config"],
            "sections": {name: s["meta"] for name, s in sections.items()},
        }
        store.write(path, manifest, arrays)

    @classmethod
    def load(cls, path, device=None) -> "Atlas":
        """Load an atlas saved with ``save``, its results as the same typed objects; raises
        ``AtlasFormatError`` if it is corrupt, truncated, from a newer format or a section does
        not follow its schema, ``FileNotFoundError`` if the path does not exist."""
        if device is not None:
            device = _available_device(device)
        manifest, arrays = store.read(path)
        try:
            tensors = {k[len("stats/"):]: torch.from_numpy(v) for k, v in arrays.items()
                       if k.startswith("stats/")}
            stats = ActivationStats.from_state_dict({"config": manifest["stats"],
                                                     "tensors": tensors}, device=device)
            sections = {name: {"meta": meta, "arrays": {}}
                        for name, meta in manifest.get("sections", {}).items()}
            for key, array in arrays.items():
                if key.startswith("sections/"):
                    name, _, sub = key[len("sections/"):].partition("/")
                    sections[name]["arrays"][sub] = array
            atlas = cls(stats, class_names=manifest["class_names"] or None,
                        model_info=manifest["model"], data_info=manifest["data"])
        except (KeyError, ValueError, TypeError) as err:
            raise store.AtlasFormatError(f"{path}: the atlas is inconsistent ({err})") from None
        old = manifest["version"] < store.VERSION
        for name, section in sections.items():
            if registry.schema_of(name) is None:
                atlas._unread[name] = section
                continue
            try:
                registry.SCHEMAS[name].check(section, atlas)
                result = registry.result_type(name).from_section(section, atlas)
                result.check(atlas)
            except (KeyError, ValueError, TypeError) as err:
                if not old:
                    raise store.AtlasFormatError(f"{path}: section {name!r} cannot be read "
                                                 f"({err})") from None
                warnings.warn(f"{path}: section {name!r} was saved by an older notebookcarto "
                              f"(format {manifest['version']}) and is left out ({err}); run "
                              f"{registry.SCHEMAS[name].call} again", stacklevel=2)
                continue
            atlas._results[name] = result
        return atlas

    def summary(self) -> pd.DataFrame:
        """One row per layer: ``channels``, ``map`` (the position shape), Summit's ``tau`` for
        the layer and ``mean_prefix``, the mean number of channels each image adds to A (about
        1: A is an argmax histogram; see ``notebookcarto.stats.reducers.layer_tau``)."""
        rows = []
        for name, layer in self.stats.layers.items():
            shape = self.stats.shapes[name]
            rows.append({"layer": name, "channels": layer.channels,
                         "map": "x".join(str(v) for v in shape) if shape else "vector",
                         "tau": round(layer.tau, 4) if layer.aggregation is not None else None,
                         "mean_prefix": (None if layer.mean_prefix is None
                                         else round(layer.mean_prefix, 2))})
        columns = ["layer", "channels", "map", "tau", "mean_prefix"]
        return pd.DataFrame(rows, columns=columns).set_index("layer")

    def __repr__(self) -> str:
        n = sum(layer.channels for layer in self.stats.layers.values())
        return (f"Atlas({len(self.layers)} layers, {n} neurons, {self.stats.n_images} images, "
                f"{len(self.class_names)} classes)")

    def __str__(self) -> str:
        """The one-line ``repr`` and the per-layer ``summary`` (``print(atlas)``)."""
        if not self.stats.layers:
            return repr(self)
        return repr(self) + "\n" + self.summary().to_string()
