"""The statistics pass on two gloo processes equals one process over the same images: also with
a DistributedSampler, an uneven split, a rank with an empty shard, the result on rank 0 only, a
rank that raises, and a rank killed mid-pass then resumed from its checkpoint."""

import os
import signal

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from helpers import run_ranks
from notebookcarto import collect_stats
from notebookcarto.models import PlaygroundCNN

LAYERS = ["block1", "block2", "block3", "block4"]


def images(n: int):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 8, (n,), generator=g)


def model():
    torch.manual_seed(0)
    return PlaygroundCNN(num_classes=8).eval()


class Faulty(Dataset):
    """Images that raise, or kill the process, at item ``at``."""

    def __init__(self, n, at, how):
        self.x, self.y = images(n)
        self.at, self.how = at, how

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.at and self.how == "raise":
            raise ValueError(f"item {i} is unreadable")
        if i == self.at and self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return self.x[i], self.y[i]


def stats(data, **options):
    out = collect_stats(model(), data, LAYERS, top_n=5, batch_size=4, progress=False, **options)
    return None if out is None else out.state_dict()


def cases(rank, folder):
    """Every case of one spawned run, on this rank."""
    x, y = images(45)
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=1)  # pads 45 to 46
    return {"tensors": stats((x, y)),
            "sampler": stats(DataLoader(TensorDataset(x, y), batch_size=4, sampler=sampler)),
            "empty_shard": stats(images(1)),
            "rank0": stats((x, y), distributed="rank0"),
            "off": stats(images(6), distributed="off")}


def failing(rank, folder, how, checkpoint):
    try:
        return stats(Faulty(45, 21, how), checkpoint=checkpoint, checkpoint_every=1)
    finally:
        if how == "kill":  # rank 0 finished its shard: the resumed run must still agree
            assert rank == 0


def resumed(rank, folder, checkpoint):
    return stats(Faulty(45, -1, "none"), checkpoint=checkpoint, checkpoint_every=1)


def assert_same(a, b):
    assert a["config"]["n_images"] == b["config"]["n_images"]
    assert a["config"]["image_ranges"] == b["config"]["image_ranges"]
    assert a["tensors"].keys() == b["tensors"].keys()
    for key, value in a["tensors"].items():
        other = b["tensors"][key]
        if value.is_floating_point():
            torch.testing.assert_close(value, other, rtol=1e-6, atol=1e-6, msg=key)  # float32 maps
        else:
            assert torch.equal(value, other), key


@pytest.fixture(scope="module")
def one():
    return stats(images(45), distributed="off")


def test_two_processes_equal_one(tmp_path, one):
    ranks = run_ranks(cases, 2, tmp_path, str(tmp_path))
    assert all("value" in r for r in ranks), ranks
    for r in ranks:
        assert_same(r["value"]["tensors"], one)
        assert_same(r["value"]["sampler"], one)  # padding dropped, shuffled ids kept global
        assert_same(r["value"]["empty_shard"], stats(images(1), distributed="off"))
        assert_same(r["value"]["off"], stats(images(6), distributed="off"))
    assert_same(ranks[0]["value"]["rank0"], one)
    assert ranks[1]["value"]["rank0"] is None


def test_a_rank_that_raises_stops_every_rank_with_a_clear_error(tmp_path):
    ranks = run_ranks(failing, 2, tmp_path, str(tmp_path), "raise", None)
    assert ranks[1]["error"] == "ValueError: item 21 is unreadable"  # item 21 is rank 1's
    assert ranks[0]["error"].startswith("RuntimeError: rank 1 of 2 failed during the statistics "
                                        "pass (ValueError: item 21 is unreadable)")


def test_a_killed_rank_resumes_from_its_checkpoint(tmp_path, one):
    checkpoint = tmp_path / "checkpoint"
    killed = run_ranks(failing, 2, tmp_path / "killed", str(tmp_path), "kill", str(checkpoint))
    assert killed[1] == {"exitcode": -signal.SIGKILL}
    assert "error" in killed[0]  # the peer is gone: an error, not a hang
    assert sorted(p.name for p in checkpoint.iterdir() if not p.name.startswith(".")) == [
        "statistics.rank0-of-2.pt", "statistics.rank1-of-2.pt"]
    ranks = run_ranks(resumed, 2, tmp_path / "resumed", str(tmp_path), str(checkpoint))
    for r in ranks:
        assert_same(r["value"], one)
    assert not list(checkpoint.glob("*.pt"))  # removed once the pass completed
