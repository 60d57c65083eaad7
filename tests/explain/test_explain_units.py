"""Concept explanations: the planted circuit's AND unit carries its class and the distractor
never appears; a linear head gives weight x activation; a trained CNN's top units carry the
class's concepts; coverage measures the mask inside a unit's region."""

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.analyses import dissect
from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
from notebookcarto.explain import Units, coverage, rank_units, unit_contributions, unit_labels
from notebookcarto.models import PlaygroundCNN

pytestmark = pytest.mark.usefixtures("one_thread")


def and_images(circuit, x):
    with torch.no_grad():
        pred = circuit(x).argmax(1)
    return [i for i in range(len(x)) if int(pred[i]) == circuit.and_class]


def test_the_and_unit_carries_its_class_and_the_distractor_does_not_appear(playground, circuit):
    data, x, _ = playground
    ids = and_images(circuit, x)
    with_blue = [i for i in ids if any(o.colour == "blue" for o in data.scene(i).objects)]
    assert with_blue, "the sample needs an image of the AND class that shows blue"
    target = torch.full((len(ids),), circuit.and_class)
    c, maps = unit_contributions(circuit, x[ids], target, circuit.later)
    units = rank_units(c, maps, circuit.later, 4)
    assert (units.channels[:, 0] == circuit.and_channel).all()
    assert not (units.channels == circuit.distractor_unit).any()
    assert units.neurons[0, 0] == f"{circuit.later}:{circuit.and_channel}"
    np.testing.assert_allclose(units.contributions[:, 0], 10.0, rtol=1e-6)  # fc weight x AND
    assert (units.channels[:, 1:] == -1).all() and (units.neurons[:, 1:] == "").all()
    # one layer down: red and purple, both through the AND; the blue detector never
    c, maps = unit_contributions(circuit, x[ids], target, circuit.earlier)
    units = rank_units(c, maps, circuit.earlier, 4)
    assert {tuple(sorted(r[:2])) for r in units.channels} == {circuit.and_inputs}
    assert not (units.channels == circuit.distractor).any()
    assert units.maps.shape == (len(ids), 4, 32, 32)
    # and the distractor's own class is carried by the distractor's unit
    c, _ = unit_contributions(circuit, x[with_blue], circuit.distractor_class, circuit.later)
    assert (c.argmax(1) == circuit.distractor_unit).all()


def test_a_linear_head_gives_weight_times_activation():
    torch.manual_seed(0)
    model = PlaygroundCNN(num_classes=8, width=8).eval()
    x = torch.rand(5, 3, 32, 32)
    targets = torch.tensor([0, 3, 7, 7, 2])
    c, maps = unit_contributions(model, x, targets, "block4", batch_size=2)
    with torch.no_grad():
        logits = model(x)
    expected = model.fc.weight[targets].detach() * maps.mean((2, 3))
    torch.testing.assert_close(c, expected, atol=1e-5, rtol=1e-5)
    units = rank_units(c, maps, "block4", 3)
    torch.testing.assert_close(torch.from_numpy(units.total),
                               logits.gather(1, targets[:, None])[:, 0] - model.fc.bias[targets],
                               atol=1e-5, rtol=1e-5)
    prob, _ = unit_contributions(model, x, targets, "block4", score="probability")
    assert not torch.allclose(prob, c)


def test_coverage_is_the_share_of_the_mask_inside_the_region():
    maps = np.zeros((1, 2, 4, 4), np.float32)
    maps[0, 0, :2] = 1.0  # the top half
    maps[0, 1, :, :2] = 1.0  # the left half
    units = Units("l", np.array([[0, 1]]), np.array([["l:0", "l:1"]]), np.ones((1, 2), np.float32),
                  maps, np.full((1, 2), 0.5, np.float32), np.full((1, 2), ""),
                  np.full((1, 2), -1), np.full((1, 2), ""), np.full((1, 2), np.nan, np.float32),
                  np.ones(1, np.float32))
    saliency = torch.zeros(1, 4, 4)
    saliency[0, :2, :2] = 1.0  # the top-left quarter
    share = coverage(units, saliency, (4, 4))
    np.testing.assert_allclose(share, [[1.0, 1.0]])
    saliency[0] = 0
    saliency[0, 3, 3] = 1.0  # bottom-right: in neither
    np.testing.assert_allclose(coverage(units, saliency, (4, 4)), [[0.0, 0.0]])


def test_top_units_of_a_trained_cnn_carry_the_concepts_of_their_class(trained_cnn):
    model, _ = trained_cnn
    held_out = ConceptPlayground(n=60, size=32, seed=1)
    x, y = held_out.tensors()
    atlas = Atlas.build(model, (x, y), ["block4"], class_names=held_out.classes, top_n=5,
                        progress=False)
    concepts = PlaygroundConcepts(ConceptPlayground(n=200, size=32, seed=2))
    atlas.attach(dissect(model, concepts, ["block4"], progress=False))
    labels, thresholds = unit_labels(atlas, "block4", 64)
    assert thresholds is not None and (labels["concept"] != "").sum() >= 10
    c, maps = unit_contributions(model, x, y, "block4")
    units = rank_units(c, maps, "block4", 3, thresholds=thresholds, labels=labels)
    hits = labelled = 0
    for i in range(len(x)):
        template = held_out.templates[int(y[i])]
        wanted = {template.background} - {None}
        for spec in template.objects:
            for values in (spec.shape, spec.colour, spec.texture):
                wanted |= set(values or ())
        first = next((label for label in units.labels[i] if label), None)
        if first is not None:
            labelled += 1
            hits += first in wanted
    assert labelled >= 30 and hits >= 0.85 * labelled
