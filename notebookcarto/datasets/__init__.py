"""Image data sets: the built-in concept playground and loaders."""

from .playground import CONCEPTS, PALETTE, Concept, ConceptPlayground, Scene, SceneObject
from .folder import IMAGENET_MEAN, IMAGENET_STD, cifar10_test, denormalize, image_folder
from .shared import find_shared, shared_path
from .concept_data import (BrodenFolder, ConceptData, ConceptSample,  # noqa: F401
                           ConceptTensors, PlaygroundConcepts)
