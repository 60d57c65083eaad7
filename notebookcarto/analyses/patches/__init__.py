"""Example patches: receptive fields, crops of top images around the argmax, and the ``Patches``
result of every neuron (``example_patches``).

NeuroCartography (Park et al., IEEE VIS 2021) cropped a fixed +-15 % of the map around the
argmax; here the crop is the measured receptive field of the layer.
"""

from .crops import crop_patches, image_getter, neuron_patches
from .fields import ReceptiveField, receptive_fields
from .result import Patches
from .run import example_patches

__all__ = ["Patches", "ReceptiveField", "crop_patches", "example_patches", "image_getter",
           "neuron_patches", "receptive_fields"]
