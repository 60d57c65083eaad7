"""What a monitor runs per snapshot beyond the statistics: clusters, dissection, graphs."""

from __future__ import annotations

import contextlib
import inspect
import re
import time
import warnings
from typing import TYPE_CHECKING

from .. import analyses
from ..datasets.concept_data import ConceptTensors

if TYPE_CHECKING:
    from torch import nn

    from ..atlas import Atlas
    from .probe import Probe

__all__ = ["Plan"]

# options the monitor sets itself, per analysis
_OWN = {"cluster_neurons": {"atlas", "model", "data", "progress"},
        "dissect": {"model", "data", "progress", "distributed"},
        "count_influence": {"atlas", "model", "data", "progress", "distributed"},
        "attribution_graphs": {"atlas", "classes", "progress"}}


def _options(function, given, what: str) -> dict:
    """``given`` (None or a dict) checked against ``function``'s keyword arguments."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise TypeError(f"{what} must be a dict of options of analyses.{function.__name__}, got "
                        f"{type(given).__name__}")
    params = inspect.signature(function).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    own = _OWN[function.__name__]
    for key in given:
        if key in own:
            raise ValueError(f"{what}: the monitor sets {key!r} of analyses.{function.__name__} "
                             "itself; leave it out")
        if key not in params and not takes_any:
            allowed = sorted(k for k, p in params.items()
                             if p.kind is p.KEYWORD_ONLY or p.default is not p.empty)
            raise ValueError(f"{what}: analyses.{function.__name__} has no option {key!r}; "
                             f"choose from {[k for k in allowed if k not in own]}")
    return dict(given)


def _jsonable(options: dict) -> dict:
    out = {}
    for key, value in options.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = [v if isinstance(v, (str, int, float, bool)) else repr(v) for v in value]
        else:
            out[key] = repr(value)
    return out


@contextlib.contextmanager
def warned_once(seen: set):
    """Give each warning raised in the block only if ``seen`` lacks it (its category and
    message, numbers left out), and add it: the analyses of every snapshot warn alike (an
    untrained network's clusters), so a monitor warns once, not at every snapshot."""
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            key = (w.category, re.sub(r"\b\d+(?:\.\d+)?\b", "#", str(w.message)))
            if key not in seen:
                seen.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                       source=w.source)


