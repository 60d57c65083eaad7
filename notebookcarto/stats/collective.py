"""Combining the reducers of a sharded pass with tensor collectives (``torch.distributed``).

Every rank ran the same pass over its own images; ``combine(reducers, world)`` makes each
reducer hold the statistics of all of them. Counts and sums (a reducer's ``_summed`` state) are
all-reduced; the others (top-k candidates, moments, quantile sketches, sparse counts) are
all-gathered and merged in rank order with the reducer's own ``merge``, so the result is the one
``merge`` gives in one process. All tensors of one dtype travel in one flat buffer: a pass's
combine is a handful of collectives whatever the number of layers. ``agree`` turns a rank's
failure into a clear error on every rank instead of a hang in the next collective.
"""

from __future__ import annotations

import contextlib
import copy
import math
import json
from collections import defaultdict

import torch
import torch.distributed as dist

from ..datasets.shard import World
from .reducers import Reducer

__all__ = ["agree", "combine", "finish_pass", "gather_tensors", "image_ranges", "share_config",
           "sum_tensors", "together"]

MESSAGE_BYTES = 512  # how much of a failed rank's error the others show
MAX_DIMS = 6


def _device() -> torch.device:
    """Where collectives' tensors go: the current GPU for an NCCL-only group, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_tensors(tensors: list[torch.Tensor], world: World) -> list[torch.Tensor]:
    """The element-wise sums of ``tensors`` over the ranks (same shapes on every rank)."""
    out = list(tensors)
    for dtype, members in _by_dtype(tensors).items():
        flat = torch.cat([tensors[i].reshape(-1) for i in members])
        flat = flat.to(_device())
        if world.everywhere:
            dist.all_reduce(flat)
        else:
            dist.reduce(flat, dst=0)
        for i, part in zip(members, flat.split([tensors[i].numel() for i in members])):
            out[i] = part.view(tensors[i].shape).to(tensors[i].device)
    return out


def gather_tensors(tensors: list[torch.Tensor], world: World) -> list[list[torch.Tensor]] | None:
    """Every rank's ``tensors`` (the same count and dtypes on every rank, any shapes), as one list
    per rank; None on ranks other than 0 when the result stays on rank 0."""
    device = _device()
    shapes = torch.full((len(tensors), MAX_DIMS + 1), -1, dtype=torch.long)
    for i, t in enumerate(tensors):
        shapes[i, 0] = t.ndim
        shapes[i, 1:1 + t.ndim] = torch.tensor(t.shape, dtype=torch.long)
    all_shapes = _gather(shapes.to(device), world)
    per_rank = [[None] * len(tensors) for _ in range(world.size)] if all_shapes else None
    for dtype, members in _by_dtype(tensors).items():
        sizes = [[_numel(s[i]) for i in members] for s in all_shapes] if all_shapes else None
        flat = torch.cat([tensors[i].reshape(-1).to(device) for i in members])
        longest = torch.tensor([flat.numel()], device=device)
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
        padded = torch.zeros(int(longest), dtype=flat.dtype, device=device)
        padded[:flat.numel()] = flat
        gathered = _gather(padded, world)
        if gathered is None:
            continue
        for r, buf in enumerate(gathered):
            parts = buf[:sum(sizes[r])].split(sizes[r])
            for i, part in zip(members, parts):
                shape = all_shapes[r][i, 1:1 + int(all_shapes[r][i, 0])].tolist()
                per_rank[r][i] = part.view(shape).to(tensors[i].device)
    return per_rank


def combine(reducers: list[Reducer], world: World) -> None:
    """Make each of ``reducers`` (this rank's, in the same order on every rank) hold the
    statistics of every rank, in place (on rank 0 only when the result stays there)."""
    summed = [r for r in reducers if r._summed]
    merged = [r for r in reducers if not r._summed]
    tensors = [getattr(r, key) for r in summed for key in r._summed]
    totals = iter(sum_tensors(tensors, world)) if tensors else iter(())
    for r in summed:
        for key in r._summed:
            setattr(r, key, next(totals))
    states = [r.state_dict() for r in merged]
    flat = [t for state in states for t in state.values()]
    if not flat:
        return
    per_rank = gather_tensors(flat, world)
    if per_rank is None:
        return
    for j, reducer in enumerate(merged):
        keys = list(states[j])
        start = sum(len(s) for s in states[:j])
        parts = [dict(zip(keys, rank_tensors[start:start + len(keys)]))
                 for rank_tensors in per_rank]
        reducer.load_state_dict(parts[0])
        for part in parts[1:]:
            reducer.merge(copy.copy(reducer).load_state_dict(part))


def finish_pass(what: str, stats, *, empty, reducers, ids: torch.Tensor, offset: int,
                world: World | None, run=None):
    """The end of a pass over ``config["n_images"]`` images from id ``offset``: alone, their id
    range; sharded, agree that every rank finished ``what``, build empty statistics with
    ``empty(config)`` on a rank that read no image (``stats`` None), combine
    ``reducers(stats)`` and set the images of all ranks (``n_images``, ``image_ranges``) from
    this rank's ``ids``. The checkpoint ``run`` (if any) is removed. Returns the statistics, or
    None on the ranks that do not keep the result."""
    if world is None:
        stats.config["image_ranges"] = [[offset, offset + stats.config["n_images"]]]
    else:
        agree(None, what, world)
        config = share_config(None if stats is None else stats.state_dict()["config"], world)
        if stats is None:
            stats = empty(config)
        combine(reducers(stats), world)
        stats.config["n_images"], stats.config["image_ranges"] = image_ranges(ids, offset, world)
    if run is not None:
        run.finish()
    return stats if world is None or world.keeps_result else None


def share_config(config: dict | None, world: World) -> dict:
    """The JSON config of the lowest rank that has one (a rank with an empty shard has none and
    builds its empty reducers from it)."""
    raw = json.dumps(config).encode() if config is not None else b""
    lengths = torch.zeros(world.size, dtype=torch.long, device=_device())
    lengths[world.rank] = len(raw)
    dist.all_reduce(lengths)
    have = [r for r in range(world.size) if lengths[r] > 0]
    if not have:
        raise ValueError("no rank read any image: give the pass at least one image")
    buf = torch.zeros(int(lengths[have[0]]), dtype=torch.uint8, device=_device())
    if world.rank == have[0]:
        buf[:] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(buf.device)
    dist.broadcast(buf, src=have[0])
    return json.loads(bytes(buf.cpu().tolist()).decode())


@contextlib.contextmanager
def together(what: str, world: World | None):
    """A rank's part of a pass: an error raised in it is told to the other ranks (``agree``)
    before it propagates, so they stop with a clear error instead of waiting for this rank."""
    try:
        yield
    except Exception as err:
        if world is not None:
            agree(err, what, world)
        raise


def agree(error: BaseException | None, what: str, world: World) -> None:
    """Tell every rank whether this one finished ``what``; raise on the ranks that did when
    another did not (the failed rank raises its own error after calling this)."""
    note = b"" if error is None else f"{type(error).__name__}: {error}".encode()[:MESSAGE_BYTES]
    mine = torch.zeros(MESSAGE_BYTES + 1, dtype=torch.uint8)
    mine[0] = error is not None
    if note:
        mine[1:1 + len(note)] = torch.frombuffer(bytearray(note), dtype=torch.uint8)
    mine = mine.to(_device())
    everyone = [torch.zeros_like(mine) for _ in range(world.size)]
    dist.all_gather(everyone, mine)
    failed = [(r, bytes(t[1:].cpu().tolist()).rstrip(b"\0").decode(errors="replace"))
              for r, t in enumerate(everyone) if t[0]]
    if failed and error is None:
        rank, message = failed[0]
        raise RuntimeError(f"rank {rank} of {world.size} failed during the {what} pass "
                           f"({message}); this rank stopped too, with nothing combined")


def image_ranges(index: torch.Tensor, offset: int, world: World) -> tuple[int, list]:
    """(images over all ranks, their [start, stop) id ranges) from this rank's ids; refuses an
    image read by two ranks."""
    top = torch.tensor([int(index.max()) + 1 if len(index) else offset], dtype=torch.long,
                       device=_device())
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    marks = torch.zeros(int(top) - offset, dtype=torch.int32, device=_device())
    marks[index.to(marks.device) - offset] = 1
    dist.all_reduce(marks)
    marks = marks.cpu()
    if (marks > 1).any():
        twice = int(torch.nonzero(marks > 1)[0]) + offset
        raise ValueError(f"image {twice} was read by more than one rank: each rank must read its "
                         "own shard (a DistributedSampler, or the data set itself)")
    edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int32), marks,
                                  torch.zeros(1, dtype=torch.int32)]))
    starts, stops = torch.nonzero(edges == 1)[:, 0], torch.nonzero(edges == -1)[:, 0]
    return int(marks.sum()), [[int(a) + offset, int(b) + offset] for a, b in zip(starts, stops)]


def _gather(t: torch.Tensor, world: World) -> list[torch.Tensor] | None:
    if world.everywhere:
        out = [torch.empty_like(t) for _ in range(world.size)]
        dist.all_gather(out, t)
        return out
    out = [torch.empty_like(t) for _ in range(world.size)] if world.rank == 0 else None
    dist.gather(t, out, dst=0)
    return out


def _by_dtype(tensors: list[torch.Tensor]) -> dict:
    groups = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[t.dtype].append(i)
    return groups


def _numel(row: torch.Tensor) -> int:
    return math.prod(row[1:1 + int(row[0])].tolist())
