"""Example patches and the Monitor on two gloo processes equal one process: patches of a data
set split unevenly and of a shuffled DistributedSampler loader, the result on rank 0 only, and a
monitor of a DDP model whose series only rank 0 writes."""

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from helpers import run_ranks
from notebookcarto import Atlas, collect_stats
from notebookcarto.analyses import Influence, example_patches
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.models import PlaygroundCNN
from notebookcarto.monitor import Monitor, Series

LAYERS = ["block1", "block2", "block3", "block4"]
N = 45  # odd: rank 0 reads 23 images, rank 1 22


def model():
    torch.manual_seed(0)
    return PlaygroundCNN(num_classes=8).eval()


def data():
    return ConceptPlayground(n=N, size=32, seed=2)


def atlas(net, playground):
    stats = collect_stats(net, playground, LAYERS, top_n=6, batch_size=8, progress=False,
                          distributed="off")
    return Atlas(stats, class_names=playground.classes)


def patches(net, book, source, **options):
    out = example_patches(book, net, source, n_patches=4, size=12, batch_size=5,
                          progress=False, **options)
    return None if out is None else {"patches": out.patches, "images": out.images,
                                     "values": out.values, "heatmaps": out.heatmaps}


def monitored(net, folder):
    """Snapshots of steps 0 and 2 (the weights scaled in between): (statistics as a state dict,
    the influence counts of the attribution graphs) each."""
    probe = data().tensors()
    monitor = Monitor(folder, probe, LAYERS, every=2, top_n=5, batch_size=4, background=False,
                      graphs=[0])
    snaps = []
    for step in range(3):
        snap = monitor.observe(net, step)
        if snap is not None:
            snaps.append(snapshot(snap.atlas))
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.9)
    monitor.close()
    return snaps


def snapshot(book):
    return book.stats.state_dict(), book.get(Influence).to_section()["arrays"]


def cases(rank, folder):
    """Every case of one spawned run, on this rank."""
    net, playground = model(), data()
    book = atlas(net, playground)
    x, y = playground.tensors()
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=1)  # pads 45 to 46
    loader = DataLoader(TensorDataset(x, y), batch_size=4, sampler=sampler)
    ddp = DistributedDataParallel(model())
    series = f"{folder}/series-rank{rank}"
    return {"dataset": patches(net, book, playground),
            "sampler": patches(net, book, loader),
            "rank0": patches(net, book, playground, distributed="rank0"),
            "monitor": monitored(ddp, series),
            "written": Series(series).steps() if rank == 0 else None}


def assert_same_patches(a, b):
    assert np.array_equal(a["patches"], b["patches"])
    assert np.array_equal(a["images"], b["images"])
    assert np.array_equal(a["values"], b["values"], equal_nan=True)
    diff = np.abs(a["heatmaps"].astype(int) - b["heatmaps"].astype(int))
    assert diff.max() <= 1  # other batches: float maps equal up to rounding


def assert_same_stats(a, b):
    assert a["config"]["n_images"] == b["config"]["n_images"]
    assert a["tensors"].keys() == b["tensors"].keys()
    for key, value in a["tensors"].items():
        other = b["tensors"][key]
        if value.is_floating_point():
            torch.testing.assert_close(value, other, rtol=1e-6, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, other), key


@pytest.fixture(scope="module")
def one():
    net, playground = model(), data()
    return patches(net, atlas(net, playground), playground)


def test_two_processes_equal_one(tmp_path, one):
    ranks = run_ranks(cases, 2, tmp_path, str(tmp_path))
    assert all("value" in r for r in ranks), ranks
    for r in ranks:
        assert_same_patches(r["value"]["dataset"], one)
        assert_same_patches(r["value"]["sampler"], one)  # shuffled shards, ids kept global
    assert_same_patches(ranks[0]["value"]["rank0"], one)
    assert ranks[1]["value"]["rank0"] is None

    alone = monitored(model(), tmp_path / "alone")
    assert ranks[0]["value"]["written"] == [0, 2] == Series(tmp_path / "alone").steps()
    assert not (tmp_path / "series-rank1").exists()  # rank 1 never touches its folder
    on_disk = Series(tmp_path / "series-rank0")
    for r in ranks:
        assert len(r["value"]["monitor"]) == 2
        for step, (snap, expected) in enumerate(zip(r["value"]["monitor"], alone)):
            for got in (snap, snapshot(on_disk.load(2 * step))):
                assert_same_stats(got[0], expected[0])
                assert got[1].keys() == expected[1].keys()
                assert all(np.array_equal(got[1][key], expected[1][key]) for key in got[1])
