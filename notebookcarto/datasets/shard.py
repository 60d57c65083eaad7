"""Which images a process reads when passes run under ``torch.distributed``.

``current_world(distributed)`` tells whether a pass shards its data: with ``"auto"`` (every
pass's default) it does when a process group of two or more processes is initialised
(``torchrun``, or ``torch.distributed.init_process_group``); ``"rank0"`` shards too but leaves the
combined result on rank 0 only; ``"off"`` makes each process read all the data alone.

A sharded pass keeps *global* image ids: rank ``r`` of ``W`` reads ids ``r, r + W, ...`` of a data
set the library reads, or the ids a ``DistributedSampler`` gives it (its padding, the repeats that
make every shard equally long, is dropped, so no image counts twice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DISTRIBUTED", "World", "current_world", "sampler_ids", "shard_ids"]

DISTRIBUTED = ("auto", "rank0", "off")


@dataclass(frozen=True)
class World:
    """This process's place in a distributed pass."""

    rank: int
    size: int
    everywhere: bool = True  # the combined result on every rank (False: on rank 0 only)

    @property
    def keeps_result(self) -> bool:
        return self.everywhere or self.rank == 0


def current_world(distributed: str = "auto") -> World | None:
    """The world a pass shards over, or None for a pass over all the data in this process."""
    if distributed not in DISTRIBUTED:
        raise ValueError(f"distributed must be one of {DISTRIBUTED}, got {distributed!r}")
    if distributed == "off" or not (dist.is_available() and dist.is_initialized()):
        return None
    size = dist.get_world_size()
    return World(dist.get_rank(), size, distributed == "auto") if size > 1 else None


def shard_ids(n_items: int, world: World | None) -> torch.Tensor:
    """The global ids a rank reads of ``n_items`` the library reads itself: ``rank, rank + W,
    ...`` (all of them without a world)."""
    ids = torch.arange(n_items)
    return ids if world is None else ids[world.rank::world.size]


def sampler_ids(sampler, n_items: int, world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids in the order a ``DistributedSampler`` yields them, which of them to keep).

    The sampler pads its shard by repeating ids so that all are equally long: rank ``r``'s
    ``k``-th id is padding when ``r + k * W`` is past the data set's end."""
    if (sampler.num_replicas, sampler.rank) != (world.size, world.rank):
        raise ValueError(f"the loader's DistributedSampler is for rank {sampler.rank} of "
                         f"{sampler.num_replicas} but this process is rank {world.rank} of "
                         f"{world.size}: build it with num_replicas=dist.get_world_size(), "
                         "rank=dist.get_rank() (the defaults)")
    ids = torch.as_tensor(list(iter(sampler)), dtype=torch.long)
    position = world.rank + torch.arange(len(ids)) * world.size
    return ids, position < n_items
