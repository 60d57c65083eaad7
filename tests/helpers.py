"""Small builders shared by several test files (imported as ``from helpers import ...``)."""

import torch

from notebookcarto import ActivationStats, Atlas


def atlas_from_aggregation(aggregation: dict, prefix: str = "class ") -> Atlas:
    """An atlas without a model: Summit's A per layer ({layer: (classes, channels)}), classes
    named ``f"{prefix}{i}"``."""
    k = next(iter(aggregation.values())).shape[0]
    stats = ActivationStats(num_classes=k)
    stats.add_classes(k, with_accuracy=False)
    for name, a in aggregation.items():
        stats.add_layer(name, a.shape[1], (1, 1))
        stats.layers[name].aggregation.counts[:] = torch.as_tensor(a)
    return Atlas(stats, class_names=[f"{prefix}{i}" for i in range(k)])
