"""visualize's checks, what it leaves untouched, the result in the atlas, the input space."""

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.featvis import (
    FeatureVisualizations,
    InputSpace,
    LucentOptions,
    VitalOptions,
    class_targets,
    resolve_targets,
    visualize,
)
from notebookcarto.models import PlaygroundCNN, resnet20

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = dict(steps=3, warmup=1, n_reference=4)


@pytest.fixture(scope="module")
def small():
    data = ConceptPlayground(n=80, size=32, seed=4)
    x, y = data.tensors()
    torch.manual_seed(0)
    model = PlaygroundCNN(len(data.classes), width=4).eval()
    atlas = Atlas.build(model, (x, y), ["block1", "block2", "block3"],
                        class_names=data.classes, top_n=6, progress=False)
    return model, (x, y), atlas


def test_result_holds_images_and_how_they_were_made(small, tmp_path):
    model, data, atlas = small
    result = visualize(model, ["block3:1", "class:0"], data=data, atlas=atlas, progress=False,
                       **QUICK)
    assert isinstance(result, FeatureVisualizations) and result.method == "vital"
    assert result.images.shape == (2, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.inputs.shape == (2, 3, 32, 32)
    assert result.kinds == ["neuron", "class"] and result.layers == ["block3", ""]
    assert result.labels[1] == atlas.class_names[0]
    assert result.params["steps"] == 3 and result.params["jitter"] == 4  # 30 px at 224 -> 32
    assert result.params["layers"] == ["block1", "block2", "block3"]
    assert np.all(result.reference_ids[0, :4] == atlas.top_images("block3:1").image[:4])
    assert np.isfinite(result.reference_max).all() and np.isfinite(result.activation).all()
    assert result.image("class:0").shape == (32, 32, 3)
    assert list(result.table().index) == ["block3:1", "class:0"]
    assert "1 neuron" in repr(result) and "1 class" in repr(result)
    atlas.attach(result)
    atlas.save(tmp_path / "atlas")
    back = Atlas.load(tmp_path / "atlas").get(FeatureVisualizations)
    assert back.targets == result.targets and back.params == result.params
    np.testing.assert_array_equal(back.images, result.images)
    atlas.detach(FeatureVisualizations)


def test_the_model_rng_and_threads_are_left_alone(small):
    model, data, atlas = small
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    hooks = len(model.block1._forward_hooks)
    for method, options in (("vital", QUICK), ("lucent", dict(steps=2))):
        visualize(model, ["block2:3", "class:2"], method=method, data=data, atlas=atlas,
                  progress=False, **options)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert len(model.block1._forward_hooks) == hooks
    model.eval()


def test_the_baseline_needs_no_real_images():
    torch.manual_seed(0)
    model = PlaygroundCNN(3, width=4).eval()
    result = visualize(model, ["block2:1", "class:2"], method="lucent", image_size=32,
                       steps=2, progress=False)
    assert result.images.shape == (2, 32, 32, 3) and np.isnan(result.reference_max).all()
    assert result.params["pad"] == 3 and result.params["jitter"] == 2  # Lucent's 12, 8 at 128


def test_normalised_data_is_optimised_in_input_space_and_shown_denormalised():
    model = resnet20().eval()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    space = InputSpace(mean, std)
    images = space.from_unit(torch.rand(6, 3, 32, 32))
    result = visualize(model, ["class:3"], data=images, references={"class:3": images},
                       mean=mean, std=std, layers=["layer1", "layer2"], progress=False,
                       **QUICK)
    low, high = space.bounds(torch.zeros(1, 3, 1, 1))
    inputs = torch.from_numpy(result.inputs)
    assert (inputs >= low - 1e-6).all() and (inputs <= high + 1e-6).all()  # clamped
    np.testing.assert_array_equal(result.images, space.display(inputs))
    assert result.space == {"mean": list(mean), "std": list(std)}
    assert result.params["lr"] == pytest.approx(1.0)  # ImageNet-normalised: the released lr
    assert InputSpace().imagenet_unit() == pytest.approx(0.226, abs=1e-3)


@pytest.mark.parametrize("call, error, match", [
    (dict(method="maco"), ValueError, "unknown method 'maco'"),
    (dict(method="vitl"), ValueError, "did you mean 'vital'"),
    (dict(stpes=3), TypeError, "closest: steps"),
    (dict(steps=3, warmup=5), ValueError, "warmup must lie in"),
    (dict(targets=["block9:1"]), KeyError, "unknown layer 'block9'"),
    (dict(targets=["block3:99"]), KeyError, "channels"),
    (dict(targets=["class:99"]), KeyError, "unknown class 'class:99'"),
    (dict(targets=["cluster:0"]), ValueError, "need an atlas with clusters"),
    (dict(targets=["block1:0"]), ValueError, "every matched layer has weight 0"),
    (dict(targets=["block3:1", "block3:1"]), ValueError, "targets repeat"),
    (dict(targets=[]), ValueError, "no targets given"),
    (dict(layer_weights={"block1": 1.0}), ValueError, "layer_weights must give a weight"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(options=LucentOptions()), TypeError, "takes VitalOptions"),
    (dict(references={"block2:0": torch.zeros(2, 3, 32, 32)}), KeyError, "not among"),
])
def test_clear_errors_before_any_work(small, call, error, match):
    model, data, atlas = small
    kwargs = dict(targets=["block3:1"], data=data, atlas=atlas, progress=False, steps=3,
                  warmup=1)
    kwargs.update(call)
    targets = kwargs.pop("targets")
    if kwargs.get("method", "vital") != "vital" or "options" in kwargs:
        kwargs.pop("warmup")
    with pytest.raises(error, match=match):
        visualize(model, targets, **kwargs)


def test_inner_targets_need_their_exemplars(small):
    model, data, atlas = small
    with pytest.raises(ValueError, match="pass atlas="):
        visualize(model, ["block3:1"], data=data, progress=False, **QUICK)
    with pytest.raises(ValueError, match="VITAL matches real images"):
        visualize(model, ["block3:1"], atlas=atlas, image_size=32, progress=False, **QUICK)
    with pytest.raises(ValueError, match="the atlas was built on 80 images"):
        visualize(model, ["block3:1"], data=(data[0][:50], data[1][:50]), atlas=atlas,
                  progress=False, **QUICK)


def test_targets_by_key(small):
    _, _, atlas = small
    targets = resolve_targets(["class:" + atlas.class_names[2], "block2:3"] , atlas=atlas)
    assert [t.key for t in targets] == ["class:2", "block2:3"]
    assert targets[0].kind == "class" and targets[1].channels == (3,)
    assert class_targets(atlas)[-1] == f"class:{len(atlas.class_names) - 1}"
    assert targets[1].direction(8)[3] == 1 and targets[1].direction(8).sum() == 1


def test_options_keep_the_released_defaults():
    vital, lucent = VitalOptions(), LucentOptions()
    assert (vital.steps, vital.betas, vital.warmup, vital.n_reference) == (2000, (0.5, 0.9),
                                                                           100, 50)
    assert vital.resolve(224).jitter == 30 and vital.resolve(224).lr == 1.0
    assert vital.priors("class") == (0.0, 3e-3, 0.0) and vital.priors("neuron")[2] == 3e-7
    assert (lucent.steps, lucent.lr, lucent.sd) == (512, 0.05, 0.01)
    assert lucent.resolve(128).pad == 12 and lucent.resolve(128).jitter == 8
    assert len(lucent.scales) == 11 and min(lucent.angles) == -10
