"""Streaming, mergeable statistics of layer activations, on the model's device."""

from .collect import ActivationStats, LayerStats, collect_stats
from .reducers import (ClassAccuracy, ClassAggregation, ClassMeans, LayerBatch, NeuronMoments,
                       Reducer, TopImages, spatial_max, top_spatial_max)

__all__ = ["ActivationStats", "ClassAccuracy", "ClassAggregation", "ClassMeans", "LayerBatch",
           "LayerStats", "NeuronMoments", "Reducer", "TopImages", "collect_stats", "spatial_max",
           "top_spatial_max"]
from .quantile import QuantileSketch, TopValues  # noqa: F401
from .influence import InfluenceCounts  # noqa: F401
