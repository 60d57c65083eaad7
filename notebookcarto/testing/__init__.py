"""Test oracles: hand-built networks whose answers are known exactly.

``PlantedNet`` has channels that are exact concept detectors of the playground; ``CircuitNet`` a
planted AND circuit (known influence); ``PlantedCopiesNet`` known neuron groups (clusters);
``PlantedDissectNet`` units with known IoU; ``PlantedRoutesNet`` a class reached by either of two
concepts (two SAG roots); ``PlantedSumNet`` a class score that is a sum of three concept channels
(XNN's x-features). They check the analyses; the models a user loads are
in ``notebookcarto.models``.
"""

from .circuit import CircuitNet, circuit_model
from .planted import PlantedNet, planted_model
from .planted_copies import PlantedCopiesNet, planted_copies_atlas, planted_copies_model
from .planted_dissect import PlantedDissectNet, planted_dissect_model
from .planted_routes import PlantedRoutesNet, routes_images
from .planted_sum import PlantedSumNet, planted_sum_data

__all__ = ["CircuitNet", "PlantedCopiesNet", "PlantedDissectNet", "PlantedNet",
           "PlantedRoutesNet", "PlantedSumNet", "circuit_model", "planted_copies_atlas",
           "planted_copies_model", "planted_dissect_model", "planted_model", "planted_sum_data",
           "routes_images"]
