import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from notebookcarto.datasets import ConceptPlayground
from notebookcarto.datasets.playground import BACKGROUNDS, CLASS_TEMPLATES, PALETTE, PALETTE_DARK
from notebookcarto.testing import PlantedNet, planted_model


@pytest.fixture(scope="module")
def setup():
    ds = ConceptPlayground(n=300, size=32, seed=21)
    model = planted_model(ds)
    x, _ = ds.tensors()
    masks = torch.from_numpy(np.stack([ds.masks(i) for i in range(len(ds))]))
    out = {}
    handle = model.detect.register_forward_hook(lambda m, i, o: out.__setitem__("detect", o))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return ds, model, x, masks, out["detect"], logits


def _pixel_scores(model, rgb):
    """Indicator values of the ``pixels`` layer for RGB rows in [0, 1]."""
    conv = model.pixels[0]
    w = conv.weight.detach()[:, :, 0, 0].double()
    return torch.relu(torch.as_tensor(rgb, dtype=torch.float64) @ w.T + conv.bias.detach().double())


def test_structure(setup):
    ds, model, x, _, act, logits = setup
    assert model.layer == "detect" and isinstance(model, PlantedNet)
    assert act.shape == (len(ds), len(model.planted) + 4, 32, 32)
    assert logits.shape == (len(ds), len(ds.classes))
    assert set(model.planted.values()) <= set(ds.concept_names)
    assert list(model.planted) == list(range(len(model.planted)))  # planted channels come first
    # each reading class requires an object of that exact colour
    for k, ch in model.class_channel.items():
        assert any(s.colour == (model.planted[ch],) for s in CLASS_TEMPLATES[k].objects)
    assert len(model.class_channel) == len(model.planted)


def test_pixel_detectors_separate_all_values():
    """Worst case over every object value and every background noise box."""
    model = planted_model(ConceptPlayground(n=1))
    corners = []
    for bg in BACKGROUNDS.values():
        a = bg.noise + 0.5 / 255  # noise plus uint8 rounding
        for base, signs in itertools.product((bg.top, bg.bottom), itertools.product((-1, 1), repeat=3)):
            corners.append(np.clip(np.add(base, a * np.array(signs)), 0, 1))
    back = _pixel_scores(model, np.array(corners))
    assert torch.all(back == 0)
    for ch, name in model.planted.items():
        for colour in PALETTE:
            s = _pixel_scores(model, np.array([PALETTE[colour], PALETTE_DARK[colour]]) / 255.0)[:, ch]
            if colour == name:
                assert torch.all(s >= 0.999), (name, s)  # the weaker phase scores 1
            else:
                assert torch.all(s == 0), (name, colour, s)


def test_planted_channels_are_exact(setup):
    ds, model, _, masks, act, _ = setup
    for ch, name in model.planted.items():
        m = masks[:, ds.concept_names.index(name)]
        dilated = F.max_pool2d(m[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
        fired = act[:, ch] > 0
        assert torch.equal(fired, dilated), name  # > 0 exactly within one pixel of the concept
        assert act[:, ch][m].min() >= 1.0  # at concept pixels: at least the dark-phase score
        present = torch.from_numpy(np.stack([ds.image_concepts(i) for i in range(len(ds))]))[
            :, ds.concept_names.index(name)]
        assert torch.equal(act[:, ch].amax((1, 2)) > 0, present)
        assert 0 < int(present.sum()) < len(ds)  # both cases are tested


def test_fillers_are_weak(setup):
    _, model, _, _, act, _ = setup
    p = len(model.planted)
    filler = act[:, p:]
    assert filler.max() > 0  # they do respond
    assert filler.max() < 0.1  # planted channels are >= 1 at their concept


def test_class_logits_read_their_channel(setup):
    ds, model, x, masks, act, logits = setup
    pooled = act.amax((2, 3))
    for k, ch in model.class_channel.items():
        torch.testing.assert_close(logits[:, k], pooled[:, ch])
        name = model.planted[ch]
        present = masks[:, ds.concept_names.index(name)].flatten(1).any(1)
        assert torch.all(logits[present, k] > 0) and torch.all(logits[~present, k] == 0)

    # ablating a planted channel silences its class logit and nothing else
    ch, k = 0, next(k for k, c in model.class_channel.items() if c == 0)

    def ablate(module, inputs, output):
        output = output.clone()
        output[:, ch] = 0
        return output

    handle = model.detect.register_forward_hook(ablate)
    with torch.no_grad():
        ablated = model(x)
    handle.remove()
    assert torch.all(ablated[:, k] == 0)
    others = [j for j in range(len(ds.classes)) if j != k]
    torch.testing.assert_close(ablated[:, others], logits[:, others])


def test_deterministic_and_any_size():
    a = planted_model(ConceptPlayground(n=1))
    b = planted_model(ConceptPlayground(n=1, size=64))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    ds = ConceptPlayground(n=20, size=64, seed=2)
    x, _ = ds.tensors()
    out = {}
    a.detect.register_forward_hook(lambda m, i, o: out.__setitem__("d", o))
    with torch.no_grad():
        a(x)
    table = torch.from_numpy(ds.concept_table())
    for ch, name in a.planted.items():
        assert torch.equal(out["d"][:, ch].amax((1, 2)) > 0, table[:, ds.concept_names.index(name)])


def test_bad_arguments():
    with pytest.raises(TypeError, match="ConceptPlayground"):
        planted_model("not a data set")
    with pytest.raises(ValueError, match="no exact detector"):
        planted_model(ConceptPlayground(n=1), concepts=("red", "stripes_v"))
