"""Influence estimators and their streaming pass against brute-force references: the grouped
convolution against a loop over (input, output) channels, the gradient estimator against an
autograd loop over output channels, the counts against a numpy top-k, plus merging,
serialisation, the Atlas section and the errors for bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from notebookcarto import Atlas
from notebookcarto.analyses.influence import (Influence, collect_influence, conv_influence,
                                              count_influence, gradient_influence)
from notebookcarto.capture import LayerError, ModelGuard
from notebookcarto.models import PlaygroundCNN, resnet20
from notebookcarto.testing import planted_model
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.stats.influence import InfluenceCounts, InfluenceStats

pytestmark = pytest.mark.usefixtures("one_thread")
K = 5


# -- references ---------------------------------------------------------------------------------

def brute_conv_influence(x, weight, scale=None, **conv):
    """Loop over images, output and input channels: max of one input map convolved with one
    kernel slice."""
    b, c_in = x.shape[:2]
    c_out = weight.shape[0]
    out = torch.empty(b, c_out, c_in)
    for n in range(b):
        for j in range(c_out):
            s = 1.0 if scale is None else float(scale[j])
            for i in range(c_in):
                y = F.conv2d(x[n:n + 1, i:i + 1], s * weight[j:j + 1, i:i + 1], **conv)
                out[n, j, i] = y.max()
    return out


def brute_counts(influence, labels, num_classes, k=5, min_influence=0.0):
    """numpy top-k per (image, output channel), inputs above min_influence only."""
    infl = influence.numpy()
    b, c_out, c_in = infl.shape
    counts = np.zeros((num_classes, c_out, c_in), np.int64)
    for n in range(b):
        for j in range(c_out):
            order = np.argsort(-infl[n, j], kind="stable")[:k]
            for i in order:
                if infl[n, j, i] > min_influence:
                    counts[labels[n], j, i] += 1
    return counts


def autograd_loop_influence(z, x):
    """One backward pass per output channel j of the sum over images of max(z[:, j])."""
    zc = z.flatten(2) if z.ndim == 4 else z.unsqueeze(2)
    out = []
    for j in range(zc.shape[1]):
        g, = torch.autograd.grad(zc[:, j].max(1).values.sum(), x, retain_graph=True)
        out.append((g * x).flatten(2).sum(2) if x.ndim == 4 else g * x)
    return torch.stack(out, 1).detach()


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_data():
    """A random playground CNN whose BatchNorms have some negative scales (the max turns into a
    min), and random images with labels over K classes."""
    torch.manual_seed(0)
    model = PlaygroundCNN(num_classes=K, width=4).eval()
    with torch.no_grad():
        for block in (model.block2, model.block3):
            bn = block[2]
            bn.weight.copy_(torch.randn(bn.num_features))
            bn.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 16, 16, generator=g)
    y = torch.randint(0, K, (24,), generator=g)
    return model, x, y


def batches(x, y, size=8):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


# -- the conv estimator ---------------------------------------------------------------------------

@pytest.mark.parametrize("conv", [dict(padding=1), dict(stride=2, padding=1),
                                  dict(padding=0, dilation=2), dict(padding=2, stride=(1, 2))])
def test_conv_influence_equals_brute_force_loop(conv):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 9, 10, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    scale = torch.tensor([1.5, -0.5, 2.0, -1.0, 0.3])
    want = brute_conv_influence(x, w, scale, **conv)
    for chunk in (None, 50):  # 50 values: chunks of one input channel and a few images
        got = conv_influence(x, w, scale=scale, chunk_elements=chunk, backend="torch", **conv)
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(conv_influence(x, w, scale=scale, backend="numba", **conv), want)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_conv_influence_padding_modes(backend):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 7, 7, generator=g)
    w = torch.randn(2, 3, 3, 5, generator=g)
    want = brute_conv_influence(F.pad(x, (2, 2, 1, 1), mode="reflect"), w)
    torch.testing.assert_close(conv_influence(x, w, padding=(1, 2), padding_mode="reflect",
                                              backend=backend), want)
    torch.testing.assert_close(conv_influence(x, w, padding="same", backend=backend),
                               brute_conv_influence(x, w, padding=(1, 2)))


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_conv_pass_equals_brute_force(cnn_data, backend):
    """The pass finds block2's conv, reads its real input (after the max-pool), folds the
    BatchNorm scale (negative entries included) and counts the top-k inputs per class."""
    model, x, y = cnn_data
    stats = collect_influence(model, batches(x, y), [("block1", "block2"), ("block2", "block3")],
                              top_inputs=3, backend=backend, progress=False)
    assert stats.config["joins"]["block2|block1"] == {"conv": "block2.1", "call": 0,
                                                      "bn": "block2.2"}
    with torch.no_grad():
        h1 = model.block1(x - 0.5)
        h2 = model.block2(h1)
    for (e, l), h in ((("block1", "block2"), h1), (("block2", "block3"), h2)):
        block = getattr(model, l)
        bn = block[2]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        assert (scale < 0).any()
        infl = brute_conv_influence(block[0](h), block[1].weight.detach(), scale.detach(),
                                    padding=1)
        np.testing.assert_array_equal(stats.counts(e, l).numpy(), brute_counts(infl, y, K, k=3))


def test_conv_stride_subsamples_positions(cnn_data):
    model, x, y = cnn_data
    stats = collect_influence(model, batches(x, y), [("block1", "block2")], stride=3,
                              fold_bn=False, progress=False)
    with torch.no_grad():
        inp = model.block2[0](model.block1(x - 0.5))
    infl = brute_conv_influence(inp, model.block2[1].weight.detach(), padding=1, stride=3)
    np.testing.assert_array_equal(stats.counts("block1", "block2").numpy(),
                                  brute_counts(infl, y, K))


# -- the gradient estimator -----------------------------------------------------------------------

def test_gradient_influence_equals_autograd_loop():
    torch.manual_seed(4)
    model = resnet20(num_classes=K).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        h = F.relu(model.bn1(model.conv1(x)))
        h = model.layer1(h)
    leaf = h.clone().requires_grad_()
    z = model.layer2[0](leaf)  # a residual block that halves the resolution
    want = autograd_loop_influence(z, leaf)
    for chunk in (None, 1):  # one output channel per backward pass, and all at once
        got = gradient_influence(z, leaf, chunk_elements=chunk, retain_graph=True)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_gradient_influence_on_tokens_and_vectors():
    """(B, T, C) token maps (a class token skipped) and (B, C) vectors."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 4, generator=g, requires_grad=True)
    mix = torch.randn(4, 3, generator=g)
    z = torch.relu(x @ mix + x.mean(1, keepdim=True) @ mix)  # tokens interact
    want = []
    for j in range(3):
        a = z[:, 1:, j].max(1).values.sum()
        gx, = torch.autograd.grad(a, x, retain_graph=True)
        want.append((gx * x)[:, 1:].sum(1))
    want = torch.stack(want, 1).detach()
    got = gradient_influence(z, x, skip_tokens=1, retain_graph=True)
    torch.testing.assert_close(got, want)
    v = torch.randn(3, 5, generator=g, requires_grad=True)
    w = torch.tanh(v @ torch.randn(5, 2, generator=g))
    want = autograd_loop_influence(w, v)
    torch.testing.assert_close(gradient_influence(w, v), want)


