"""Batches held back so that the reducers update once per several batches.

A reducer's update is a few dozen small tensor operations whatever the batch size; on a small
network each costs about as much as the work it does, so updating once per several batches
(one larger batch) makes the statistics pass cheaper without changing what it counts. The held
values are bounded (``PENDING_VALUES``), so memory stays independent of the data set's size.
"""

from __future__ import annotations

import torch

from .reducers import LayerBatch

__all__ = ["PENDING_VALUES", "Pending"]

# spatial maxima held (over all layers) before the reducers update: 48 MB with their positions
PENDING_VALUES = 2 ** 22


class Pending:
    """The reduced outputs of the batches not yet given to ``stats``' reducers."""

    def __init__(self, stats, limit: int | None = None):
        self.stats, self.limit = stats, PENDING_VALUES if limit is None else limit
        self.parts: list[tuple[int, dict, torch.Tensor, torch.Tensor | None, object]] = []
        self.held = 0

    def add(self, i: int, reduced: dict, index: torch.Tensor, labels, logits) -> None:
        """Hold batch ``i``: per layer (values, positions), the images' ids, labels and the
        model's output (read only when the statistics count accuracy); update the reducers
        when the held values reach the limit."""
        self.parts.append((i, dict(reduced), index, labels, logits))
        self.held += index.shape[0] * sum(v.shape[1] for v, _ in reduced.values())
        if self.held >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Refuse NaN or inf maxima (naming the first such batch), then update every reducer
        with the held batches as one."""
        if not self.parts:
            return
        parts, self.parts, self.held = self.parts, [], 0
        layers = {name: (_cat([p[1][name][0] for p in parts]), _cat([p[1][name][1] for p in parts]))
                  for name in self.stats.layers}
        _check_finite(layers, parts)
        index = _cat([p[2] for p in parts])
        labels = None if parts[0][3] is None else _cat([p[3] for p in parts])
        for name, (values, positions) in layers.items():
            self.stats.layers[name].update(LayerBatch(values, positions, index, labels))
        if self.stats.accuracy is not None:
            self.stats.accuracy.update(_cat([p[4] for p in parts]), labels)


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _check_finite(layers: dict, parts: list) -> None:
    flags = torch.stack([~torch.isfinite(values).all() for values, _ in layers.values()])
    if not flags.any():
        return
    rows = {name: (~torch.isfinite(values)).any(1) for name, (values, _) in layers.items()}
    first = min(int(bad.nonzero()[0]) for bad in rows.values() if bad.any())
    start = 0
    for i, _, index, _, _ in parts:  # the batch of the first bad row, and its bad layers
        if first < start + len(index):
            names = [name for name, bad in rows.items() if bad[start:start + len(index)].any()]
            raise FloatingPointError(f"batch {i}: layer(s) {names} produced NaN or inf "
                                     "activations; check the inputs and the model's weights")
        start += len(index)
