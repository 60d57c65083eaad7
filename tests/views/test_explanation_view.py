"""ExplanationView: what it sends equals the atlas's Explanation; without one it says which call
makes it; it shares the Explorer's selection, travels in the export, and refuses images that
were not explained; with an explainer it explains an image when the front end asks."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from explained import IDS, explained_atlas
from helpers import small_atlas
from notebookcarto.views import ExplanationView, SelectionModel
from notebookcarto.views.export import MAGIC, payload

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def explained():
    return explained_atlas()


def test_traits_equal_the_explanation(explained):
    atlas, e = explained
    view = ExplanationView(atlas)
    assert view.image == IDS[0] and view.method == e.methods[0] == "igospp"
    assert view.methods == ["igospp", "igos", "left"] and view.mask_methods == ["igospp", "igos"]
    assert view.image_ids.tolist() == IDS and view.image_ids.dtype == np.int32
    for name in ("targets", "labels", "predictions", "probabilities", "images", "fractions"):
        np.testing.assert_array_equal(getattr(view, name), getattr(e, name))
    for i, m in enumerate(e.methods):
        np.testing.assert_array_equal(view.heatmaps[i], e.saliency[m])
        for name in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
            np.testing.assert_array_equal(getattr(view, name)[i], getattr(e, name)[m])
    u = e.units
    assert view.unit_layer == u.layer and view.coverage_of == e.coverage_of
    ids = np.asarray(atlas.neuron_ids)
    np.testing.assert_array_equal(ids[view.unit_neurons], u.neurons)
    assert view.unit_labels == u.labels.tolist()
    assert view.unit_cluster_labels == u.cluster_labels.tolist()
    for name in ("contributions", "coverage", "maps"):
        np.testing.assert_array_equal(getattr(view, f"unit_{name}"), getattr(u, name))
    # the chart: deletion then insertion per method, of the chosen image
    assert len(view.chart.data) == 2 * len(e.methods)
    np.testing.assert_allclose(view.chart.data[3].y, e.insertion["igos"][0])
    assert view.chart.data[0].line.width > view.chart.data[2].line.width  # the chosen method
    view.image = IDS[2]
    assert view.row == 2 and not view.notes


def test_without_an_explanation_it_says_which_call(explained):
    atlas, _, _ = small_atlas(n=60, seed=1)
    view = ExplanationView(atlas)
    assert view.images is None and view.heatmaps == [] and view.chart is None
    assert view.image == -1 and "explain.explain(model, data, images, atlas=atlas)" in view.notes[0]
    with pytest.raises(ValueError, match="no 'explanation' result"):
        ExplanationView(atlas, image=3)


def test_bad_image_or_method_errs(explained):
    atlas, _ = explained
    view = ExplanationView(atlas)
    with pytest.raises(ValueError, match=r"image 3 was not explained: the explained images "
                                          r"are \[0, 5, 7\]"):
        view.image = 3
    assert view.image == IDS[0]
    with pytest.raises(ValueError, match="did you mean 'igos'"):
        view.method = "igo"
    with pytest.raises(ValueError, match="image 99 was not explained"):
        ExplanationView(atlas, image=99)
    with pytest.raises(ValueError, match="opacity must be between 0 and 1, got 1.5"):
        view.opacity = 1.5


def test_shares_the_selection_and_travels_in_the_export(explained):
    atlas, e = explained
    state = SelectionModel(cls=0)
    view = ExplanationView(atlas, state=state, image=IDS[1], method="left")
    assert view.state is state and view.row == 1
    data = payload(view)
    size = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])[0]
    start = len(MAGIC) + 4
    header = json.loads(data[start:start + size])
    body = data[start + size:]
    model = next(m for m in header["models"].values() if m["state"].get("_view") == "explanation")
    assert model["state"]["image"] == IDS[1] and model["state"]["method"] == "left"
    buffers = {tuple(path): body[at:at + n] for path, at, n in model["buffers"]}
    assert buffers[("heatmaps", 2, "buffer")] == e.saliency["left"].astype("<f4").tobytes()
    assert buffers[("images", "buffer")] == e.images.tobytes()


def test_the_explorer_includes_it_when_the_atlas_explains(explained):
    from notebookcarto.views import Explorer
    from notebookcarto.views.export import close_widgets

    atlas, _ = explained
    explorer = Explorer(atlas, charts=False)
    view = explorer.explanation
    assert isinstance(view, ExplanationView) and view.state is explorer.state
    assert view.data is explorer.data
    images = atlas.get("patches").images
    expected = np.where(np.isin(images, IDS), np.searchsorted(IDS, images), -1)
    np.testing.assert_array_equal(view.patch_rows, expected)
    assert (view.patch_rows >= 0).any()
    close_widgets(explorer)
    plain, _, _ = small_atlas(n=60, seed=1)
    explorer = Explorer(plain, charts=False)
    assert explorer.explanation is None
    close_widgets(explorer)


@pytest.fixture
def on_demand():
    """(atlas with patches and no explanation, a tiny explainer, an exemplar's image id)."""
    from notebookcarto.explain import Explainer

    atlas, model, data = small_atlas(n=60, seed=1)
    explainer = Explainer(model, data.tensors(progress=False), atlas=atlas, methods=["igos"],
                          options={"iterations": 1, "points": 2}, top_units=2, progress=False)
    return atlas, explainer, int(atlas.get("patches").images[0, 0])


def test_a_message_explains_the_image_and_shows_it(on_demand):
    atlas, explainer, image = on_demand
    view = ExplanationView(atlas, explainer=explainer)
    assert view.explainable and view.image == -1 and "click an exemplar" in view.notes[0]
    np.testing.assert_array_equal(view.patch_images, atlas.get("patches").images)
    seen = []
    view.observe(lambda change: seen.append(change["new"]), "pending")
    view._handle_custom_msg({"type": "explain", "image": image}, [])
    assert seen == [image, -1] and view.error == ""
    found = atlas.get("explanation")
    assert found.image_ids.tolist() == [image]  # attached to the atlas, as the docstring says
    assert view.image == image and view.image_ids.tolist() == [image] and view.row == 0
    assert view.method == "igos" and not view.notes and view.chart is not None
    np.testing.assert_array_equal(view.heatmaps[0], found.saliency["igos"])
    assert view.unit_neurons.shape == (1, 2)
    assert (view.patch_rows[atlas.get("patches").images == image] == 0).all()
    # a second image joins the first
    other = int(next(v for v in atlas.get("patches").images.ravel() if v not in (image, -1)))
    view.explain_image(other)
    assert sorted(view.image_ids.tolist()) == sorted([image, other]) and view.image == other
    assert len(atlas.get("explanation")) == 2
    view._handle_custom_msg({"type": "explain", "image": image}, [])  # explained: just shown
    assert view.image == image and len(atlas.get("explanation")) == 2


def test_a_bad_request_is_shown_in_the_view(on_demand):
    atlas, explainer, _ = on_demand
    view = ExplanationView(atlas, explainer=explainer)
    view._handle_custom_msg({"type": "explain", "image": 999}, [])
    assert view.error == ("could not explain image 999: image id 999 is out of range: the data "
                          "has 60 images")
    assert view.pending == -1 and view.image == -1 and not atlas.has("explanation")
    view._handle_custom_msg({"type": "explain", "image": "7"}, [])
    assert view.error == "could not explain image 7: an image is an integer id, got '7'"
    with pytest.raises(TypeError, match="explainer must be a notebookcarto.explain.Explainer"):
        ExplanationView(atlas, explainer=object())


def test_without_an_explainer_a_request_is_refused(explained):
    atlas, _ = explained
    view = ExplanationView(atlas)
    assert not view.explainable and view.patch_images is None
    view._handle_custom_msg({"type": "explain", "image": 3}, [])
    assert view.error.startswith("could not explain image 3: image 3 was not explained and this "
                                 "view has no explainer")
    assert "ExplanationView(atlas, explainer=Explainer(model, data, atlas=atlas))" in view.error
    assert view.image == IDS[0] and view.image_ids.tolist() == IDS
    view._handle_custom_msg({"type": "explain", "image": IDS[1]}, [])  # explained: shown
    assert view.image == IDS[1] and view.error == ""


def test_the_explorer_shows_it_with_an_explainer(on_demand):
    from notebookcarto.views import Explorer
    from notebookcarto.views.export import close_widgets

    atlas, explainer, image = on_demand
    explorer = Explorer(atlas, charts=False, explainer=explainer)
    view = explorer.explanation
    assert view.explainer is explainer and view.explainable and view.state is explorer.state
    assert "click an exemplar to explain it" in view.notes[0]
    view.explain_image(image)
    assert view.image == image and atlas.has("explanation")
    close_widgets(explorer)
