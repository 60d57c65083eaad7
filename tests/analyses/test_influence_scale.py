"""Summit's influence at its own scale, against brute-force references: inception blocks (per
branch, through bottlenecks, and the attribution graph's bottleneck edges), grouped and
depthwise convolutions, the gradient estimator on crops against dense backward passes, a ViT's
token blocks, sparse counts, and the memory budget (peak memory measured in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from notebookcarto import Atlas
from notebookcarto.analyses.attribution_graph import attribution_graph
from notebookcarto.analyses.influence import (ClassCounts, Influence, collect_influence,
                                              conv_influence, count_influence, parse_budget)
from notebookcarto.analyses.influence.local import Segment, find_window, local_influence
from notebookcarto.models import resnet20
from notebookcarto.stats.influence import InfluenceCounts

from helpers import atlas_from_aggregation

pytestmark = pytest.mark.usefixtures("one_thread")
K = 3


# -- references ---------------------------------------------------------------------------------

def brute_conv_influence(x, weight, scale=None, groups=1, **conv):
    """Loop over images, output and input channels: max of one input map convolved with the one
    kernel slice joining them; -inf where a grouped conv does not join them."""
    b, c_in = x.shape[:2]
    c_out, c_in_g = weight.shape[:2]
    out = torch.full((b, c_out, c_in), -torch.inf)
    for n in range(b):
        for j in range(c_out):
            g = j // (c_out // groups)
            s = 1.0 if scale is None else float(scale[j])
            for i in range(g * c_in_g, (g + 1) * c_in_g):
                k = s * weight[j:j + 1, i - g * c_in_g:i - g * c_in_g + 1]
                out[n, j, i] = F.conv2d(x[n:n + 1, i:i + 1], k, **conv).max()
    return out


def brute_counts(influence, labels, num_classes, k=5, rows=None):
    """numpy top-k per (image, output channel), inputs with a positive influence only; rows:
    (start, stop, width) to place the rows in a wider later layer."""
    infl = influence.numpy()
    b, c_out, c_in = infl.shape
    start, width = (0, c_out) if rows is None else (rows[0], rows[2])
    counts = np.zeros((num_classes, width, c_in), np.int64)
    for n in range(b):
        for j in range(c_out):
            for i in np.argsort(-infl[n, j], kind="stable")[:k]:
                if infl[n, j, i] > 0:
                    counts[labels[n], start + j, i] += 1
    return counts


def bn_scale(bn):
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()


def autograd_rows(block, x):
    """Activation x gradient, one backward pass per later channel, over the full maps."""
    x = x.detach().clone().requires_grad_()
    z = block(x)
    out = []
    for j in range(z.shape[1]):
        g, = torch.autograd.grad(z[:, j].flatten(1).max(1).values.sum(), x, retain_graph=True)
        out.append((g * x).flatten(2).sum(2))
    return torch.stack(out, 1).detach()


# -- a small inception network ---------------------------------------------------------------------

class Unit(nn.Module):
    """Conv (no bias), BatchNorm, ReLU: torchvision's ``BasicConv2d``."""

    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Block(nn.Module):
    """An InceptionV1 block: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool -> 1x1; concatenated."""

    def __init__(self, c_in, c1, r3, c3, r5, c5, cp):
        super().__init__()
        self.branch1 = Unit(c_in, c1, 1)
        self.branch2 = nn.Sequential(Unit(c_in, r3, 1), Unit(r3, c3, 3))
        self.branch3 = nn.Sequential(Unit(c_in, r5, 1), Unit(r5, c5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), Unit(c_in, cp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TinyInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Unit(3, 6, 3)
        self.a = Block(6, 3, 2, 4, 2, 3, 2)  # 12 channels
        self.b = Block(12, 4, 3, 5, 2, 3, 3)  # 15 channels: rows 0-3, 4-8, 9-11, 12-14
        self.fc = nn.Linear(15, K)

    def forward(self, x):
        return self.fc(self.b(self.a(self.stem(x))).amax((2, 3)))


# planted in block b: branch1's output j reads input j; branch2's bottleneck channel r reads
# input r + 5 and its 3x3 output j reads bottleneck channel j % 3
PLANT = 4.0


def planted_inception():
    torch.manual_seed(0)
    model = TinyInception().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # random scales, some negative
                m.weight.copy_(torch.randn(m.num_features))
                m.running_var.uniform_(0.5, 2.0)
        b = model.b
        for unit in (b.branch1, b.branch2[0], b.branch2[1]):
            unit.conv.weight.mul_(0.01)
            unit.bn.weight.abs_()
        for j in range(4):
            b.branch1.conv.weight[j, j] = PLANT
        for r in range(3):
            b.branch2[0].conv.weight[r, r + 5] = PLANT
        for j in range(5):
            b.branch2[1].conv.weight[j, j % 3] = PLANT
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 12, 12, generator=g)
    y = torch.arange(8) % K
    return model, x, y


@pytest.fixture(scope="module")
def inception():
    model, x, y = planted_inception()
    stats = collect_influence(model, [(x[:4], y[:4]), (x[4:], y[4:])], [("a", "b")],
                              progress=False)
    return model, x, y, stats


def test_inception_branches_and_bottlenecks_equal_brute_force(inception):
    model, x, y, stats = inception
    assert stats.config["bottlenecks"]["b|a"] == [{"layer": "b.branch2.0", "channels": 3},
                                                  {"layer": "b.branch3.0", "channels": 2}]
    assert stats.pairs == [("a", "b"), ("a", "b.branch2.0"), ("b.branch2.0", "b"),
                           ("a", "b.branch3.0"), ("b.branch3.0", "b")]
    b = model.b
    with torch.no_grad():
        h = model.a(model.stem(x))
        r3, r5 = b.branch2[0](h), b.branch3[0](h)

    def unit(u, inp, pad):
        return brute_conv_influence(inp, u.conv.weight.detach(), bn_scale(u.bn), padding=pad)

    direct = (brute_counts(unit(b.branch1, h, 0), y, K, rows=(0, 4, 15))
              + brute_counts(unit(b.branch4[1], F.max_pool2d(h, 3, 1, 1), 0), y, K,
                             rows=(12, 15, 15)))
    want = {("a", "b"): direct,
            ("a", "b.branch2.0"): brute_counts(unit(b.branch2[0], h, 0), y, K),
            ("b.branch2.0", "b"): brute_counts(unit(b.branch2[1], r3, 1), y, K, rows=(4, 9, 15)),
            ("a", "b.branch3.0"): brute_counts(unit(b.branch3[0], h, 0), y, K),
            ("b.branch3.0", "b"): brute_counts(unit(b.branch3[1], r5, 2), y, K,
                                               rows=(9, 12, 15))}
    for pair, counts in want.items():
        np.testing.assert_array_equal(stats.counts(*pair).numpy(), counts, err_msg=str(pair))
    # the planted inputs rank first, in every image
    first = collect_influence(model, [(x, y)], [("a", "b")], top_inputs=1, progress=False)
    total = {pair: first.counts(*pair).sum(0).numpy() for pair in want}
    assert total[("a", "b")][:4].max(1).tolist() == [len(x)] * 4
    assert [int(total[("a", "b")][j].argmax()) for j in range(4)] == [0, 1, 2, 3]
    assert [int(total[("a", "b.branch2.0")][r].argmax()) for r in range(3)] == [5, 6, 7]
    assert [int(total[("b.branch2.0", "b")][4 + j].argmax()) for j in range(5)] == \
        [0, 1, 2, 0, 1]


def graph_edges(result, cls) -> dict:
    """Every edge of class ``cls``'s graph over layers a and b, each of their channels
    personalised (A = 1) and kept (mass 1, no view caps)."""
    atlas = atlas_from_aggregation({"a": np.ones((K, 12), np.int64),
                                    "b": np.ones((K, 15), np.int64)})
    atlas.attach(result)
    graph = attribution_graph(atlas, cls, mass=1.0, max_nodes=None, max_edges=None)
    assert len(graph.nodes) == 12 + 15
    return {(e["source"], e["target"]): e["weight"] for e in graph.data["edges"]}


def test_bottleneck_edges_of_the_graph_equal_brute_force(inception):
    """Summit's section 1.3: weight max over b of min(I[j][b], I[b][i]), the top E per channel,
    E the mean number of direct in-edges; the larger of a direct and a bottleneck weight."""
    model, x, y, _ = inception
    atlas = Atlas.build(model, (x, y), ["a", "b"], progress=False)
    result = count_influence(atlas, model, (x, y), progress=False)
    for cls in range(K):
        c = {pair: np.asarray(v)[cls].astype(float) for pair, v in result.counts.items()}
        hop = np.maximum(*[np.minimum(c[(n, "b")][:, :, None], c[("a", n)][None]).max(1)
                           for n in ("b.branch2.0", "b.branch3.0")])
        direct = c[("a", "b")]
        per_row = (direct > 0).sum(1)
        top = int(round(per_row[per_row > 0].mean()))
        cut = -np.sort(-hop, axis=1)[:, top - 1:top]
        want = np.maximum(direct, np.where(hop >= cut, hop, 0))
        expected = {(f"a:{i}", f"b:{j}"): want[j, i] for j, i in zip(*np.nonzero(want))}
        assert graph_edges(result, cls) == expected
        assert any(j in range(4, 12) for _, j in zip(*np.nonzero(want)))  # bottleneck edges
    # the planted path b:4+j <- bottleneck channel j % 3 <- a:(j % 3) + 5, in every image
    first = count_influence(atlas, model, (x, y), top_inputs=1, progress=False)
    for cls in range(K):
        got = graph_edges(first, cls)
        assert [got.get((f"a:{j % 3 + 5}", f"b:{4 + j}")) for j in range(5)] == \
            [float((y == cls).sum())] * 5


def test_inception_gradient_on_crops_equals_dense():
    torch.manual_seed(9)
    model = TinyInception().eval()
    g = torch.Generator().manual_seed(10)
    x, y = torch.rand(6, 3, 12, 12, generator=g), torch.arange(6) % K
    pairs = [("stem", "a"), ("a", "b")]
    crops = collect_influence(model, [(x, y)], pairs, estimator="gradient", progress=False)
    dense = collect_influence(model, [(x, y)], pairs, estimator="gradient", crops=False,
                              progress=False)
    assert crops.config["gradient"]["b|a"]["on"] == "crops"
    assert dense.config["gradient"]["b|a"] == {"on": "dense"}
    for pair in pairs:
        assert torch.equal(crops.counts(*pair), dense.counts(*pair))
    with torch.no_grad():
        h = model.a(model.stem(x))
    segment = Segment(["b"], [model.b])
    window = find_window(segment, h, model.b(h))
    assert window.size == (5, 5)  # the 5x5 branch sets the receptive field
    want = autograd_rows(model.b, h)
    b, c = want.shape[:2]
    z = model.b(h)
    flat = z.flatten(2).argmax(2)
    pos = torch.stack([flat // z.shape[3], flat % z.shape[3]], 2).reshape(-1, 2)
    got = local_influence(segment, h, window, torch.arange(b).repeat_interleave(c),
                          torch.arange(c).repeat(b), pos, rows=17)
    torch.testing.assert_close(got.view(b, c, -1), want, rtol=1e-4, atol=1e-5)


def test_googlenet_blocks_get_bottleneck_pairs_and_a_graph():
    """torchvision's GoogLeNet (Summit's InceptionV1): consecutive blocks, the max-pool between
    3b and 4a included; counts over its bottlenecks and a graph through them."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False,
                                         init_weights=True).eval()
    x, y = torch.rand(4, 3, 48, 48), torch.tensor([0, 1, 2, 0])
    layers = ["inception3a", "inception3b", "inception4a"]
    atlas = Atlas.build(model, (x, y), layers, num_classes=K, progress=False)
    result = count_influence(atlas, model, (x, y), progress=False)
    necks = result.params["bottlenecks"]
    assert [n["layer"] for n in necks["inception4a|inception3b"]] == \
        ["inception4a.branch2.0", "inception4a.branch3.0"]
    rows = [j["rows"] for j in result.params["joins"]["inception4a|inception3b"]]
    assert rows == [[0, 192], [448, 512]]  # the 1x1 and pool branches of 4a's 512 channels
    assert ("inception4a.branch2.0", "inception4a") in result.pairs
    atlas.attach(result)
    graph = attribution_graph(atlas, 0, mass=1.0, max_nodes=None, max_edges=None)
    layers_hit = {e["target"].split(":")[0] for e in graph.data["edges"]}
    assert layers_hit == {"inception3b", "inception4a"}


# -- grouped and depthwise convolutions -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("groups, c_out, k", [(2, 6, 3), (4, 4, 3), (2, 4, 1), (4, 8, 3)])
def test_grouped_conv_influence_equals_brute_force(backend, groups, c_out, k):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 7, 6, generator=g)
    w = torch.randn(c_out, 4 // groups, k, k, generator=g)
    scale = torch.linspace(-1.5, 2.0, c_out)
    want = brute_conv_influence(x, w, scale, groups, padding=k // 2, stride=2)
    got = conv_influence(x, w, groups=groups, scale=scale, padding=k // 2, stride=2,
                         backend=backend)
    torch.testing.assert_close(got, want)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8),
                               nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8),
                               nn.ReLU())
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        return self.fc(self.c(self.b(self.a(x))).mean((2, 3)))


def test_grouped_and_depthwise_passes():
    torch.manual_seed(3)
    model = Grouped().eval()
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % K
    stats = collect_influence(model, [(x, y)], [("a", "b"), ("b", "c")], progress=False)
    with torch.no_grad():
        ha = model.a(x)
    conv = model.b[0]
    want = brute_counts(brute_conv_influence(ha, conv.weight.detach(), bn_scale(model.b[1]),
                                             2, padding=1), y, K)
    np.testing.assert_array_equal(stats.counts("a", "b").numpy(), want)
    assert want[:, :4, 4:].sum() == 0 and want[:, :4, :4].sum() > 0  # only within groups
    depthwise = stats.counts("b", "c").numpy()
    off = depthwise * (1 - np.eye(8, dtype=np.int64))
    assert off.sum() == 0 and np.diagonal(depthwise, axis1=1, axis2=2).sum() > 0


def test_mobilenet_depthwise_blocks_are_no_longer_refused():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=K).eval()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
    pair = ("features.2.conv.0.2", "features.2.conv.1.2")  # the 96-channel depthwise 3x3
    counts = collect_influence(model, [(x, y)], [pair], progress=False).counts(*pair).numpy()
    assert counts.shape == (K, 96, 96)
    assert (counts * (1 - np.eye(96, dtype=np.int64))).sum() == 0 and counts.sum() > 0


# -- the gradient estimator: batched, on crops, on tokens ------------------------------------------

def test_gradient_on_crops_equals_the_per_channel_loop():
    torch.manual_seed(4)
    model = resnet20(num_classes=K).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        h = model.layer1(F.relu(model.bn1(model.conv1(x))))
    for block in (model.layer1[2], model.layer2[0]):  # stride 1 and stride 2 with shortcut
        segment = Segment(["block"], [block])
        z = block(h)
        window = find_window(segment, h, z)
        assert window is not None and window.size[0] < h.shape[2]
        want = autograd_rows(block, h)
        b, c = want.shape[:2]
        flat = z.flatten(2).argmax(2)
        pos = torch.stack([flat // z.shape[3], flat % z.shape[3]], 2).reshape(-1, 2)
        image = torch.arange(b).repeat_interleave(c)
        assert len(window.crops(image, pos)[0]) < b * c  # some rows share their crop
        for rows in (1, 7, b * c):
            got = local_influence(segment, h, window, image, torch.arange(c).repeat(b), pos,
                                  rows=rows)
            torch.testing.assert_close(got.view(b, c, -1), want, rtol=1e-4, atol=1e-5)


def test_gradient_on_crops_splits_crops_shared_by_many_rows():
    """Every channel at one position: 16 rows share each image's crop, in pieces of 8."""
    torch.manual_seed(4)
    model = resnet20(num_classes=K).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    block, h = model.layer1[0], torch.rand(2, 16, 12, 12)
    segment = Segment(["block"], [block])
    window = find_window(segment, h, block(h))
    image, channel = torch.arange(2).repeat_interleave(16), torch.arange(16).repeat(2)
    got = local_influence(segment, h, window, image, channel, torch.tensor([[5, 6]] * 32),
                          rows=3)
    leaf = h.clone().requires_grad_()
    z = block(leaf)
    want = torch.stack([(torch.autograd.grad(z[b, j, 5, 6], leaf, retain_graph=True)[0][b]
                         * h[b]).sum((1, 2)) for b, j in zip(image.tolist(), channel.tolist())])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_gradient_pass_on_crops_equals_dense_on_resnet20():
    torch.manual_seed(5)
    model = resnet20(num_classes=K).eval()
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(6, 3, 24, 24, generator=g), torch.arange(6) % K
    pairs = [("layer1.1", "layer1.2"), ("layer1.2", "layer2.0"), ("layer2.2", "layer3.0")]
    crops = collect_influence(model, [(x, y)], pairs, estimator="gradient", progress=False)
    dense = collect_influence(model, [(x, y)], pairs, estimator="gradient", crops=False,
                              memory_budget="64MB", progress=False)
    assert crops.config["gradient"]["layer2.0|layer1.2"]["crop"] == [8, 8]
    assert dense.config["chunking"]["dense_rows"]  # the batched backward passes' chunks
    for pair in pairs:
        assert torch.equal(crops.counts(*pair), dense.counts(*pair))


def test_vit_blocks_token_influence_equals_brute_force():
    """Influence between consecutive encoder blocks of a small ViT: channels of the token
    outputs (B, T, C), the class token skipped; dense batched VJPs (attention is not local)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(7)
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=4, num_layers=2,
                                               num_heads=2, hidden_dim=8, mlp_dim=16,
                                               num_classes=K).eval()
    x, y = torch.rand(5, 3, 16, 16), torch.arange(5) % K
    pair = ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1")
    stats = collect_influence(vit, [(x, y)], [pair], estimator="gradient", skip_tokens=1,
                              progress=False)
    assert stats.config["gradient"][f"{pair[1]}|{pair[0]}"] == {"on": "dense"}
    for p in vit.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        tokens = vit._process_input(x)
        tokens = torch.cat([vit.class_token.expand(len(x), -1, -1), tokens], 1)
        h = vit.encoder.layers[0](vit.encoder.dropout(tokens + vit.encoder.pos_embedding))
    h = h.clone().requires_grad_()
    z = vit.encoder.layers[1](h)
    infl = []
    for j in range(z.shape[2]):
        g, = torch.autograd.grad(z[:, 1:, j].max(1).values.sum(), h, retain_graph=True)
        infl.append((g * h)[:, 1:].sum(1))
    want = brute_counts(torch.stack(infl, 1).detach(), y, K)
    np.testing.assert_array_equal(stats.counts(*pair).numpy(), want)
    with pytest.raises(ValueError, match="estimator='gradient'"):
        collect_influence(vit, [(x, y)], [pair], progress=False)


# -- sparse counts ---------------------------------------------------------------------------------

def test_sparse_counts_read_like_dense_ones():
    g = torch.Generator().manual_seed(8)
    infl = torch.randn(40, 6, 9, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    r = InfluenceCounts(6, 9, 4, top_inputs=3)
    r.update(infl[:25], labels[:25])
    r.add_rows(infl[25:, :2], labels[25:])
    r.add_rows(infl[25:, 2:], labels[25:], start=2)
    r.count_images(labels[25:])
    want = brute_counts(infl, labels, 4, k=3)
    dense = r.counts.numpy()
    np.testing.assert_array_equal(dense, want)
    sparse = r.class_counts()
    assert isinstance(sparse, ClassCounts) and sparse.nnz == int((want > 0).sum())
    for y in range(4):
        np.testing.assert_array_equal(sparse[y], want[y])
    np.testing.assert_array_equal(np.asarray(sparse), want)
    np.testing.assert_array_equal(sparse.sum(0), want.sum(0))
    np.testing.assert_array_equal(ClassCounts.from_dense(want).dense(), want)
    old = InfluenceCounts(6, 9, 4, top_inputs=3).load_state_dict(
        {"counts": torch.as_tensor(want), "images": r.images})  # a state saved dense
    np.testing.assert_array_equal(old.counts.numpy(), want)
    twice = InfluenceCounts(6, 9, 4, top_inputs=3).load_state_dict(r.state_dict()).merge(old)
    np.testing.assert_array_equal(twice.counts.numpy(), 2 * want)
    # Summit's 1,000 classes and GoogLeNet-wide layers: dense int64 would be 6.8 GB
    wide = InfluenceCounts(1024, 832, 1000)
    wide.update(torch.randn(8, 1024, 832, generator=g), torch.arange(8) * 100)
    assert wide.class_counts().nnz == 8 * 1024 * 5
    assert wide.class_counts()[100].sum() == 1024 * 5


def test_influence_result_keeps_sparse_counts_through_save_and_load(inception, tmp_path):
    model, x, y, _ = inception
    atlas = Atlas.build(model, (x, y), ["a", "b"], progress=False)
    result = atlas.attach(count_influence(atlas, model, (x, y), progress=False))
    assert all(isinstance(c, ClassCounts) for c in result.counts.values())
    atlas.save(tmp_path / "atlas")
    loaded = Atlas.load(tmp_path / "atlas").get(Influence)
    assert loaded.pairs == result.pairs
    assert loaded.params["chunking"]["images"] >= 1
    for pair in result.pairs:
        np.testing.assert_array_equal(np.asarray(loaded.of(*pair)), np.asarray(result.of(*pair)))


# -- the memory budget ----------------------------------------------------------------------------

def test_budget_text_and_errors(inception):
    assert parse_budget("2GB") == 2 ** 31 and parse_budget("512 MB") == 2 ** 29
    assert parse_budget(3 * 2 ** 20) == 3 * 2 ** 20
    with pytest.raises(ValueError, match="such as '2GB'"):
        parse_budget("two gigs")
    with pytest.raises(ValueError, match="below 1 MB"):
        parse_budget(1000)
    model, x, y, _ = inception
    with pytest.raises(ValueError, match="memory_budget"):
        collect_influence(model, [(x, y)], [("a", "b")], memory_budget="lots", progress=False)
    big = torch.rand(2, 3, 256, 256)
    with pytest.raises(ValueError, match=r"too small for this model.*memory_budget='"):
        collect_influence(model, [(big, y[:2])], [("a", "b")], memory_budget="1MB",
                          progress=False)


VGG_PEAK = textwrap.dedent("""
    import json, sys, gc, torch, torchvision
    from notebookcarto.analyses.influence import collect_influence
    torch.set_num_threads(1)
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    torch.manual_seed(0)
    model = torchvision.models.vgg11(weights=None).eval()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    x, y = torch.rand(6, 3, 224, 224), torch.arange(6)
    pairs = [("features.1", "features.4"), ("features.4", "features.7"),
             ("features.7", "features.9")]
    runs = {"conv": (pairs, dict(stride=3)),  # stride 3 as in Summit: the time, not the memory
            "gradient": (pairs[1:2], dict(estimator="gradient"))}
    run = lambda n, chosen, options: collect_influence(
        model, [(x[:n], y[:n])], chosen, memory_budget=sys.argv[1], progress=False, **options)
    run(1, *runs["conv"])  # compiled kernels, warm caches
    out = {}
    for name, (chosen, options) in runs.items():
        gc.collect()
        base = status("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
        stats = run(len(x), chosen, options)
        out[name] = {"working": status("VmHWM") - base - params,
                     "images": stats.config["chunking"]["images"]}
    print(json.dumps(out))
""")


def test_peak_memory_stays_within_the_budget_on_vgg11_at_224px():
    """In a subprocess, for the conv estimator and the gradient estimator on crops: VmHWM above
    the resident memory before the pass, less the snapshot of the model every pass takes
    (``ModelGuard``: the parameters' size, outside the budget). Large blocks are mapped and
    unmapped one by one (``MALLOC_MMAP_THRESHOLD_``), so that the resident memory follows what
    the pass allocates, not what glibc keeps after a free."""
    pytest.importorskip("torchvision")
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pytest.skip("this system cannot reset the peak resident memory (/proc/self/clear_refs)")
    budget = 256 * 2 ** 20
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    run = subprocess.run([sys.executable, "-c", VGG_PEAK, "256MB"], capture_output=True,
                         text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    for name, m in measured.items():
        assert m["images"] < 6, name  # the budget split the batch
        assert m["working"] <= budget, (name, m)
