"""The shape every analysis result takes: a small dataclass that becomes an atlas section and back.

An analysis is a function that returns a ``Result``; ``atlas.attach(result)`` stores it (checked
against the section's schema in ``notebookcarto.atlas.sections``), ``atlas.get(ResultType)``
gives it back, and ``Atlas.load`` rebuilds the same object from disk. A result carries the
parameters it was computed with (``params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["ClassGraphs", "Result"]


class Result:
    """Base of analysis results.

    Subclasses are dataclasses with a class attribute ``section`` (the atlas section's name) and
    implement ``to_section`` and ``from_section``. Results about neurons may add columns to
    ``atlas.neurons`` through ``neuron_columns``.
    """

    section: ClassVar[str] = ""

    def to_section(self) -> dict:
        """``{"meta": JSON-ready dict, "arrays": {key: numpy array}}`` (keys may hold ``/``)."""
        raise NotImplementedError

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas") -> "Result":
        """The result back from its section (already checked against the schema)."""
        raise NotImplementedError

    def check(self, atlas: "Atlas") -> None:
        """Raise ``ValueError`` when the result does not belong to ``atlas`` (beyond the shapes
        the schema checks: layer names, channel counts); called on attach and on load."""

    def neuron_columns(self, atlas: "Atlas") -> dict[str, np.ndarray]:
        """Columns this result adds to ``atlas.neurons``: one value per neuron id, in
        ``atlas.neuron_ids`` order."""
        return {}


@dataclass
class ClassGraphs(Result):
    """Graphs of several classes: ``graphs`` {class name: graph JSON (docs/atlas-sections.md)}
    and the ``params`` they were made with. The base of the attribution and cluster graphs."""

    graphs: dict
    params: dict = field(default_factory=dict)

    def to_section(self) -> dict:
        return {"meta": {"graphs": self.graphs, "params": dict(self.params)}, "arrays": {}}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "ClassGraphs":
        return cls(dict(section["meta"]["graphs"]), dict(section["meta"]["params"]))

    def check(self, atlas: "Atlas") -> None:
        unknown = [c for c in self.graphs if c not in atlas.class_names]
        if unknown:
            raise ValueError(f"{self.section} of classes {unknown[:5]} that the atlas lacks")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.graphs)} classes)"
