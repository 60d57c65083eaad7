"""Image data: the one adapter every pass reads through, the built-in concept playground,
concept data for dissection, and image folders."""

from .concept_data import (BrodenFolder, ConceptData, ConceptSample, ConceptTensors,
                           PlaygroundConcepts)
from .folder import IMAGENET_MEAN, IMAGENET_STD, cifar10_test, denormalize, image_folder
from .items import ImageData, find_normalization
from .playground import CONCEPTS, PALETTE, Concept, ConceptPlayground, Scene, SceneObject

__all__ = ["CONCEPTS", "IMAGENET_MEAN", "IMAGENET_STD", "PALETTE", "BrodenFolder", "Concept",
           "ConceptData", "ConceptPlayground", "ConceptSample", "ConceptTensors", "ImageData",
           "PlaygroundConcepts", "Scene", "SceneObject", "cifar10_test", "denormalize",
           "find_normalization", "image_folder"]
