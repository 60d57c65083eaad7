"""Test oracles: hand-built networks whose answers are known exactly.

``PlantedNet`` has channels that are exact concept detectors of the playground; ``CircuitNet`` a
planted AND circuit (known influence); ``PlantedCopiesNet`` known neuron groups (clusters);
``PlantedDissectNet`` units with known IoU. They check the analyses; the models a user loads are
in ``notebookcarto.models``.
"""

from .circuit import CircuitNet, circuit_model
from .planted import PlantedNet, planted_model
from .planted_copies import PlantedCopiesNet, planted_copies_atlas, planted_copies_model
from .planted_dissect import PlantedDissectNet, planted_dissect_model

__all__ = ["CircuitNet", "PlantedCopiesNet", "PlantedDissectNet", "PlantedNet", "circuit_model",
           "planted_copies_atlas", "planted_copies_model", "planted_dissect_model",
           "planted_model"]
