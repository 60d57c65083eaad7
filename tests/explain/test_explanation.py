"""``explain`` end to end: the Explanation joins masks, curves and labelled units, attaches to
the atlas, survives save and load, merges new images, and refuses bad input before work."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import untouched
from notebookcarto import Atlas
from notebookcarto.analyses import Clusters, cluster_table
from notebookcarto.atlas.sections import SCHEMAS
from notebookcarto.explain import IGOS, Explainer, Explanation, explain, select_images

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = dict(iterations=2, points=3, noise=0.045)


@pytest.fixture(scope="module")
def world(playground, circuit):
    data, x, y = playground
    atlas = Atlas.build(circuit, (x, y), [circuit.earlier, circuit.later],
                        class_names=data.classes, top_n=4, progress=False)
    labels = np.full(len(atlas.neuron_ids), -1, np.int64)
    labels[atlas.neuron_index([f"{circuit.later}:0", f"{circuit.earlier}:0"])] = [0, 1]
    atlas.attach(Clusters(labels, labels.copy(), atlas.neuron_ids, cluster_table(atlas, labels),
                          {}))
    with torch.no_grad():
        pred = circuit(x).argmax(1)
    ids = [i for i in range(len(x)) if int(pred[i]) == circuit.and_class][:2] + [0, 1]
    return data, x, y, atlas, ids


@pytest.fixture(scope="module")
def explained(world, circuit):
    data, x, y, atlas, ids = world
    heat = torch.rand(len(ids), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with untouched(circuit):
        result = explain(circuit, (x, y), ids, atlas=atlas, options=QUICK,
                         heatmaps={"captum_ig": heat}, top_units=3, progress=False)
    return result


def test_the_explanation_joins_masks_curves_and_units(world, explained, circuit):
    _, x, y, atlas, ids = world
    e = explained
    assert e.methods == ["igospp", "igos", "captum_ig"] and e.mask_methods == ["igospp", "igos"]
    assert e.image_ids.tolist() == ids and e.labels.tolist() == y[ids].tolist()
    with torch.no_grad():
        np.testing.assert_array_equal(e.predictions, circuit(x[ids]).argmax(1).numpy())
    np.testing.assert_array_equal(e.targets, e.predictions)  # targets="prediction"
    assert e.images.shape == (4, 32, 32, 3) and e.images.dtype == np.uint8
    np.testing.assert_array_equal(e.images[0], np.rint(x[ids[0]].permute(1, 2, 0).numpy() * 255))
    assert e.saliency["igos"].shape == (4, 8, 8) and e.saliency["captum_ig"].shape == (4, 32, 32)
    np.testing.assert_allclose(e.mask("igos"), 1 - e.saliency["igos"])
    assert e.fractions[0] == 0 and e.fractions[-1] == 1
    for m in e.methods:
        assert e.deletion[m].shape == (4, len(e.fractions))
        np.testing.assert_allclose(e.deletion[m][:, 0], e.probabilities, atol=1e-6)
    u = e.units
    assert u.layer == circuit.later and u.channels.shape == (4, 3)
    assert (u.channels[:2, 0] == circuit.and_channel).all()
    assert (u.clusters[:2, 0] == 0).all()  # joined with the atlas's clusters
    moved = e.saliency["igospp"].reshape(4, -1).sum(1) > 0  # NaN: no saliency to cover
    listed = u.channels >= 0
    cover = u.coverage[moved[:, None] & listed]
    assert np.isfinite(cover).all() and ((cover >= 0) & (cover <= 1)).all()
    assert np.isnan(u.coverage[~moved[:, None] | ~listed]).all() and e.coverage_of == "igospp"
    table = e.table()
    assert list(table.index) == ids and "igos_deletion_auc" in table
    assert e.units_of(ids[0])["neuron"].iloc[0] == f"{circuit.later}:0"
    assert set(e.summary().index) == set(e.methods)
    assert e.params["methods"]["igos"]["iterations"] == 2


def test_it_attaches_saves_and_loads(world, explained, tmp_path):
    *_, atlas, _ = world
    atlas.attach(explained)
    SCHEMAS["explanation"].check(explained.to_section(), atlas)
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(Explanation)
    assert back.methods == explained.methods and back.protocol == explained.protocol
    for name in ("image_ids", "targets", "images", "fractions"):
        np.testing.assert_array_equal(getattr(back, name), getattr(explained, name))
    for m in explained.methods:
        np.testing.assert_array_equal(back.saliency[m], explained.saliency[m])
        np.testing.assert_array_equal(back.deletion_auc[m], explained.deletion_auc[m])
    np.testing.assert_array_equal(back.units.neurons, explained.units.neurons)
    np.testing.assert_array_equal(back.units.maps, explained.units.maps)
    atlas.detach(Explanation)


def test_an_explainer_adds_images_on_demand(world, circuit):
    data, x, y, atlas, ids = world
    explainer = Explainer(circuit, (x, y), atlas=atlas, options=QUICK, methods=["igos"],
                          progress=False)
    first = explainer.update(atlas, ids[:2])
    both = explainer.update(atlas, ids[1:3])
    assert atlas.get("explanation") is both
    assert both.image_ids.tolist() == [ids[0], ids[1], ids[2]]
    again = explainer.explain(ids[1:2])  # the same image, the same noise: the same mask
    np.testing.assert_allclose(both.saliency["igos"][1], again.saliency["igos"][0], atol=1e-5)
    np.testing.assert_array_equal(first.saliency["igos"][0], both.saliency["igos"][0])
    other = explain(circuit, (x, y), ids[3:], methods=["igos"], options=QUICK, layer=False,
                    progress=False)
    with pytest.raises(ValueError, match=r"differ in \['layer'\]"):
        both.merged(other)
    atlas.detach(Explanation)


def test_select_images_finds_exemplars_and_misses():
    logits = torch.tensor([[5.0, 0], [1, 0], [0, 3], [0, 9], [0, 1], [2, 0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())
    images = logits.view(6, 2, 1, 1)
    chosen = select_images(model, (images, labels), per_class=1, misclassified=1,
                           progress=False)
    assert chosen["kind"].to_dict() == {0: "exemplar", 2: "misclassified", 3: "exemplar",
                                        5: "misclassified"}
    assert chosen.loc[2, "prediction"] == 1 and isinstance(chosen, pd.DataFrame)


def test_attaching_checks_the_atlas(world, explained):
    *_, atlas, _ = world
    import dataclasses
    beyond = dataclasses.replace(explained, image_ids=explained.image_ids + 1000)
    with pytest.raises(ValueError, match="is not one of the atlas's 48 images"):
        atlas.attach(beyond)
    twice = dataclasses.replace(explained, image_ids=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="explained twice"):
        atlas.attach(twice)


@pytest.mark.parametrize("change, error, message", [
    (dict(images=[0, 99]), IndexError, "image id 99 is out of range: the data has 48 images"),
    (dict(images=[0, 0]), ValueError, "image ids repeat"),
    (dict(methods=["gradcam"]), ValueError, "unknown method 'gradcam'"),
    (dict(layer="nowhere"), KeyError, "unknown layer 'nowhere'"),
    (dict(targets=[0, 12]), ValueError, "target 12 of image 1 is out of range"),
    (dict(targets="truth"), ValueError, "targets must be 'prediction', 'label'"),
    (dict(heatmaps={"x": torch.rand(3, 8, 8)}), ValueError, "for 2 images"),
    (dict(heatmaps={"igos": torch.rand(2, 8, 8)}), ValueError, "also a method's name"),
    (dict(options={"size": 64}), ValueError, "larger than the images"),
    (dict(methods=[], heatmaps=None), ValueError, "nothing to explain with"),
    (dict(score="margin"), ValueError, "score must be one of"),
    (dict(targets="label", data="unlabelled"), ValueError, "the data has no labels"),
])
def test_bad_input_is_refused_before_any_work(world, circuit, change, error, message):
    data, x, y, atlas, _ = world
    calls = []
    handle = circuit.register_forward_pre_hook(lambda *a: calls.append(1))
    args = dict(images=[0, 1], options=QUICK, progress=False)
    args.update(change)
    source = x if args.pop("data", None) == "unlabelled" else (x, y)
    try:
        with pytest.raises(error, match=message):
            explain(circuit, source, args.pop("images"), **args)
    finally:
        handle.remove()
    assert len(calls) <= 2  # at most the probes of the first image


def test_an_explainer_built_elsewhere_is_refused(world, circuit, mean_planted):
    _, x, y, _, _ = world
    with pytest.raises(ValueError, match="built on another model"):
        explain(circuit, (x, y), [0], methods=[IGOS(mean_planted)], progress=False)


def test_explain_and_select_leave_a_training_model_alone(playground):
    from notebookcarto.models import PlaygroundCNN

    data, x, y = playground
    torch.manual_seed(0)
    model = PlaygroundCNN(num_classes=8, width=4)
    model(x[:2]).sum().backward()  # train mode, gradients set
    model.block2.requires_grad_(False)
    with untouched(model):
        select_images(model, (x, y), progress=False)
        explain(model, (x, y), [0, 1], options={"iterations": 1, "points": 2}, top_units=2,
                progress=False)
    assert model.training
