"""Capture layer: layer addressing, output shapes, multi-call modules, and leaving the model
exactly as it was (also when the ``with`` block raises)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from notebookcarto.capture import (Capture, LayerError, ModelGuard, StopForward, as_channels,
                                   mappable_layers, position_shape, resolve_layers, split_call)


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------
# small models
# ------------------------------------------------------------------------------------------
class SharedReLU(nn.Module):
    """One ReLU module used twice per forward pass, plus a module that never runs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act = nn.ReLU()
        self.unused = nn.Conv2d(5, 5, 1)

    def forward(self, x):
        return self.act(self.conv2(self.act(self.conv1(x))))


class TupleOut(nn.Module):
    def forward(self, x):
        return x * 2, "extra"


class DictOut(nn.Module):
    def forward(self, x):
        return {"out": x}


class StrFirst(nn.Module):
    def forward(self, x):
        return "not a tensor", x


class NoneOut(nn.Module):
    def forward(self, x):
        return None


class Wrap(nn.Module):
    """Runs ``inner`` and returns the input unchanged, so any output type of inner is allowed."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        self.inner(x)
        return x


def resnetish():
    """A tiny model with blocks named like torchvision's resnet (layer1.0, layer1.1, ...)."""
    torch.manual_seed(0)
    block = lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())  # noqa: E731
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        layer1=nn.Sequential(block(4), block(4)),
        layer2=nn.Sequential(block(4), block(4)),
    ))


