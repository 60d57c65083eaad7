"""Analyses of an Atlas. Each returns a result; ``atlas.attach(result)`` keeps it.

| analysis | call | result |
| --- | --- | --- |
| example patches | ``example_patches(atlas, model, data)`` | ``Patches`` |
| neuron clusters | ``cluster_neurons(atlas, model, data)`` | ``Clusters`` |
| neuron embedding | ``embed_neurons(atlas)`` | ``Embedding`` |
| influence counts | ``count_influence(atlas, model, data)`` | ``Influence`` |
| attribution graphs | ``attribution_graphs(atlas)`` (needs ``Influence``) | ``AttributionGraphs`` |
| cluster graphs | ``cluster_graphs(atlas)`` (needs ``Clusters``) | ``ClusterGraphs`` |
| class embedding | ``embed_classes(atlas)`` | ``ClassEmbedding`` |
| dissection | ``dissect(model, concept_data, layers)`` | ``Dissection`` |
| dissection gallery | ``dissection_gallery(model, data, dissection)`` | ``DissectionGallery`` |
| exemplar concepts | ``exemplar_concepts(atlas, concept_table, names)`` | ``ExemplarConcepts`` |
"""

from .attribution_graph import (AttributionGraph, AttributionGraphs, GraphOptions,
                                attribution_graph, attribution_graphs, graph_frames)
from .class_embedding import ClassEmbedding, class_similarity, embed_classes
from .cluster_graph import ClusterGraphs, cluster_graph, cluster_graphs
from .clustering import Clusters, cluster_neurons, cluster_table
from .concepts import ExemplarConcepts, describe_concepts, exemplar_concepts
from .dissection import (Dissection, DissectionGallery, cluster_concepts, dissect,
                         dissection_gallery, rotate_channels, summary_figure, unit_gallery)
from .embedding import Embedding, embed_neurons
from .graph_view import graph_layers
from .influence import (Influence, collect_influence, conv_influence, count_influence,
                        gradient_influence)
from .minhash import exact_jaccard_pairs, lsh_clusters, minhash_signatures, s_curve, s_curve_figure
from .patches import (Patches, ReceptiveField, crop_patches, example_patches, image_getter,
                      neuron_patches, receptive_fields)
from .result import Result
from .streams import Streams, residual_streams

__all__ = ["AttributionGraph", "AttributionGraphs", "ClassEmbedding", "ClusterGraphs",
           "Clusters", "Dissection", "DissectionGallery", "Embedding", "ExemplarConcepts",
           "GraphOptions", "Influence", "Patches", "ReceptiveField", "Result", "Streams",
           "attribution_graph", "attribution_graphs", "class_similarity", "cluster_concepts",
           "cluster_graph", "cluster_graphs", "cluster_neurons", "cluster_table",
           "collect_influence", "conv_influence", "count_influence", "crop_patches",
           "describe_concepts", "dissect", "dissection_gallery", "embed_classes",
           "embed_neurons", "exact_jaccard_pairs", "example_patches", "exemplar_concepts",
           "gradient_influence", "graph_frames", "graph_layers", "image_getter", "lsh_clusters",
           "minhash_signatures", "neuron_patches", "receptive_fields", "residual_streams",
           "rotate_channels", "s_curve", "s_curve_figure", "summary_figure", "unit_gallery"]
