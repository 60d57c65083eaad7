"""Network Dissection on two gloo processes equals one process over the same images (an uneven
split, a rank with an empty shard, one pass or two, the result on rank 0 only); a dissection
that crashed (in its first pass or in its IoU pass, or a rank killed) resumes from its
checkpoint with the uninterrupted result; a checkpoint of other parameters is refused."""

import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from helpers import run_ranks
from notebookcarto.analyses.dissection import counting, dissect
from notebookcarto.datasets import Concept, ConceptPlayground
from notebookcarto.datasets.concept_data import (ConceptData, ConceptSample, ConceptTensors,
                                                 PlaygroundConcepts)
from notebookcarto.testing.planted_dissect import planted_dissect_model

N = 21  # 11 and 10 images on two ranks, in batches of 4
WIDE = (10.0, 0.1, 3.0)  # counting.BAND for the one-pass case
SKETCH = 256  # rank error about 1/256 of the 21 * 32 * 32 positions


def playground():
    return ConceptPlayground(n=N, seed=3)


def tensors(n=N):
    """The playground's images in multiples of 1/256 (``conv`` computes them exactly)."""
    data = ConceptTensors.from_data(PlaygroundConcepts(playground()))
    return ConceptTensors((data.images[:n] * 256).round() / 256, data.masks[:n], data.concepts,
                          None if data.labels is None else data.labels[:n])


def conv():
    """Activations at full, half and quarter resolution (resampled for the masks), with
    dyadic weights: exact in float32 however the images are batched."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(6, 5, 3, padding=1), nn.AvgPool2d(2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((p * 16).round() / 16)
    return model


class Faulty(ConceptData):
    """Concept data whose item ``at`` raises (or kills the process) the ``nth`` time it is
    loaded; counts the batches loaded."""

    def __init__(self, at=-1, nth=1, how="raise"):
        self.base = tensors()
        self.concepts = self.base.concepts
        self.at, self.nth, self.how, self.seen, self.loads = at, nth, how, 0, 0

    def __len__(self):
        return len(self.base)

    def sample(self, i):
        return self.base.sample(i)

    def load_batch(self, indices):
        self.loads += 1
        if self.at in list(indices):
            self.seen += 1
            if self.seen == self.nth and self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.seen == self.nth:
                raise ValueError(f"item {self.at} is unreadable")
        return self.base.load_batch(indices)


class TwoSizes(ConceptData):
    """Even images of 8 px, odd ones of 16 px: each rank plans its exact estimator for other
    stream lengths (the thresholds then come from a sketch pass, exact at this size)."""

    concepts = [Concept("left", "side"), Concept("top", "side")]

    def __len__(self):
        return 6

    def sample(self, i):
        size = 8 if i % 2 == 0 else 16
        g = torch.Generator().manual_seed(i)
        masks = np.zeros((2, size, size), bool)
        masks[0, :, : size // 2] = True
        masks[1, : size // 2] = True
        return ConceptSample(torch.rand(3, size, size, generator=g), masks, [0, 1])


def two_sizes(**options):
    torch.manual_seed(0)
    return result(dissect(nn.Sequential(nn.Conv2d(3, 2, 1)), TwoSizes(), ["0"], batch_size=2,
                          progress=False, **options))


def result(out):
    """The parts of a Dissection that must be equal, as plain arrays (None stays None)."""
    if out is None:
        return None
    parts = {"params": {k: v for k, v in out.params.items() if k != "passes"},
             "ground": out.ground, "concepts": out.concepts, "passes": out.params["passes"]}
    for name in out.layers:
        for part in ("thresholds", "intersection", "area", "top_images", "top_values"):
            parts[f"{name}/{part}"] = getattr(out, part)[name]
        parts[f"{name}/iou"] = out.iou(name)
    parts["units"] = out.units()[["concept", "detector"]].to_dict()
    return parts


def assert_same(a, b):
    """Equal results (the number of passes may differ: each rank guesses its own band)."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key == "passes":
            continue
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b[key], err_msg=key)
        else:
            assert value == b[key], key


PLANTED = dict(layers=["concepts"], estimator="exact", quantile=0.1)
CONV = dict(layers=["0", "2", "4"], estimator="exact", quantile=0.02, method="2020",
            cache_limit=0)


