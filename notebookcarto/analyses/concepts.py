"""Which labelled concepts a neuron's exemplars (its top images) contain."""

from __future__ import annotations

import numpy as np
import pandas as pd


def exemplar_concept_shares(atlas, concept_table: np.ndarray, concept_names) -> pd.DataFrame:
    """Share of each neuron's top images that contain each concept.

    ``concept_table`` is the (images, concepts) boolean table of image-level concept labels of
    the data set the atlas was built on (image ids index its rows). Returns a (neurons x concepts)
    DataFrame of shares in [0, 1]; empty top-N slots are ignored.
    """
    table = np.asarray(concept_table, dtype=bool)
    if table.ndim != 2 or table.shape[1] != len(concept_names):
        raise ValueError(f"concept_table must be (images, {len(concept_names)}) booleans, "
                         f"got shape {table.shape}")
    if table.shape[0] < atlas.stats.n_images:
        raise ValueError(f"concept_table has {table.shape[0]} rows but the atlas saw "
                         f"{atlas.stats.n_images} images: pass the table of the same data set")
    rows = []
    for layer in atlas.stats.layers.values():
        index = layer.top.index.cpu().numpy()
        valid = index >= 0
        present = table[np.where(valid, index, 0)] & valid[..., None]
        rows.append(present.sum(1) / np.maximum(valid.sum(1), 1)[:, None])
    return pd.DataFrame(np.concatenate(rows), index=pd.Index(atlas.neuron_ids, name="neuron"),
                        columns=list(concept_names))


def describe_concepts(shares: pd.Series, base_rates: pd.Series, *, k: int = 3,
                      min_share: float = 0.5) -> list[tuple[str, float]]:
    """The ``k`` concepts most over-represented in one neuron's exemplars (share over base
    rate), among those present in at least ``min_share`` of them: ``[(concept, share), ...]``."""
    lift = shares / base_rates.clip(lower=1e-9)
    keep = (shares >= min_share) & (lift > 1)
    best = lift[keep].sort_values(ascending=False, kind="stable").head(k)
    return [(name, float(shares[name])) for name in best.index]
