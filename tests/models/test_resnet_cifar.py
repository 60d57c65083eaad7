"""CIFAR ResNet-20: architecture, option-A shortcut, checkpoint loading, accuracy."""

import time

import pytest
import torch
import torch.nn.functional as F

from notebookcarto.datasets.folder import cifar10_test
from notebookcarto.models.resnet_cifar import BasicBlock, CifarResNet, load_resnet20, resnet20


def test_resnet20_size_names_and_output():
    model = resnet20().eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert round(n_params / 1e6, 2) == 0.27, n_params
    names = {name for name, _ in model.named_modules()}
    blocks = [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    assert {"conv1", "bn1", "linear", "layer1", "layer2", "layer3", *blocks} <= names
    assert "layer1.3" not in names
    assert all(isinstance(model.get_submodule(b), BasicBlock) for b in blocks)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_block_outputs_are_post_relu_and_shapes():
    model = resnet20().eval()
    seen = {}
    for name in ("layer1.2", "layer2.0", "layer3.2"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o)
        )
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen["layer1.2"].shape == (2, 16, 32, 32)
    assert seen["layer2.0"].shape == (2, 32, 16, 16)
    assert seen["layer3.2"].shape == (2, 64, 8, 8)
    assert all((o >= 0).all() for o in seen.values())


def test_depth_must_be_6n_plus_2():
    assert len(CifarResNet(32).layer2) == 5
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


def test_option_a_shortcut_is_padded_subsample():
    block = BasicBlock(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    expected = torch.zeros(2, 32, 4, 4)
    expected[:, 8:24] = x[:, :, ::2, ::2]
    assert torch.equal(block.shortcut(x), expected)
    assert not list(block.shortcut.parameters())
    # With the residual branch silenced, the block is ReLU(shortcut).
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)
    with torch.no_grad():
        assert torch.equal(block.eval()(x), F.relu(expected))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.th"):
        load_resnet20(tmp_path / "nope.th")


def test_load_wrong_keys(tmp_path):
    state = {f"module.{k}": v for k, v in resnet20().state_dict().items()}
    del state["module.linear.weight"]
    state["module.fc.weight"] = torch.zeros(10, 64)
    path = tmp_path / "bad.th"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="missing: linear.weight") as err:
        load_resnet20(path)
    assert "unexpected: fc.weight" in str(err.value)


def test_load_raw_state_dict_roundtrip(tmp_path):
    model = resnet20()
    path = tmp_path / "raw.th"
    torch.save(model.state_dict(), path)
    loaded = load_resnet20(path)
    assert not loaded.training
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))


@pytest.mark.slow
def test_pretrained_accuracy(shared):
    path = shared / "models" / "resnet20-cifar10.th"
    if not path.is_file() or not (shared / "data" / "cifar10-test").is_dir():
        pytest.skip(f"{path} or data/cifar10-test missing in {shared}")
    start = time.perf_counter()
    model = load_resnet20(path)
    dataset = cifar10_test(shared / "data" / "cifar10-test")
    assert len(dataset) == 10_000
    loader = torch.utils.data.DataLoader(dataset, batch_size=500)
    correct = 0
    with torch.inference_mode():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    accuracy = correct / len(dataset)
    print(f"resnet20 CIFAR-10 test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s")
    assert 0.79 <= accuracy <= 0.83