class Plan:
    """The analyses of each snapshot, checked before training starts.

    ``clusters``: False, True or options of ``analyses.cluster_neurons`` (NeuroCartography's
    clusters over the probe). ``concepts``: a ``ConceptTensors`` (Network Dissection of the
    layers with spatial maps; ``dissection``: options of ``analyses.dissect``). ``graphs``:
    classes (names or indices) whose Summit attribution graphs are drawn (``influence``,
    ``graph_options``: options of ``analyses.count_influence`` and
    ``analyses.attribution_graphs``).
    """

    def __init__(self, *, clusters=False, concepts: ConceptTensors | None = None,
                 dissection: dict | None = None, graphs=None, influence: dict | None = None,
                 graph_options: dict | None = None):
        if not isinstance(clusters, (bool, dict)):
            raise TypeError(f"clusters must be True, False or a dict of options of "
                            f"analyses.cluster_neurons, got {type(clusters).__name__}")
        self.clusters = (None if clusters is False else
                         _options(analyses.cluster_neurons, {} if clusters is True else clusters,
                                  "clusters"))
        if dissection is not None and concepts is None:
            raise ValueError("dissection=... gives options of the dissection, which needs "
                             "concept data: pass concepts=... too")
        self.concepts = concepts
        self.dissection = (None if concepts is None
                           else _options(analyses.dissect, dissection or {}, "dissection"))
        if graphs is not None and (isinstance(graphs, (str, int)) or not hasattr(graphs,
                                                                                   "__iter__")):
            graphs = [graphs]
        self.graphs = None if graphs is None else list(graphs)
        if self.graphs is not None and not self.graphs:
            raise ValueError("graphs=[] names no class: give the classes whose attribution "
                             "graphs to draw, or leave graphs out")
        if (influence is not None or graph_options is not None) and self.graphs is None:
            raise ValueError("influence=... and graph_options=... are options of the attribution "
                             "graphs: pass graphs=[classes] too")
        self.influence = _options(analyses.count_influence, influence, "influence")
        self.graph_options = _options(analyses.attribution_graphs, graph_options,
                                      "graph_options")
        self.warned: set[tuple] = set()  # the analyses' warnings given so far (warned_once)

    def check(self, class_names: list[str] | None, has_labels: bool,
              layers: list[str] | None) -> None:
        """Raise before training starts when the probe cannot give what was asked for
        (``layers`` None: not known yet)."""
        if self.graphs is not None:
            if not has_labels:
                raise ValueError("attribution graphs count per class: the probe needs labels "
                                 "(give (images, labels))")
            if layers is not None and len(layers) < 2:
                raise ValueError(f"attribution graphs link pairs of layers; the monitor maps one "
                                 f"({layers}): give two or more layers")
            if class_names is not None:
                for cls in self.graphs:
                    ok = (cls in class_names if isinstance(cls, str)
                          else isinstance(cls, int) and 0 <= cls < len(class_names))
                    if not ok:
                        raise KeyError(f"graphs names class {cls!r}, which the probe lacks: give "
                                       f"indices or names from {class_names[:10]}")

    def describe(self) -> dict:
        """JSON-ready: what runs per snapshot and with which options."""
        return {"statistics": True,
                "clusters": None if self.clusters is None else _jsonable(self.clusters),
                "dissection": (None if self.concepts is None else
                               {"images": len(self.concepts),
                                "concepts": len(self.concepts.concepts),
                                "options": _jsonable(self.dissection)}),
                "graphs": (None if self.graphs is None else
                           {"classes": [c if isinstance(c, str) else int(c) for c in self.graphs],
                            "influence": _jsonable(self.influence),
                            "options": _jsonable(self.graph_options)})}

    def run(self, model: "nn.Module", atlas: "Atlas", probe: "Probe",
            distributed: str = "off") -> dict[str, float]:
        """Run the analyses on ``model`` and attach their results to ``atlas``; returns the
        seconds each took. ``distributed`` goes to the passes over the probe (dissection,
        influence counts: ``"auto"``, every rank runs the plan over the same atlas; ``"off"``,
        this process alone); clustering reads a few exemplars and runs whole in every process.
        Each warning of the analyses is given once per plan (``warned_once``)."""
        with warned_once(self.warned):
            return self._run(model, atlas, probe, distributed)

    def _run(self, model, atlas, probe, distributed) -> dict[str, float]:
        seconds = {}
        if self.clusters is not None:
            start = time.perf_counter()
            atlas.attach(analyses.cluster_neurons(atlas, model, probe.data, progress=False,
                                                  **self.clusters))
            seconds["clusters"] = time.perf_counter() - start
        if self.concepts is not None:
            start = time.perf_counter()
            options = dict(self.dissection)
            layers = options.pop("layers", None) or [
                name for name in atlas.layers if len(atlas.stats.shapes[name]) == 2]
            if not layers:
                raise ValueError(f"dissection needs layers with spatial maps; the monitored "
                                 f"layers {atlas.layers} have none")
            atlas.attach(analyses.dissect(model, self.concepts, layers, progress=False,
                                          distributed=distributed, **options))
            seconds["dissection"] = time.perf_counter() - start
        if self.graphs is not None:
            start = time.perf_counter()
            atlas.attach(analyses.count_influence(atlas, model, probe.data, progress=False,
                                                  distributed=distributed, **self.influence))
            atlas.attach(analyses.attribution_graphs(atlas, self.graphs, progress=False,
                                                     **self.graph_options))
            seconds["graphs"] = time.perf_counter() - start
        return seconds
