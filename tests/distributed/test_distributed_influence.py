"""Influence counts on two gloo processes equal one process (both estimators, an uneven split,
a rank with an empty shard, the result on rank 0 only); a pass that crashed resumes from its
checkpoint with the uninterrupted counts; a checkpoint of other parameters is refused."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from helpers import run_ranks
from notebookcarto.analyses.influence import collect_influence

pytestmark = pytest.mark.usefixtures("one_thread")  # as the ranks run

N = 21  # 11 and 10 images on two ranks, in batches of 4
PAIRS = [("1", "3"), ("3", "5")]


def images(n=N):
    """Images in multiples of 1/256 (the model computes them exactly however they are batched)."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(n, 3, 12, 12, generator=g) * 256).round() / 256
    return x, torch.randint(0, 4, (n,), generator=g)


def model():
    """Three convolutions with dyadic weights, then logits: exact in float32."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(8, 7, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(7, 4)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_((p * 16).round() / 16)
    return net


class Faulty(Dataset):
    def __init__(self, at=-1):
        self.x, self.y = images()
        self.at = at

    def __len__(self):
        return N

    def __getitem__(self, i):
        if i == self.at:
            raise ValueError(f"item {i} is unreadable")
        return self.x[i], self.y[i]


def counts(data, **options):
    stats = collect_influence(model(), data, PAIRS, estimator=("conv", "gradient"),
                              batch_size=4, progress=False, **options)
    return None if stats is None else stats.state_dict()


def cases(rank):
    return {"split": counts(images()), "empty_shard": counts(images(1)),
            "rank0": counts(images(), distributed="rank0")}


def assert_same(a, b):
    assert a["config"]["n_images"] == b["config"]["n_images"]
    assert a["config"]["image_ranges"] == b["config"]["image_ranges"]
    assert a["tensors"].keys() == b["tensors"].keys()
    for key, value in a["tensors"].items():
        assert torch.equal(value, b["tensors"][key]), key


def test_two_processes_equal_one(tmp_path):
    one, single = counts(images(), distributed="off"), counts(images(1), distributed="off")
    assert sum(int(v.sum()) for k, v in one["tensors"].items() if k.endswith("/values")) > 0
    ranks = run_ranks(cases, 2, tmp_path)
    assert all("value" in r for r in ranks), ranks
    for r in ranks:
        assert_same(r["value"]["split"], one)
        assert_same(r["value"]["empty_shard"], single)
    assert_same(ranks[0]["value"]["rank0"], one)
    assert ranks[1]["value"]["rank0"] is None


def test_a_crashed_pass_resumes_and_a_changed_one_is_refused(tmp_path):
    one = counts(Faulty())
    with pytest.raises(ValueError, match="item 13 is unreadable"):
        counts(Faulty(13), checkpoint=tmp_path, checkpoint_every=1)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["influence.rank0-of-1.pt"]
    with pytest.raises(ValueError, match="top_inputs=5 but this pass has top_inputs=3"):
        collect_influence(model(), Faulty(), PAIRS, estimator=("conv", "gradient"), batch_size=4,
                          progress=False, top_inputs=3, checkpoint=tmp_path)
    assert_same(counts(Faulty(), checkpoint=tmp_path, checkpoint_every=1), one)
    assert not list(tmp_path.glob("*.pt"))
