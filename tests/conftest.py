"""Shared pytest fixtures."""

from pathlib import Path

import pytest

from notebookcarto.datasets.shared import find_shared


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder; skips the test when it is absent."""
    folder = find_shared()
    if folder is None:
        pytest.skip(
            "../shared not found: set NOTEBOOKCARTO_SHARED to the folder holding "
            "data/cifar10-test and models/resnet20-cifar10.th"
        )
    return folder
