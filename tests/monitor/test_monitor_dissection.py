"""Network Dissection in miniature: the number of detectors of the playground CNN rises as it
trains from scratch (Bau et al. 2017 followed this over training iterations). The curve is
printed (pytest -s shows it)."""

import pytest
import torch

from helpers import train_watched
from notebookcarto.datasets import ConceptPlayground, PlaygroundConcepts
from notebookcarto.models import PlaygroundCNN
from notebookcarto.monitor import Monitor

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = [0, 10, 25, 60]


@pytest.fixture(scope="module")
def timeline(tmp_path_factory):
    train = ConceptPlayground(n=600, size=32, seed=0)
    images, labels = train.tensors()
    probe = ConceptPlayground(n=100, size=32, seed=1)
    torch.manual_seed(0)
    model = PlaygroundCNN(len(train.classes), width=8)
    monitor = Monitor(tmp_path_factory.mktemp("dissection") / "run", probe, every=SCHEDULE,
                      concepts=PlaygroundConcepts(probe), top_n=10)
    train_watched(monitor, model, (images, labels), SCHEDULE[-1], batch_size=32,
                  weight_decay=5e-4)
    return monitor.timeline()


def test_detectors_rise_over_training(timeline):
    detectors = timeline.detectors
    total = detectors.sum(axis=1)
    print("\ndetectors per layer over training (playground CNN, width 8):")
    print(detectors.assign(total=total, accuracy=timeline.overall_accuracy.round(2)).to_string())
    assert detectors.index.tolist() == SCHEDULE
    assert list(detectors.columns) == ["block1", "block2", "block3", "block4"]
    assert total.iloc[-1] >= 2 * total.iloc[0] + 5
    assert total.iloc[-1] >= total.iloc[1]
    deep = detectors[["block3", "block4"]].sum(axis=1)
    assert deep.iloc[-1] > deep.iloc[0]  # the deep layers gain the most
    assert timeline.overall_accuracy.iloc[-1] > timeline.overall_accuracy.iloc[0] + 0.2


def test_unique_concepts_and_categories_follow(timeline):
    assert timeline.unique_concepts.sum(axis=1).iloc[-1] > timeline.unique_concepts.sum(
        axis=1).iloc[0]
    by_category = timeline.detectors_by_category()
    assert set(by_category.columns) == {"colour", "shape", "texture", "background"}
    assert (by_category.sum(axis=1) == timeline.detectors.sum(axis=1)).all()
