"""Analyses built on an Atlas."""

from .patches import example_patches, image_getter, neuron_patches  # noqa: F401
from .receptive_field import ReceptiveField, receptive_fields  # noqa: F401
from .concepts import describe_concepts, exemplar_concept_shares
