"""The statistics pass on torch.distributed: 2 processes against 1, the merge's share, checkpoints.

Model and data as in bench_capture (ResNet-20 on the 10,000 CIFAR-10 test JPEGs when ../shared is
present, else the playground). One run compares, over the same images:
  * 1 process with 2 threads (``distributed="off"``) against 2 gloo processes with 1 thread
    each (each reads and decodes its own shard): ``scaling_2proc`` is the ratio of pass times
    (after a warm-up pass in every process, process start-up excluded);
  * ``merge_share``: the time the 2-process pass spends combining its reducers with collectives
    (agreeing, sharing the config, all-reduce, all-gather and merge, image ranges) over the
    pass time;
  * ``checkpoint_overhead``: the 1-process pass with ``checkpoint=`` at the default interval
    against without, in turn (each first every other round): the median of the rounds'
    ratios;
  * ``identical``: 1 when both the 2-process and the checkpointed results equal the 1-process
    one (counts, ids and A exactly; float32 values to 1e-5).
Also ``s_per_image`` (1 process) and ``merge_s``, the inputs of the README's projection.

Run from the repo root:  .venv/bin/python benchmarks/bench_distributed.py [--rounds 3]
Last line: scaling_2proc=... merge_share=... checkpoint_overhead=... identical=... s_per_image=...
merge_s=...
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import notebookcarto.stats.collect as collect
from bench_capture import setup
from notebookcarto.capture import mappable_layers
from notebookcarto.stats import collect_stats
from notebookcarto.stats.checkpoint import CHECKPOINT_EVERY
from timing import free_port

BATCH = 64


def run_pass(model, data, **options):
    return collect_stats(model, data, mappable_layers(model), batch_size=BATCH, progress=False,
                         **options)


def rank_main(rank: int, port: int, out: str) -> None:
    """One of two processes: a warm-up, then the timed pass and the merge's own time."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=datetime.timedelta(minutes=10))
    model, data, _ = setup()
    run_pass(model, torch.utils.data.Subset(data, range(512)))
    merge = []
    combined = collect.finish_pass

    def timed_combine(*args):
        start = time.perf_counter()
        try:
            return combined(*args)
        finally:
            merge.append(time.perf_counter() - start)

    collect.finish_pass = timed_combine
    dist.barrier()
    start = time.perf_counter()
    stats = run_pass(model, data)
    seconds = time.perf_counter() - start
    if rank == 0:
        torch.save({"state": stats.state_dict(), "seconds": seconds, "merge_s": merge[-1]},
                   Path(out) / "two.pt")
    dist.destroy_process_group()


def same(a: dict, b: dict) -> bool:
    if (a["config"]["n_images"], a["config"]["image_ranges"]) != (
            b["config"]["n_images"], b["config"]["image_ranges"]):
        return False
    for key, value in a["tensors"].items():
        other = b["tensors"][key]
        if value.is_floating_point():
            if not torch.allclose(value, other, rtol=1e-5, atol=1e-5, equal_nan=True):
                return False
        elif not torch.equal(value, other):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    model, data, name = setup()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    run_pass(model, torch.utils.data.Subset(data, range(512)), distributed="off")
    plain, saved, state, checked = [], [], None, None
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):  # in turn, each first every other round
            for kind in (("plain", "saved") if r % 2 == 0 else ("saved", "plain")):
                start = time.perf_counter()
                if kind == "plain":
                    state = run_pass(model, data, distributed="off").state_dict()
                    plain.append(time.perf_counter() - start)
                else:
                    checked = run_pass(model, data, distributed="off",
                                       checkpoint=Path(folder) / "checkpoint").state_dict()
                    saved.append(time.perf_counter() - start)
        mp.spawn(rank_main, args=(free_port(), folder), nprocs=2, join=True)
        two = torch.load(Path(folder) / "two.pt", weights_only=False)
    torch.set_num_threads(threads)
    one_s = statistics.median(plain)
    overhead = statistics.median(b / a for a, b in zip(plain, saved)) - 1
    n = state["config"]["n_images"]
    print(f"{name}: {n} images, batch {BATCH}, checkpoint every {CHECKPOINT_EVERY} batches")
    print(f"1 process x 2 threads: {one_s:.2f} s ({n / one_s:.0f} images/s); with checkpoints "
          f"{statistics.median(saved):.2f} s (medians of {args.rounds} rounds)")
    print(f"2 processes x 1 thread: {two['seconds']:.2f} s ({n / two['seconds']:.0f} images/s), "
          f"of which combining {two['merge_s']:.3f} s")
    identical = int(same(two["state"], state) and same(checked, state))
    figures = dict(scaling_2proc=f"{one_s / two['seconds']:.3f}",
                   merge_share=f"{two['merge_s'] / two['seconds']:.4f}",
                   checkpoint_overhead=f"{overhead:.4f}", identical=identical,
                   s_per_image=f"{one_s / n:.6f}", merge_s=f"{two['merge_s']:.3f}")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