def guard_model():
    """Conv + BatchNorm + Dropout + Linear, in TRAIN mode, with mixed per-module modes and
    some frozen parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    model.train()
    model[3].eval()  # mixed modes: a module in eval inside a model in train mode
    model[0].bias.requires_grad_(False)
    model[6].weight.requires_grad_(False)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].num_batches_tracked.fill_(7)
    return model


# ------------------------------------------------------------------------------------------
# a deep snapshot of everything running a model could change
# ------------------------------------------------------------------------------------------
def _hook_state(module):
    """Every hook-related dict of a module (hooks, with_kwargs / always_call flags), with the
    hook objects themselves, plus the full-backward-hook flag."""
    state = {k: list(v.items()) for k, v in vars(module).items()
             if "hook" in k and isinstance(v, dict)}
    state["_is_full_backward_hook"] = getattr(module, "_is_full_backward_hook", None)
    return state


def snapshot(model):
    tensors = {}
    for mname, module in model.named_modules():
        for kind in ("_parameters", "_buffers"):
            for name, t in getattr(module, kind).items():
                key = f"{mname}/{kind}/{name}"
                if t is None:
                    tensors[key] = None
                    continue
                grad = t.grad if kind == "_parameters" else None
                tensors[key] = dict(
                    obj=t, cls=type(t), dtype=t.dtype, shape=tuple(t.shape), device=t.device,
                    values=t.detach().clone(), requires_grad=t.requires_grad,
                    grad=None if grad is None else grad.detach().clone())
    return dict(
        structure=[(name, type(m)) for name, m in model.named_modules()],
        tensors=tensors,
        modes={name: m.training for name, m in model.named_modules()},
        hooks={name: _hook_state(m) for name, m in model.named_modules()},
    )


def differences(before, after) -> list[str]:
    diffs = []
    if before["structure"] != after["structure"]:
        diffs.append("module structure")
    if before["modes"] != after["modes"]:
        diffs += [f"mode of {k!r}" for k in before["modes"]
                  if before["modes"][k] != after["modes"].get(k)]
    if set(before["tensors"]) != set(after["tensors"]):
        diffs.append("set of parameters/buffers")
    for key, b in before["tensors"].items():
        a = after["tensors"].get(key)
        if (a is None) != (b is None):
            diffs.append(f"{key}: None-ness")
            continue
        if b is None:
            continue
        if a["obj"] is not b["obj"]:
            diffs.append(f"{key}: tensor object replaced")
        for field in ("cls", "dtype", "shape", "device", "requires_grad"):
            if a[field] != b[field]:
                diffs.append(f"{key}: {field} {b[field]} -> {a[field]}")
        if a["shape"] == b["shape"] and a["dtype"] == b["dtype"] and \
                not torch.equal(a["values"], b["values"]):
            diffs.append(f"{key}: values")
        if (a["grad"] is None) != (b["grad"] is None):
            diffs.append(f"{key}: grad None-ness")
        elif b["grad"] is not None and not torch.equal(a["grad"], b["grad"]):
            diffs.append(f"{key}: grad values")
    for name, hooks in before["hooks"].items():
        if after["hooks"].get(name) != hooks:
            diffs.append(f"hooks of {name!r}")
    return diffs


def assert_same(before, after):
    diffs = differences(before, after)
    assert not diffs, f"the model changed: {diffs}"


# ------------------------------------------------------------------------------------------
# layer names
# ------------------------------------------------------------------------------------------
def test_unknown_layer_suggests_close_names():
    model = resnetish()
    with pytest.raises(KeyError, match=r"unknown layer 'layer1\.O'") as err:
        Capture(model, ["layer1.O"])
    msg = str(err.value)
    assert "Closest valid names" in msg
    assert "layer1.0" in msg.split("Closest valid names:")[1]


def test_unknown_layer_far_from_everything_has_no_bogus_hint():
    with pytest.raises(KeyError, match="unknown layer 'zzzzzzzzzzzz'") as err:
        resolve_layers(resnetish(), "zzzzzzzzzzzz")
    assert "Closest" not in str(err.value)


def test_root_module_is_not_a_layer():
    with pytest.raises(KeyError, match="unknown layer ''"):
        resolve_layers(resnetish(), [""])


def test_empty_and_duplicated_layer_lists():
    model = resnetish()
    with pytest.raises(ValueError, match="no layers given"):
        Capture(model, [])
    with pytest.raises(ValueError, match="repeat"):
        Capture(model, ["layer1.0", "layer2.1", "layer1.0"])


def test_resolve_layers_keeps_order_and_accepts_a_string_and_call_suffix():
    model = resnetish()
    resolved = resolve_layers(model, ["layer2.1", "layer1.0#1", "stem"])
    assert list(resolved) == ["layer2.1", "layer1.0#1", "stem"]
    assert resolved["layer1.0#1"] is model.layer1[0]
    assert resolved["stem"] is model.stem
    assert list(resolve_layers(model, "layer1")) == ["layer1"]


@pytest.mark.parametrize("name, expected", [
    ("layer1.0", ("layer1.0", None)), ("act#0", ("act", 0)), ("act#12", ("act", 12)),
    ("a#b#3", ("a#b", 3))])
def test_split_call(name, expected):
    assert split_call(name) == expected


@pytest.mark.parametrize("name", ["act#", "act#x", "act#-1", "act#1.5"])
def test_split_call_rejects_bad_suffix(name):
    with pytest.raises(ValueError, match="call index"):
        split_call(name)


# ------------------------------------------------------------------------------------------
# output shapes: (B, C, H, W), tokens (B, T, C), vectors (B, C)
# ------------------------------------------------------------------------------------------
def test_as_channels_maps():
    z = torch.randn(2, 3, 4, 5)
    out = as_channels(z)
    assert out.shape == (2, 3, 20)
    assert position_shape(z) == (4, 5)
    for p in (0, 7, 19):
        assert torch.equal(out[:, :, p], z[:, :, p // 5, p % 5])


@pytest.mark.parametrize("skip", [0, 1, 3])
def test_as_channels_tokens(skip):
    z = torch.randn(2, 7, 6)  # (B, T, C)
    out = as_channels(z, skip_tokens=skip)
    assert out.shape == (2, 6, 7 - skip)
    assert position_shape(z, skip_tokens=skip) == (7 - skip,)
    for t in range(7 - skip):
        assert torch.equal(out[:, :, t], z[:, t + skip, :])


def test_as_channels_vectors():
    z = torch.randn(4, 5)
    out = as_channels(z)
    assert out.shape == (4, 5, 1)
    assert torch.equal(out[:, :, 0], z)
    assert position_shape(z) == ()


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_as_channels_rejects_other_ranks(shape):
    with pytest.raises(ValueError, match=r"expected an output of shape"):
        as_channels(torch.zeros(shape))


def test_capture_map_token_and_vector_layers():
    torch.manual_seed(1)

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.tokens = nn.Linear(6, 6)  # applied to (B, T, C) tokens: class token + H*W
            self.head = nn.Linear(6, 4)
            self.cls = nn.Parameter(torch.randn(1, 1, 6))

        def forward(self, x):
            z = self.conv(x)  # (B, 6, 4, 5)
            t = z.flatten(2).transpose(1, 2)  # (B, 20, 6)
            t = torch.cat([self.cls.expand(len(x), -1, -1), t], 1)  # (B, 21, 6)
            t = self.tokens(t)
            return self.head(t[:, 0])  # (B, 4)

    model = Mixed().eval()
    x = torch.randn(3, 3, 4, 5)
    with Capture(model, ["conv", "tokens", "head"]) as cap:
        logits = model(x)
        outs = dict(cap.outputs)
    with torch.no_grad():
        conv = model.conv(x)
        t = torch.cat([model.cls.expand(3, -1, -1), conv.flatten(2).transpose(1, 2)], 1)
        tokens = model.tokens(t)
    assert torch.allclose(outs["conv"], conv)
    assert torch.allclose(outs["tokens"], tokens)
    assert torch.allclose(outs["head"], logits)

    c = as_channels(outs["conv"])
    assert c.shape == (3, 6, 20) and position_shape(outs["conv"]) == (4, 5)
    assert torch.allclose(c[:, :, 7], conv[:, :, 1, 2])

    tok = as_channels(outs["tokens"], skip_tokens=1)  # the class token is dropped
    assert tok.shape == (3, 6, 20) and position_shape(outs["tokens"], skip_tokens=1) == (20,)
    assert torch.allclose(tok, tokens[:, 1:, :].transpose(1, 2))
    assert not torch.allclose(tok[:, :, 0], tokens[:, 0, :])

    vec = as_channels(outs["head"])
    assert vec.shape == (3, 4, 1) and position_shape(outs["head"]) == ()
    assert torch.allclose(vec[:, :, 0], logits)


# ------------------------------------------------------------------------------------------
# Capture behaviour
# ------------------------------------------------------------------------------------------
def test_capture_outputs_are_detached_and_refreshed_per_pass():
    model = resnetish()
    x1, x2 = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    with Capture(model, ["layer1.1", "stem"]) as cap:
        model(x1)
        first = cap.outputs["stem"]
        model(x2)
        second = dict(cap.outputs)
    assert cap.outputs == {}
    assert set(second) == {"layer1.1", "stem"}
    assert not second["stem"].requires_grad
    with torch.no_grad():
        assert torch.allclose(second["stem"], model.stem(x2))
        assert torch.allclose(first, model.stem(x1))
        assert torch.allclose(second["layer1.1"], model.layer1(model.stem(x2)))


def test_capture_detach_false_keeps_graph():
    model = resnetish()
    with Capture(model, ["stem"], detach=False) as cap:
        model(torch.randn(1, 3, 4, 4))
        assert cap.outputs["stem"].requires_grad
        assert cap.outputs["stem"].grad_fn is not None


def test_capture_on_output_callback_instead_of_storing():
    model = resnetish()
    seen = []
    with Capture(model, ["layer2.0", "stem"],
                 on_output=lambda name, out: seen.append((name, tuple(out.shape)))) as cap:
        model(torch.randn(2, 3, 5, 5))
        assert cap.outputs == {}
    assert sorted(seen) == [("layer2.0", (2, 4, 5, 5)), ("stem", (2, 4, 5, 5))]


def test_capture_copy_keeps_outputs_that_later_modules_change_in_place():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
    x = torch.randn(2, 3, 8, 8)
    expected = model[0](x).detach()
    with Capture(model, ["0"]) as capture:
        model(x)
        assert capture.outputs["0"].min() >= 0  # the hazard: ReLU ran on the stored tensor
    with Capture(model, ["0"], copy=True) as capture:
        model(x)
        assert torch.equal(capture.outputs["0"], expected) and expected.min() < 0


def test_capture_eval_mode_inside_block_only():
    model = guard_model()
    with Capture(model, ["2"]):
        assert not any(m.training for m in model.modules())
    assert model.training and model[1].training and not model[3].training
    with Capture(model, ["2"], eval_mode=False):
        assert model.training and not model[3].training


def test_module_running_twice_needs_call_suffix():
    model = SharedReLU()
    x = torch.randn(2, 3, 5, 5)
    before = snapshot(model)
    with pytest.raises(LayerError, match=r"module 'act' ran 2 times") as err:
        with Capture(model, ["act"]):
            model(x)
    assert "'act#0'" in str(err.value) and "'act#1'" in str(err.value)
    assert_same(before, snapshot(model))  # the hooks are gone after the error


def test_call_suffix_captures_each_call():
    model = SharedReLU()
    x = torch.randn(2, 3, 5, 5)
    with Capture(model, ["act#1", "act#0"]) as cap:
        out = model(x)
        outs = dict(cap.outputs)
    with torch.no_grad():
        first = torch.relu(model.conv1(x))
        second = torch.relu(model.conv2(first))
    assert outs["act#0"].shape == (2, 4, 5, 5) and outs["act#1"].shape == (2, 5, 5, 5)
    assert torch.allclose(outs["act#0"], first)
    assert torch.allclose(outs["act#1"], second)
    assert torch.allclose(outs["act#1"], out)
    # only one of the calls
    with Capture(model, ["act#1"]) as cap:
        model(x)
        assert list(cap.outputs) == ["act#1"]
        assert torch.allclose(cap.outputs["act#1"], second)


@pytest.mark.parametrize("layers, missing", [(["unused"], "unused"),
                                             (["act#0", "act#2"], "act#2")])
def test_layer_that_never_runs(layers, missing):
    model = SharedReLU()
    with pytest.raises(LayerError, match="did not run") as err:
        with Capture(model, layers):
            model(torch.randn(1, 3, 4, 4))
    assert repr(missing) in str(err.value)
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not any(m._forward_hooks for m in model.modules())


def test_tuple_output_takes_first_tensor():
    model = Wrap(TupleOut())
    x = torch.randn(2, 3)
    with Capture(model, ["inner"]) as cap:
        model(x)
        assert torch.equal(cap.outputs["inner"], x * 2)


@pytest.mark.parametrize("inner, kind", [(DictOut(), "dict"), (StrFirst(), "str"),
                                         (NoneOut(), "NoneType")])
def test_non_tensor_output_errors(inner, kind):
    model = Wrap(inner)
    with pytest.raises(LayerError, match=rf"layer 'inner' returned {kind}, not a tensor"):
        with Capture(model, ["inner"]):
            model(torch.randn(2, 3))


# ------------------------------------------------------------------------------------------
# ModelGuard / Capture leave the model exactly as it was
# ------------------------------------------------------------------------------------------
def _forward_train(model, hooks):
    model.train()
    for _ in range(3):
        model(torch.randn(4, 3, 5, 5) * 3 + 1)


def _forward_train_inference_mode(model, hooks):
    model.train()
    with torch.inference_mode():
        for _ in range(2):
            model(torch.randn(4, 3, 5, 5) * 3 + 1)


def _forward_train_no_grad(model, hooks):
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 5, 5) * 3 + 1)


def _inplace_no_grad(model, hooks):
    with torch.no_grad():
        model[0].weight.add_(1)
        model[1].running_var.mul_(2)
        model[1].num_batches_tracked += 5


def _inplace_via_data(model, hooks):
    model[0].weight.data.mul_(0)  # .data does not bump the version counter
    model[6].bias.data.fill_(3)


def _assign_data(model, hooks):
    model[0].weight.data = torch.zeros_like(model[0].weight)


def _optimizer_step(model, hooks):
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 5, 5)).square().sum().backward()
        opt.step()


def _toggle_requires_grad(model, hooks):
    for p in model.parameters():
        p.requires_grad_(not p.requires_grad)


def _replace_tensors(model, hooks):
    model[0].weight = nn.Parameter(torch.zeros_like(model[0].weight))
    model[1].running_mean = torch.full((4,), 5.0)


def _modes(model, hooks):
    model.eval()
    model[3].train()


def _cast(model, hooks):
    model.double()


def _add_hooks(model, hooks):
    model[0].register_forward_hook(lambda *a: None)
    model.register_forward_pre_hook(lambda *a: None)
    model[2].register_forward_hook(lambda m, a, kw, o: None, with_kwargs=True, always_call=True)
    model[2].register_forward_pre_hook(lambda m, a, kw: None, with_kwargs=True)
    model[6].register_full_backward_hook(lambda *a: None)


def _remove_user_hooks(model, hooks):
    for handle in hooks:
        handle.remove()


MUTATIONS = [_forward_train, _forward_train_inference_mode, _forward_train_no_grad,
             _inplace_no_grad, _inplace_via_data, _assign_data, _optimizer_step,
             _toggle_requires_grad, _replace_tensors, _modes, _cast, _add_hooks,
             _remove_user_hooks]


def _user_hooks(model, log):
    """The user's own hooks, registered before any guard: a plain one and a kwargs one."""
    return [
        model[2].register_forward_hook(lambda m, a, o: log.append(("plain", tuple(o.shape)))),
        model[6].register_forward_hook(lambda m, a, kw, o: log.append(("kwargs", tuple(o.shape))),
                                       with_kwargs=True),
    ]


