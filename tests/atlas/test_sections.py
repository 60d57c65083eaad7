"""The registry of atlas sections: every result type is registered, docs follow the registry,
and the checks name the section and the problem."""

from pathlib import Path

import numpy as np
import pytest

import notebookcarto.analyses as analyses
from notebookcarto import explain, featvis
from notebookcarto.analyses.result import Result
from notebookcarto.atlas.sections import SCHEMAS, AtlasFormatError, markdown, result_type

DOCS = Path(__file__).resolve().parents[2] / "docs" / "atlas-sections.md"


def test_docs_are_generated_from_the_registry():
    assert DOCS.read_text() == markdown(), (
        "docs/atlas-sections.md is stale: write it with "
        "python -c 'from notebookcarto.atlas.sections import markdown; print(markdown(), end=\"\")'"
        " > docs/atlas-sections.md")


def test_every_result_type_is_registered_under_its_section():
    registered = {name: result_type(name) for name in SCHEMAS}
    for name, cls in registered.items():
        assert issubclass(cls, Result) and cls.section == name
    packages = [analyses, explain, featvis]
    exported = [getattr(m, n) for m in packages for n in m.__all__]
    results = {c for c in exported if isinstance(c, type) and issubclass(c, Result)
               and c is not Result}
    assert results == set(registered.values())


class Tiny:
    neuron_ids = ["a:0", "a:1", "a:2"]
    class_names = ["x", "y"]


@pytest.mark.parametrize("section, message", [
    ({"meta": {"params": {}, "n_clusters": 1}, "arrays": {"cluster": np.zeros(3, np.int64)}},
     "array 'candidate' is missing"),
    ({"meta": {"params": {}, "n_clusters": "1"},
      "arrays": {"cluster": np.zeros(3, np.int64), "candidate": np.zeros(3, np.int64)}},
     "meta 'n_clusters' must be integer, got str"),
    ({"meta": {"params": {}, "n_clusters": True},
      "arrays": {"cluster": np.zeros(3, np.int64), "candidate": np.zeros(3, np.int64)}},
     "meta 'n_clusters' must be integer, got bool"),
    ({"meta": {"params": [], "n_clusters": 1},
      "arrays": {"cluster": np.zeros(3, np.int64), "candidate": np.zeros(3, np.int64)}},
     "meta 'params' must be object, got list"),
    ({"meta": {"params": {}, "n_clusters": 1},
      "arrays": {"cluster": np.zeros(3, np.int64), "candidate": np.zeros(3, object)}},
     "array 'candidate' has dtype object"),
    ({"meta": {"params": {}, "n_clusters": 1},
      "arrays": {"cluster": np.zeros(3, np.int64), "candidate": np.zeros(3, np.int64),
                 "extra": np.zeros(1)}},
     r"arrays \['extra'\] are not part of the section"),
    ({"meta": {"params": {}, "n_clusters": 1}, "arrays": []}, "an 'arrays' dict"),
])
def test_checks_name_the_section_and_the_problem(section, message):
    with pytest.raises(AtlasFormatError, match=rf"section 'clusters'.*{message}"):
        SCHEMAS["clusters"].check(section, Tiny())


def test_dimensions_named_alike_must_agree_within_a_section():
    arrays = {"patches": np.zeros((3, 2, 4, 4, 3), np.uint8),
              "heatmaps": np.zeros((3, 2, 4, 5), np.uint8),
              "values": np.zeros((3, 2), np.float32), "images": np.zeros((3, 2), np.int64)}
    meta = {"size": 4, "n_patches": 2, "layers": ["a"], "input_shape": [3, 8, 8],
            "heatmap_layers": [], "crop": "clip", "fill": None, "params": {}}
    with pytest.raises(AtlasFormatError, match="array 'heatmaps' has shape .* with size = 4"):
        SCHEMAS["patches"].check({"meta": meta, "arrays": arrays}, Tiny())
    arrays["heatmaps"] = np.zeros((3, 2, 4, 4), np.uint8)
    SCHEMAS["patches"].check({"meta": meta, "arrays": arrays}, Tiny())
    del arrays["heatmaps"]  # optional
    SCHEMAS["patches"].check({"meta": meta, "arrays": arrays}, Tiny())