def test_gradient_pass_equals_autograd_loop(cnn_data):
    model, x, y = cnn_data
    pairs = [("block1", "block2"), ("block1", "block3")]  # any pair with a path, not only convs
    stats = collect_influence(model, batches(x, y), pairs, estimator="gradient", progress=False)
    with torch.no_grad():
        h1 = model.block1(x - 0.5)
    leaf = h1.clone().requires_grad_()
    h2 = model.block2(leaf)
    for later, z in (("block2", h2), ("block3", model.block3(h2))):
        infl = autograd_loop_influence(z, leaf)
        np.testing.assert_array_equal(stats.counts("block1", later).numpy(),
                                      brute_counts(infl, y, K))


def test_both_estimators_in_one_pass_match_separate_passes(cnn_data):
    model, x, y = cnn_data
    pairs = [("block2", "block3"), ("block3", "block4")]
    both = collect_influence(model, batches(x, y), pairs, estimator=("conv", "gradient"),
                             progress=False)
    for est in ("conv", "gradient"):
        alone = collect_influence(model, batches(x, y), pairs, estimator=est, progress=False)
        for e, l in pairs:
            assert torch.equal(both.counts(e, l, est), alone.counts(e, l))
    assert not torch.equal(both.counts(*pairs[0], "conv"), both.counts(*pairs[0], "gradient"))


