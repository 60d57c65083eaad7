"""Resumable passes: the reducers' state saved every N batches, and read back after a crash.

``Checkpoint.open(folder, kind=..., fingerprint=..., every=..., world=...)`` gives a pass its
checkpoint file in ``folder`` (one per pass kind and rank: ``statistics.rank0-of-2.pt``), written
atomically (``notebookcarto.files``), so a process killed at any point leaves the last complete
checkpoint. A pass started again with the same folder continues after the last saved batch and
ends with the result of an uninterrupted run; one whose layers, parameters, model weights, data
size or process count differ is refused before any batch runs. The file is removed when the
pass completes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from torch import nn

from ..datasets.shard import World
from ..files import write_file

__all__ = ["CHECKPOINT_EVERY", "Checkpoint", "Seen", "model_digest"]

CHECKPOINT_EVERY = 100  # batches between checkpoints by default
VERSION = 1


def model_digest(model: nn.Module) -> str:
    """A hash of the model's parameters and buffers (names, shapes, dtypes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Seen:
    """The ids of the images a pass has read so far (a sharded pass's image ranges come from
    them), kept in its checkpoints as the tensor ``"/seen"``."""

    KEY = "/seen"

    def __init__(self, state: dict | None = None):
        self.parts = [] if state is None else [state["tensors"].pop(self.KEY)]

    def add(self, index: torch.Tensor) -> None:
        self.parts.append(index)

    @property
    def ids(self) -> torch.Tensor:
        if len(self.parts) != 1:
            self.parts = [torch.cat([p.cpu() for p in self.parts]) if self.parts
                          else torch.zeros(0, dtype=torch.long)]
        return self.parts[0]

    def into(self, state: dict) -> dict:
        """``state`` (``{"config", "tensors"}``) with the ids added, for a checkpoint."""
        return dict(state, tensors=dict(state["tensors"], **{self.KEY: self.ids}))


class Checkpoint:
    """One pass's checkpoint file; ``restored`` is ``(batches done, state)`` or None."""

    def __init__(self, path: Path, fingerprint: dict, every: int):
        self.path, self.fingerprint, self.every = path, fingerprint, every
        self.restored = self._read() if path.exists() else None

    @classmethod
    def open(cls, folder, *, kind: str, fingerprint: dict, every: int = CHECKPOINT_EVERY,
             world: World | None = None, model: nn.Module | None = None) -> "Checkpoint | None":
        """The checkpoint of a pass, or None when ``folder`` is None (no checkpoints). The
        fingerprint includes ``model``'s digest when given (computed only with a folder)."""
        if folder is None:
            return None
        if model is not None:
            fingerprint = dict(fingerprint, model=model_digest(model))
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive number of batches, got "
                             f"{every!r}")
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"checkpoint={str(folder)!r} is a file: name a folder for "
                                     "the pass's checkpoints")
        folder.mkdir(parents=True, exist_ok=True)
        size = world.size if world is not None else 1
        rank = world.rank if world is not None else 0
        others = [p.name for p in folder.glob(f"{kind}.rank*-of-*.pt")
                  if not p.name.endswith(f"-of-{size}.pt")]
        if others:
            raise ValueError(f"{folder} holds a checkpoint of a {kind} pass by another number of "
                             f"processes ({others[0]}); this run has {size}: resume with as many "
                             "processes, or delete the file to start again")
        fingerprint = dict(fingerprint, kind=kind, processes=size, version=VERSION)
        return cls(folder / f"{kind}.rank{rank}-of-{size}.pt", fingerprint, every)

    def _read(self):
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            mine = json.loads(saved["fingerprint"])
        except Exception as err:
            raise ValueError(f"{self.path} is not a readable pass checkpoint ({err}): delete it "
                             "to start the pass again") from None
        ours = json.loads(json.dumps(self.fingerprint))
        for key in sorted(set(mine) | set(ours)):
            if mine.get(key) != ours.get(key):
                raise ValueError(f"{self.path} was saved by a pass with {key}={mine.get(key)!r} "
                                 f"but this pass has {key}={ours.get(key)!r}: resume with the "
                                 "same model, layers, parameters and data, or delete the file "
                                 "(or choose another checkpoint folder) to start again")
        return saved["batches"], {"config": json.loads(saved["config"]),
                                  "tensors": saved["tensors"]}

    def step(self, batches: int, state) -> None:
        """After ``batches`` batches: save ``state()`` (a ``{"config", "tensors"}`` dict) every
        ``every`` batches."""
        if batches % self.every == 0:
            self.save(batches, state())

    def save(self, batches: int, state: dict) -> None:
        buf = io.BytesIO()
        torch.save({"fingerprint": json.dumps(self.fingerprint), "batches": batches,
                    "config": json.dumps(state["config"]),
                    "tensors": {k: v.detach().cpu() for k, v in state["tensors"].items()}}, buf)
        write_file(self.path, buf.getvalue())

    def finish(self) -> None:
        """The pass completed: its checkpoint is no longer needed."""
        self.path.unlink(missing_ok=True)
