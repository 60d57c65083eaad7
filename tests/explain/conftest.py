"""Fixtures of the explanation tests: a small playground and models with known answers
(``known_models``)."""

import pytest

from known_models import MeanPlanted
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.testing import circuit_model, planted_model


@pytest.fixture(scope="module")
def playground():
    data = ConceptPlayground(n=48, size=32, seed=3)
    return data, *data.tensors()


@pytest.fixture(scope="module")
def mean_planted(playground):
    data, _, _ = playground
    return MeanPlanted(planted_model(data)).eval()


@pytest.fixture(scope="module")
def circuit(playground):
    data, _, _ = playground
    return circuit_model(data)

