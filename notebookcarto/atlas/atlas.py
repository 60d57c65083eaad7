"""The Atlas: one result object for a model and a data set."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import __version__
from ..capture import mappable_layers
from ..stats import ActivationStats, collect_stats
from . import store


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


class Atlas:
    """Statistics of a model's layers over a data set, with stable neuron ids ``"layer:channel"``.

    Build one with ``Atlas.build(model, loader)``; read it through ``neurons`` and ``classes``
    (pandas DataFrames), ``aggregation(layer)``, ``top_images(neuron)`` and
    ``top_neurons(class)``; keep it with ``save(path)`` / ``Atlas.load(path)``. Later analyses
    store their results in ``sections`` (name -> ``{"meta": dict, "arrays": {name: ndarray}}``),
    which are saved and loaded with the atlas. A section whose meta lists ``"neuron_columns"``
    (or ``"class_columns"``) adds those arrays, one value per neuron (or class), as columns of
    ``neurons`` (or ``classes``).
    """

    def __init__(self, stats: ActivationStats, *, class_names=None, model_info: dict | None = None,
                 data_info: dict | None = None, sections: dict | None = None):
        self.stats = stats
        k = stats.num_classes
        if class_names is not None and k is not None and len(class_names) != k:
            raise ValueError(f"{len(class_names)} class names given for {k} classes")
        self.class_names = ([str(c) for c in class_names] if class_names is not None
                            else [str(c) for c in range(k or 0)])
        self.model_info = dict(model_info or {})
        self.data_info = dict(data_info or {})
        self.sections = dict(sections or {})

    @classmethod
    def build(cls, model: nn.Module, loader, layers=None, *, class_names=None,
              data_info: dict | None = None, **options) -> "Atlas":
        """Run the statistics pass (``notebookcarto.stats.collect_stats``; ``options`` go there)
        over ``loader`` for ``layers`` (default: ``mappable_layers(model)``)."""
        if layers is None:
            layers = mappable_layers(model)
            if not layers:
                raise ValueError("found no blocks to map in this model: pass layers=[...] with "
                                 "module paths from model.named_modules()")
        stats = collect_stats(model, loader, layers, **options)
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

    @property
    def neurons(self) -> pd.DataFrame:
        """One row per neuron (index: id) with its layer, channel, the mean, std and max of its
        spatial maximum, its firing frequency and, with labels, the class that counts it most
        in A (``top_class``, ``top_class_count``) and its total count in A (``a_total``)."""
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
        return self._section_columns(table, "neuron_columns")

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
        return self._section_columns(table, "class_columns")

    def _section_columns(self, table: pd.DataFrame, kind: str) -> pd.DataFrame:
        for name, section in self.sections.items():
            for column in section.get("meta", {}).get(kind, []):
                values = np.asarray(section["arrays"][column])
                if len(values) != len(table):
                    raise ValueError(f"section {name!r}: column {column!r} has {len(values)} "
                                     f"values for {len(table)} rows")
                table[column] = values
        return table

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
        ``notebookcarto.analyses.attribution_graph``. Needs ``analyses.add_influence`` first."""
        from ..analyses.attribution_graph import attribution_graph

        return attribution_graph(self, cls, **options)

    def show(self, **options):
        """The Explorer widget: all views of this atlas, linked (``notebookcarto.views``)."""
        from ..views import show

        return show(self, **options)

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
        for name, section in self.sections.items():
            for key, array in section.get("arrays", {}).items():
                arrays[f"sections/{name}/{key}"] = np.asarray(array)
        manifest = {
            "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "model": self.model_info, "data": self.data_info, "class_names": self.class_names,
            "stats": state["config"],
            "sections": {name: s.get("meta", {}) for name, s in self.sections.items()},
        }
        store.write(path, manifest, arrays)

    @classmethod
    def load(cls, path, device=None) -> "Atlas":
        """Load an atlas saved with ``save``; raises ``AtlasFormatError`` if it is corrupt,
        truncated or from a newer format, ``FileNotFoundError`` if the path does not exist."""
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
            return cls(stats, class_names=manifest["class_names"] or None,
                       model_info=manifest["model"], data_info=manifest["data"],
                       sections=sections)
        except (KeyError, ValueError, TypeError) as err:
            raise store.AtlasFormatError(f"{path}: the atlas is inconsistent ({err})") from None

    def __repr__(self) -> str:
        n = sum(layer.channels for layer in self.stats.layers.values())
        return (f"Atlas({len(self.layers)} layers, {n} neurons, {self.stats.n_images} images, "
                f"{len(self.class_names)} classes)")