GUARDS = {"ModelGuard": lambda m: ModelGuard(m), "Capture": lambda m: Capture(m, ["2", "6"])}


@pytest.mark.parametrize("raises", [False, True], ids=["clean", "raises"])
@pytest.mark.parametrize("guard", list(GUARDS))
@pytest.mark.parametrize("mutate", MUTATIONS, ids=[f.__name__.strip("_") for f in MUTATIONS])
def test_guard_restores_model(mutate, guard, raises):
    model = guard_model()
    log = []
    handles = _user_hooks(model, log)
    before = snapshot(model)

    class Boom(Exception):
        pass

    try:
        with GUARDS[guard](model):
            mutate(model, handles)
            inside = snapshot(model)
            if raises:
                raise Boom("mid-block")
    except Boom:
        assert raises
    else:
        assert not raises
    # the mutation did change the model inside the block (so this test can fail) ...
    assert differences(before, inside)
    # ... and everything is back afterwards
    assert_same(before, snapshot(model))
    # the user's hooks still work, and only they run
    log.clear()
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 5, 5))
    assert log == [("plain", (2, 4, 5, 5)), ("kwargs", (2, 3))]


def test_guard_with_batchnorm_in_train_mode_under_capture():
    model = guard_model()
    before = snapshot(model)
    rm = model[1].running_mean.clone()
    with Capture(model, ["1"]) as cap:
        for _ in range(3):
            model(torch.randn(4, 3, 5, 5) * 4 + 2)
        # eval inside: the captured output was normalised with the stored running statistics
        x = torch.randn(2, 3, 5, 5)
        model(x)
        with torch.no_grad():
            z = model[0](x)
            expected = (z - rm[None, :, None, None]) / torch.sqrt(
                model[1].running_var[None, :, None, None] + model[1].eps)
            expected = expected * model[1].weight[None, :, None, None] + \
                model[1].bias[None, :, None, None]
        assert torch.allclose(cap.outputs["1"], expected, atol=1e-5)
    assert_same(before, snapshot(model))
    assert model.training and model[1].training


