"""The Atlas result object and its on-disk format."""

from .atlas import Atlas
from .store import AtlasFormatError

__all__ = ["Atlas", "AtlasFormatError"]