def test_residual_conv_estimator_uses_the_blocks_first_conv():
    torch.manual_seed(6)
    model = resnet20(num_classes=K).eval()
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(4, 3, 16, 16, generator=g), torch.arange(4) % K
    stats = collect_influence(model, [(x, y)], [("layer1.2", "layer2.0")], progress=False)
    assert stats.config["joins"]["layer2.0|layer1.2"]["conv"] == "layer2.0.conv1"
    with torch.no_grad():
        h = model.layer1(F.relu(model.bn1(model.conv1(x))))
    block = model.layer2[0]
    scale = block.bn1.weight / torch.sqrt(block.bn1.running_var + block.bn1.eps)
    infl = brute_conv_influence(h, block.conv1.weight.detach(), scale.detach(), padding=1,
                                stride=2)
    np.testing.assert_array_equal(stats.counts("layer1.2", "layer2.0").numpy(),
                                  brute_counts(infl, y, K))


# -- the reducer, merging and serialisation -------------------------------------------------------

def test_influence_counts_reducer():
    g = torch.Generator().manual_seed(8)
    infl = torch.randn(6, 3, 7, generator=g)
    labels = torch.tensor([0, 1, 1, 2, 0, 2])
    r = InfluenceCounts(3, 7, 3, top_inputs=4, min_influence=0.2)
    r.update(infl[:4], labels[:4])
    r.update(infl[4:], labels[4:])
    np.testing.assert_array_equal(r.counts.numpy(), brute_counts(infl, labels, 3, 4, 0.2))
    np.testing.assert_array_equal(r.images.numpy(), [2, 2, 2])
    with pytest.raises(ValueError, match="different top_inputs"):
        r.merge(InfluenceCounts(3, 7, 3, top_inputs=5, min_influence=0.2))
    with pytest.raises(ValueError, match="shape"):
        r.update(torch.zeros(2, 3, 6), labels[:2])


def test_merge_and_state_dict(cnn_data):
    model, x, y = cnn_data
    pairs = [("block1", "block2")]
    full = collect_influence(model, batches(x, y), pairs, progress=False)
    first = collect_influence(model, batches(x[:16], y[:16]), pairs, progress=False)
    second = collect_influence(model, batches(x[16:], y[16:]), pairs, index_offset=16,
                               progress=False)
    merged = InfluenceStats.from_state_dict(first.state_dict()).merge(second)
    assert torch.equal(merged.counts(*pairs[0]), full.counts(*pairs[0]))
    assert merged.n_images == 24
    with pytest.raises(ValueError, match="overlapping"):
        merged.merge(second)
    with pytest.raises(ValueError, match="different top_inputs"):
        first.merge(collect_influence(model, batches(x, y), pairs, top_inputs=2, index_offset=99,
                                      progress=False))


def test_model_is_left_as_it_was(cnn_data):
    model, x, y = cnn_data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    collect_influence(model, batches(x, y), [("block1", "block2")],
                      estimator=("conv", "gradient"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not model.training


def test_model_is_guarded_once_per_pass(cnn_data, monkeypatch):
    """One Capture block (one ModelGuard) for the probe and one for the whole pass, however many
    batches; afterwards the model is exactly as before: values, gradients, requires_grad flags,
    train mode and a user's own hooks on a joining conv, which still fire."""
    model, x, y = cnn_data
    model = copy.deepcopy(model).train()
    conv = model.block2[1]
    fired = []
    conv.register_forward_pre_hook(lambda module, args: fired.append("pre"))
    conv.register_forward_hook(lambda module, args, out: fired.append("post"))
    conv.weight.grad = torch.full_like(conv.weight, 0.5)
    model.block3[1].weight.requires_grad_(False)
    values = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]
    enters = []
    enter = ModelGuard.__enter__

    def counting_enter(guard):
        enters.append(guard)
        return enter(guard)

    monkeypatch.setattr(ModelGuard, "__enter__", counting_enter)
    pairs = [("block1", "block2"), ("block2", "block3")]
    counts = []
    for size in (24, 4):  # one batch, then six
        enters.clear()
        stats = collect_influence(model, batches(x, y, size), pairs,
                                  estimator=("conv", "gradient"), progress=False)
        assert len(enters) == 2  # the probe's Capture and the pass's, not one per batch
        counts.append([stats.counts(e, l, est) for est in ("conv", "gradient") for e, l in pairs])
        assert values.keys() == model.state_dict().keys()
        assert all(torch.equal(values[k], v) for k, v in model.state_dict().items())
        for p, grad, flag in zip(model.parameters(), grads, flags):
            assert p.requires_grad == flag
            assert (p.grad is None) == (grad is None)
            assert grad is None or torch.equal(p.grad, grad)
        assert [m.training for m in model.modules()] == modes
        assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks))
                for m in model.modules()] == hooks
    assert all(torch.equal(a, b) for a, b in zip(*counts))
    fired.clear()
    with torch.no_grad():
        model(x[:2])
    assert fired == ["pre", "post"]


