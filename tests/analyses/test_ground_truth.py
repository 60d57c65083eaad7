"""Statistics against a planted model whose channels are exact concept detectors."""

import numpy as np
import pytest
import torch

from notebookcarto import Atlas
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.testing import planted_model


@pytest.fixture(scope="module")
def planted_atlas():
    data = ConceptPlayground(n=800, size=32, seed=3)
    model = planted_model(data)
    images, labels = data.tensors()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=100)
    atlas = Atlas.build(model, loader, [model.layer], class_names=data.classes, top_n=50,
                        progress=False)
    return data, model, atlas


def test_exemplars_of_planted_channels_contain_their_concept(planted_atlas):
    data, model, atlas = planted_atlas
    table = data.concept_table()
    for channel, concept in model.planted.items():
        top = atlas.top_images(f"{model.layer}:{channel}")
        assert len(top) == 50
        has = table[top["image"].to_numpy(), data.concept_names.index(concept)]
        assert has.mean() >= 0.95, (concept, has.mean())


def test_aggregation_ranks_the_planted_class_channel_first(planted_atlas):
    data, model, atlas = planted_atlas
    assert model.class_channel, "the planted model reads no class from a planted channel"
    counts = atlas.aggregation(model.layer).to_numpy()
    for k, channel in model.class_channel.items():
        ranked = np.argsort(-counts[k], kind="stable")
        assert ranked[0] == channel, (data.classes[k], counts[k])
        top = atlas.top_neurons(k, model.layer, n=1)
        assert top.index[0] == f"{model.layer}:{channel}"


def test_argmax_positions_lie_on_the_concept(planted_atlas):
    data, model, atlas = planted_atlas
    for channel, concept in model.planted.items():
        top = atlas.top_images(f"{model.layer}:{channel}").head(10)
        c = data.concept_names.index(concept)
        for image, row, col in top[["image", "row", "col"]].itertuples(index=False):
            mask = data.masks(image)[c]
            # the detector sums a 3x3 window: its argmax lies within one pixel of the colour
            assert mask[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].any()
