"""Feature visualisation: VITAL and a Lucent-style baseline, in one API.

``visualize(model, targets, method="vital" | "lucent", data=..., atlas=...)`` makes one image per
target (neurons ``"layer:channel"``, classes ``"class:<k>"``, clusters ``"cluster:<n>"``), many
targets optimised together on the device, and returns a ``FeatureVisualizations`` result for
``atlas.attach``.

- VITAL (Gorgun, Schiele, Fischer, 2025): match the distribution of real images' features
  (``vital``, ``losses``), with LRP relevance for inner neurons (``relevance``, on zennit).
- Baseline: Lucid/Lucent-style unit maximisation (Olah, Mordvintsev, Schubert, "Feature
  Visualization", Distill 2017): Fourier parameterisation, decorrelated colour, transforms
  (``lucent``, ``fourier``, ``jitter``).
"""

from .losses import reference_quantiles, sort_matching, total_variation
from .options import LucentOptions, VitalOptions
from .relevance import MagnitudeSplit, lrp_composite, lrp_relevance, residual_canonizers
from .result import FeatureVisualizations
from .run import visualize
from .space import InputSpace
from .targets import Target, class_targets, cluster_targets, resolve_targets

__all__ = ["FeatureVisualizations", "InputSpace", "LucentOptions", "MagnitudeSplit", "Target",
           "VitalOptions", "class_targets", "cluster_targets", "lrp_composite", "lrp_relevance",
           "reference_quantiles", "residual_canonizers", "resolve_targets", "sort_matching",
           "total_variation", "visualize"]