def test_capture_undoes_the_forward_passes_draws_and_keeps_the_others():
    """The one RNG rule: what the model's forward passes draw (dropout in train mode) is undone,
    everything else drawn inside the block (the user's own draws, a loader's) stands."""
    model = guard_model()
    x = torch.randn(3, 3, 5, 5)
    state = torch.get_rng_state()
    torch.rand(100)
    expected = torch.rand(5)  # the user's draw of 100, then 5: no forward pass in between
    for stop_at in (None, "2"):
        torch.set_rng_state(state)
        with pytest.raises(RuntimeError, match="stop"):
            with Capture(model, ["2"], eval_mode=False) as capture:
                torch.rand(100)
                model(x)  # dropout in train mode draws: undone at the end of the pass
                capture.forward(x)
                raise RuntimeError("stop")
        assert torch.equal(torch.rand(5), expected)

    def stop(name, out):
        raise StopForward

    torch.set_rng_state(state)
    with Capture(model, ["2"], on_output=stop, eval_mode=False) as capture:
        torch.rand(100)
        capture.forward(x)  # stopped in the middle: the draws so far are undone too
    assert torch.equal(torch.rand(5), expected)
    torch.set_rng_state(state)
    with ModelGuard(model):
        torch.rand(100)  # the guard alone keeps the model, not the RNG
    assert torch.equal(torch.rand(5), expected)


