"""Analyses built on an Atlas."""

from .patches import example_patches, image_getter, neuron_patches  # noqa: F401
from .receptive_field import ReceptiveField, receptive_fields  # noqa: F401
from .concepts import describe_concepts, exemplar_concept_shares
from .attach_patches import attach_patches  # noqa: F401
from .dissection import (Dissection, attach_dissection, attach_gallery, dissect,  # noqa: F401
                         label_clusters, rotate_channels, summary_figure, unit_gallery)
from .minhash import (exact_jaccard_pairs, lsh_clusters, minhash_signatures,  # noqa: F401
                      s_curve, s_curve_figure, s_curve_threshold)
from .clustering import ClusterResult, cluster_neurons, cluster_table, load_clusters  # noqa: F401
from .embedding import EmbeddingResult, embed_neurons, load_embedding  # noqa: F401
from .cluster_graph import cluster_graph, cluster_graphs  # noqa: F401
from .influence import (InfluenceStats, add_influence, collect_influence,  # noqa: F401
                        conv_influence, gradient_influence, influence_counts)
from .attribution_graph import (AttributionGraph, add_attribution_graphs,  # noqa: F401
                                attribution_graph, attribution_graphs, graph_frames)
from .class_embedding import add_class_embedding, class_embedding, class_similarity  # noqa: F401
