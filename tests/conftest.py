"""Shared pytest fixtures. Builders shared by several test files are in helpers.py."""

from pathlib import Path

import pytest

from helpers import shared_folder


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder (CIFAR-10 test JPEGs, the pretrained ResNet-20); skips the test
    when it is absent."""
    folder = shared_folder()
    if folder is None:
        pytest.skip(
            "../shared not found: set NOTEBOOKCARTO_SHARED to the folder holding "
            "data/cifar10-test and models/resnet20-cifar10.th"
        )
    return folder


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory):
    """A playground CNN trained once per test session (about 15 s on 2 cores): (model, train
    set). Deterministic by seed; hold out images with ConceptPlayground(seed=1)."""
    from notebookcarto.datasets import ConceptPlayground
    from notebookcarto.models import load_or_train

    train = ConceptPlayground(n=3000, size=32, seed=0)
    path = tmp_path_factory.mktemp("trained_cnn") / "cnn.pt"
    model, _ = load_or_train(path, train_set=train, epochs=8, progress=False)
    return model, train


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared, busy machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