def test_a_shuffled_loader_advances_the_rng_as_the_users_own_loop_would():
    from notebookcarto import collect_stats

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    data = torch.utils.data.TensorDataset(torch.randn(20, 3, 5, 5), torch.arange(20) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=6, shuffle=True)
    state = torch.get_rng_state()
    order = [y.tolist() for _, y in loader]
    after_user_loop = torch.rand(3)
    torch.set_rng_state(state)
    stats = collect_stats(model, loader, ["1"], progress=False)
    assert torch.equal(torch.rand(3), after_user_loop)
    torch.set_rng_state(state)
    again = [y.tolist() for _, y in loader]
    assert again == order and stats.n_images == 20


def test_capture_hooks_gone_and_user_hook_kept_after_normal_exit():
    model = resnetish()
    calls = []
    model.layer1.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    with Capture(model, ["layer1.0", "layer2"]):
        assert len(model.layer1[0]._forward_hooks) == 1
        assert len(model.layer2._forward_hooks) == 1
        assert len(model._forward_hooks) == 1 and len(model._forward_pre_hooks) == 1
        model(torch.randn(1, 3, 4, 4))
    assert len(calls) == 1
    assert not model.layer1[0]._forward_hooks and not model.layer2._forward_hooks
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert len(model.layer1._forward_hooks) == 1
    model(torch.randn(1, 3, 4, 4))
    assert len(calls) == 2


