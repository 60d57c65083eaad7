"""notebookcarto: map the concepts a vision network has learned."""

__version__ = "0.1.0"

from .atlas import Atlas, AtlasFormatError  # noqa: E402
from .capture import Capture, mappable_layers  # noqa: E402
from .stats import ActivationStats, collect_stats  # noqa: E402

__all__ = ["ActivationStats", "Atlas", "AtlasFormatError", "Capture", "collect_stats",
           "mappable_layers"]