def test_influence_result_survives_save_and_load(cnn_data, tmp_path):
    model, x, y = cnn_data
    atlas = Atlas.build(model, batches(x, y), ["block1", "block2", "block3"], progress=False)
    result = atlas.attach(count_influence(atlas, model, batches(x, y), progress=False))
    stats = collect_influence(model, batches(x, y), result.pairs, progress=False)
    assert result.pairs == [("block1", "block2"), ("block2", "block3")]
    assert (result.estimator, result.top_inputs) == ("conv", 5)
    assert result.params["n_images"] == len(x)
    atlas.save(tmp_path / "atlas")
    loaded = Atlas.load(tmp_path / "atlas").get(Influence)
    assert loaded.pairs == result.pairs and loaded.params == result.params
    for e, l in stats.pairs:
        assert loaded.of(e, l).dtype == np.int64
        np.testing.assert_array_equal(loaded.of(e, l), stats.counts(e, l).numpy())


# -- bad input ------------------------------------------------------------------------------------

def test_bad_input(cnn_data):
    model, x, y = cnn_data
    data = batches(x, y)
    with pytest.raises(ValueError, match="no path from 'block2' to 'block1'"):
        collect_influence(model, data, [("block2", "block1")], progress=False)
    with pytest.raises(ValueError, match="no path"):
        collect_influence(model, data, [("block2", "block1")], estimator="gradient",
                          progress=False)
    with pytest.raises(KeyError, match="unknown layer"):
        collect_influence(model, data, [("block1", "blok2")], progress=False)
    with pytest.raises(ValueError, match="unknown estimator"):
        collect_influence(model, data, [("block1", "block2")], estimator="saliency",
                          progress=False)
    with pytest.raises(ValueError, match="no labels"):
        collect_influence(model, [x], [("block1", "block2")], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        collect_influence(model, [(x, y + K)], [("block1", "block2")], progress=False)
    with pytest.raises(ValueError, match="itself"):
        collect_influence(model, data, [("block1", "block1")], progress=False)
    with pytest.raises(ValueError, match="no convolution reads"):  # block1 -> block3: two convs
        collect_influence(model, data, [("block1", "block3")], progress=False)
    with pytest.raises(KeyError, match="no 'influence' result yet: run atlas.attach"):
        Atlas.build(model, data, ["block1"], progress=False).get(Influence)
    with pytest.raises(ValueError, match="one layer"):
        count_influence(Atlas.build(model, data, ["block1"], progress=False), model, data)


def test_conv_estimator_refuses_mixed_channels():
    """The planted net's ``detect`` conv reads the colour channels concatenated with RGB: no conv
    reads ``pixels``' channels alone, so the conv estimator says so and points to 'gradient'."""
    data = ConceptPlayground(n=8, seed=0)
    model = planted_model(data)
    x, y = data.tensors()
    with pytest.raises(ValueError, match="estimator='gradient'"):
        collect_influence(model, [(x, y)], [("pixels", "detect")], progress=False)
    stats = collect_influence(model, [(x, y)], [("pixels", "detect")], estimator="gradient",
                              progress=False)
    assert stats.counts("pixels", "detect").sum() > 0


def test_layer_that_runs_twice_needs_a_call_index():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(2, K)

        def forward(self, x):
            return self.fc(self.conv(torch.relu(self.conv(x))).amax((2, 3)))

    torch.manual_seed(9)
    model = Twice().eval()
    x, y = torch.randn(4, 2, 6, 6), torch.arange(4)
    with pytest.raises(LayerError, match="#0"):
        collect_influence(model, [(x, y)], [("conv", "fc")], estimator="gradient",
                          progress=False)
    stats = collect_influence(model, [(x, y)], [("conv#0", "conv#1")],
                              estimator=("conv", "gradient"), progress=False)
    assert stats.config["joins"]["conv#1|conv#0"] == {"conv": "conv", "call": 1, "bn": None}
    with torch.no_grad():
        h = model.conv(x)
    infl = brute_conv_influence(torch.relu(h), model.conv.weight.detach(), padding=1)
    np.testing.assert_array_equal(stats.counts("conv#0", "conv#1", "conv").numpy(),
                                  brute_counts(infl, y, K))