def run(kind, data, **options):
    model = planted_dissect_model(playground()) if kind == "planted" else conv()
    options = dict(PLANTED if kind == "planted" else CONV, **options)
    return dissect(model, data, options.pop("layers"), batch_size=4, progress=False, **options)


def alone(kind, data, **options):
    """The result of one process, with one thread like the ranks (the planted model's forward
    pass rounds differently on more threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return result(run(kind, data, **options))
    finally:
        torch.set_num_threads(threads)


def one_pass(run_it, *args, **options):
    """A dissection whose bands, guessed from 4 images, are wide enough to hold T (the
    thresholds and the counts from one forward pass)."""
    band, counting.BAND = counting.BAND, WIDE
    try:
        return run_it(*args, cache_limit=1 << 20, **options)
    finally:
        counting.BAND = band


def cases(rank, folder):
    """Every case of one spawned run, on this rank."""
    out = {"planted": result(run("planted", tensors())),
           "one_pass_2020": result(one_pass(run, "conv", tensors())),
           "two_passes": result(run("conv", tensors())),
           "empty_shard": result(run("planted", tensors(1))),
           "rank0": result(run("planted", tensors(), distributed="rank0")),
           "sketch": result(run("conv", tensors(), estimator="sketch", sketch_size=SKETCH)),
           "two_sizes": two_sizes()}
    try:
        two_sizes(estimator="exact")
    except ValueError as err:
        out["two_sizes/exact"] = str(err)
    for crash, nth in (("crash_first_pass", 1), ("crash_iou_pass", 2)):
        folder_ = os.path.join(folder, crash)
        try:
            run("conv", Faulty(9, nth), checkpoint=folder_, checkpoint_every=1)
            out[crash + "/error"] = None
        except Exception as err:
            out[crash + "/error"] = f"{type(err).__name__}: {err}"
        again = Faulty()
        out[crash] = result(run("conv", again, checkpoint=folder_, checkpoint_every=1))
        out[crash + "/loads"] = again.loads
    return out


def killed(rank, folder, checkpoint):
    return result(run("conv", Faulty(9, 2, "kill"), checkpoint=checkpoint, checkpoint_every=1))


def resumed(rank, folder, checkpoint):
    return result(run("conv", Faulty(), checkpoint=checkpoint, checkpoint_every=1))


@pytest.fixture(scope="module")
def one():
    return {kind: alone(kind, tensors()) for kind in ("planted", "conv")}


def test_two_processes_equal_one(tmp_path, one):
    ranks = run_ranks(cases, 2, tmp_path, str(tmp_path))
    assert all("value" in r for r in ranks), ranks
    for r in ranks:
        got = r["value"]
        assert_same(got["planted"], one["planted"])
        assert_same(got["two_passes"], one["conv"])
        want = one_pass(alone, "conv", tensors())
        assert_same(got["one_pass_2020"], want)
        assert got["one_pass_2020"]["passes"] == want["passes"] == 1  # every band held T
        assert got["two_passes"]["passes"] == 2
        assert_same(got["empty_shard"], alone("planted", tensors(1)))
        assert_same(got["two_sizes"], two_sizes())
        assert got["two_sizes"]["passes"] == 2  # a sketch pass for the thresholds
        assert "estimator='sketch'" in got["two_sizes/exact"]
        # the 1 image is rank 0's: rank 1 read nothing
        for crash in ("crash_first_pass", "crash_iou_pass"):
            assert_same(got[crash], one["conv"])
    for crash in ("crash_first_pass", "crash_iou_pass"):  # the checkpoints are removed when done
        assert not list((tmp_path / crash).glob("*.pt"))
    # item 9 is in rank 1's second batch (of 3): resumed, it reads the last two (then all
    # three of the IoU pass when it crashed in the first)
    assert ranks[1]["value"]["crash_first_pass/loads"] == 2 + 3
    assert ranks[1]["value"]["crash_iou_pass/loads"] == 2
    assert ranks[1]["value"]["crash_first_pass/error"] == "ValueError: item 9 is unreadable"
    assert ranks[0]["value"]["crash_first_pass/error"].startswith(
        "RuntimeError: rank 1 of 2 failed during the dissection pass")
    assert ranks[0]["value"]["crash_iou_pass/error"].startswith(
        "RuntimeError: rank 1 of 2 failed during the dissection: IoU pass")
    assert_same(ranks[0]["value"]["rank0"], one["planted"])
    assert ranks[1]["value"]["rank0"] is None
    a, b = (r["value"]["sketch"] for r in ranks)
    assert_same(a, b)  # the merged sketch gives every rank the same thresholds
    single = alone("conv", tensors(), estimator="sketch", sketch_size=SKETCH)
    for name in CONV["layers"]:  # sketched thresholds: within the sketch's rank error
        assert_within_bound(a[f"{name}/thresholds"], single[f"{name}/thresholds"], name)


def assert_within_bound(got, want, name):
    """Both thresholds leave about the same share of the resampled values above them."""
    data, model = tensors(), conv()
    z = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: z.__setitem__(n, o))
             for n, m in model.named_children()]
    with torch.no_grad():
        model(data.images)
    for h in hooks:
        h.remove()
    values = nn.functional.interpolate(z[name], size=data.mask_shape, mode="bilinear",
                                       align_corners=False).transpose(0, 1).flatten(1)
    share = [(values > torch.as_tensor(t).view(-1, 1)).float().mean(1) for t in (got, want)]
    torch.testing.assert_close(share[0], share[1], atol=0.02, rtol=0, msg=name)
    assert (share[0] - CONV["quantile"]).abs().max() < 0.02


def test_a_killed_rank_resumes_from_its_checkpoint(tmp_path, one):
    checkpoint = tmp_path / "checkpoint"
    dead = run_ranks(killed, 2, tmp_path / "killed", str(tmp_path), str(checkpoint))
    assert dead[1] == {"exitcode": -signal.SIGKILL}  # in the IoU pass
    assert "error" in dead[0]  # the peer is gone: an error, not a hang
    assert sorted(p.name for p in checkpoint.iterdir() if not p.name.startswith(".")) == [
        "dissection-iou.rank0-of-2.pt", "dissection-iou.rank1-of-2.pt",
        "dissection.rank0-of-2.pt", "dissection.rank1-of-2.pt"]
    ranks = run_ranks(resumed, 2, tmp_path / "resumed", str(tmp_path), str(checkpoint))
    for r in ranks:
        assert_same(r["value"], one["conv"])


def test_a_crashed_dissection_resumes_in_one_process(tmp_path, one):
    for nth in (1, 2):  # in the first pass, in the IoU pass
        folder = tmp_path / str(nth)
        with pytest.raises(ValueError, match="item 9 is unreadable"):
            run("conv", Faulty(9, nth), checkpoint=folder, checkpoint_every=1)
        again = Faulty()
        assert_same(result(run("conv", again, checkpoint=folder, checkpoint_every=1)),
                    one["conv"])
        # batches 2 to 5 of 6 of the pass that crashed, and all of a later one
        assert again.loads == (4 + 6 if nth == 1 else 4)
        assert not list(folder.glob("*.pt"))


def test_a_mismatched_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="item 9"):
        run("conv", Faulty(9), checkpoint=tmp_path, checkpoint_every=1)
    for options, key in ((dict(quantile=0.03), "quantile"), (dict(layers=["0"]), "layers"),
                         (dict(concepts=["red", "sky"]), "concepts"),
                         (dict(method="original"), "method")):
        with pytest.raises(ValueError, match=f"saved by a pass with {key}=.*delete the file"):
            run("conv", Faulty(), checkpoint=tmp_path, **options)
    other = conv()
    with torch.no_grad():
        other[0].bias += 1
    with pytest.raises(ValueError, match="saved by a pass with model="):
        dissect(other, Faulty(), CONV["layers"], batch_size=4, progress=False, checkpoint=tmp_path,
                **{k: v for k, v in CONV.items() if k != "layers"})
    with pytest.raises(ValueError, match="saved by a pass with images="):
        run("conv", tensors(N - 1), checkpoint=tmp_path)
    run("conv", Faulty(), checkpoint=tmp_path)  # the same parameters resume