# ------------------------------------------------------------------------------------------
# mappable_layers
# ------------------------------------------------------------------------------------------
def _meta(builder, **kwargs):
    """Build a torchvision model on the meta device: no weights, no download, no init cost."""
    with torch.device("meta"):
        return builder(weights=None, **kwargs)


def test_mappable_layers_resnet18():
    model = _meta(torchvision.models.resnet18)
    assert mappable_layers(model) == [f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)]


def test_mappable_layers_googlenet():
    model = _meta(torchvision.models.googlenet, aux_logits=False, init_weights=True)
    assert mappable_layers(model) == [
        "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
        "inception4d", "inception4e", "inception5a", "inception5b"]


def test_mappable_layers_vit_b_16():
    model = _meta(torchvision.models.vit_b_16)
    assert mappable_layers(model) == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]


def test_mappable_layers_vgg11_relus_after_convs():
    model = _meta(torchvision.models.vgg11)
    names = mappable_layers(model)
    modules = dict(model.named_modules())
    convs = [n for n, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    assert names == [f"features.{int(c) + 1}" for c in convs]
    assert len(names) == 8
    assert all(isinstance(modules[n], nn.ReLU) for n in names)
    assert not any(n.startswith("classifier") for n in names)


def test_mappable_layers_plain_sequential():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),
                          nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3),
                          nn.ReLU(), nn.Linear(3, 2))
    assert mappable_layers(model) == ["1", "4"]


def test_mappable_layers_found_names_capture_real_blocks():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    layers = mappable_layers(model)
    with Capture(model, layers) as cap:
        model(torch.randn(1, 3, 32, 32))
        shapes = {k: tuple(v.shape) for k, v in cap.outputs.items()}
    assert shapes["layer1.0"] == (1, 64, 8, 8)
    assert shapes["layer4.1"] == (1, 512, 1, 1)


def test_a_chosen_submodule_called_directly_counts_as_its_own_pass():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    x = torch.randn(2, 3, 5, 5)
    with Capture(model, ["0"]) as capture:
        model(x)
        for _ in range(2):
            out = model[0](x)
            assert torch.equal(capture.outputs["0"], out.detach())
        model(x)
        assert torch.equal(capture.outputs["0"], model[0](x).detach())


# ---- callbacks that edit outputs, read inputs, add hooks and stop the pass ------------------

def test_on_output_may_replace_the_layer_output():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(4, 3)
    shift = torch.zeros(4, 3, requires_grad=True)

    def add(name, out):
        return out + shift

    with Capture(model, ["0"], on_output=add, detach=False) as capture, torch.enable_grad():
        y = capture.forward(x)
        grad, = torch.autograd.grad(y.sum(), shift)
    assert torch.allclose(y, model(x))  # adding a zero changes nothing ...
    expected = (model[0](x) > 0).float() * model[2].weight.sum(0)  # ... but now has a gradient
    assert torch.allclose(grad, expected)


def test_inputs_callback_and_stop_forward_end_the_pass_early():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    later = []
    model[2].register_forward_hook(lambda m, a, o: later.append(1))
    seen = {}

    def on_input(name, args):
        seen[name] = args[0].clone()
        raise StopForward

    x = torch.randn(5, 3)
    with Capture(model, [], inputs=["2"], on_input=on_input) as capture:
        assert capture.forward(x) is None
    assert torch.allclose(seen["2"], model[1](model[0](x)))
    assert later == []  # the last layer never ran
    with pytest.raises(ValueError, match="on_input"):
        Capture(model, [], inputs=["2"])


def test_register_adds_hooks_only_inside_the_block_and_freeze_is_undone():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    calls = []
    capture = Capture(model, ["1"], freeze=True)
    with pytest.raises(RuntimeError, match="inside"):
        capture.register("0", post=lambda m, a, o: calls.append("post"))
    with capture:
        assert not any(p.requires_grad for p in model.parameters())
        capture.register("0", pre=lambda m, a: calls.append("pre"),
                         post=lambda m, a, o: calls.append("post"))
        capture.forward(torch.randn(2, 3))
    assert calls == ["pre", "post"]
    model(torch.randn(2, 3))
    assert calls == ["pre", "post"]  # gone after the block
    assert all(p.requires_grad for p in model.parameters())
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
