"""The registry of atlas sections: what each analysis stores, checked when a result is attached
and when an atlas is loaded.

A section is ``{"meta": JSON-ready dict, "arrays": {key: numpy array}}``. Its ``Schema`` names
the result type that reads and writes it, the arrays (dtype and shape; dimensions are numbers,
``"neurons"`` and ``"classes"`` of the atlas, other names that must agree within the section,
or ``"*"`` for any) and the meta keys with their JSON types. ``docs/atlas-sections.md`` is
generated from this registry (``markdown()``; a test keeps the two equal).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SCHEMAS", "Array", "AtlasFormatError", "Meta", "Schema", "markdown", "result_type",
           "schema_of"]


class AtlasFormatError(ValueError):
    """The folder is not a readable atlas (missing, corrupt, truncated, from a newer version), or
    a section does not follow its schema."""


@dataclass(frozen=True)
class Array:
    """One array of a section: numpy ``dtype`` ("str" for text) and ``shape``."""

    dtype: str
    shape: tuple
    doc: str = ""
    required: bool = True


@dataclass(frozen=True)
class Meta:
    """One meta key of a section and its JSON type (dict, list, str, int, float, bool)."""

    type: type | tuple
    doc: str = ""
    required: bool = True


_JSON = {dict: "object", list: "list", str: "string", int: "integer", float: "number",
         bool: "bool", type(None): "null"}


@dataclass(frozen=True)
class Schema:
    """The layout of one section, the result type it holds and the call that makes it."""

    name: str
    result: str  # "module:Class", imported when first needed
    call: str
    needs: str
    doc: str
    arrays: dict = field(default_factory=dict)  # key (or pattern with *) -> Array
    meta: dict = field(default_factory=dict)  # key -> Meta

    def check(self, section, atlas) -> None:
        """Raise ``AtlasFormatError`` naming the section when ``section`` does not follow the
        schema for ``atlas`` (its neurons and classes)."""
        where = f"section {self.name!r}"
        if not (isinstance(section, dict) and isinstance(section.get("meta"), dict)
                and isinstance(section.get("arrays"), dict)):
            raise AtlasFormatError(f"{where} must be a dict with a 'meta' dict and an 'arrays' "
                                   "dict")
        meta, arrays = section["meta"], section["arrays"]
        try:
            json.dumps(meta, allow_nan=True)
        except (TypeError, ValueError) as err:
            raise AtlasFormatError(f"{where}: its meta cannot be saved as JSON ({err}); keep "
                                   "meta to dicts, lists, strings, numbers, booleans and None")\
                from None
        for key, spec in self.meta.items():
            if key not in meta:
                if spec.required:
                    raise AtlasFormatError(f"{where}: meta lacks {key!r}")
                continue
            types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
            value = meta[key]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if float in types and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                wanted = " or ".join(_JSON.get(t, t.__name__) for t in types)
                raise AtlasFormatError(f"{where}: meta {key!r} must be {wanted}, got "
                                       f"{type(value).__name__}")
        dims = {"neurons": len(atlas.neuron_ids), "classes": len(atlas.class_names)}
        matched = set()
        for pattern, spec in self.arrays.items():
            keys = ([k for k in arrays if fnmatch.fnmatchcase(k, pattern)] if "*" in pattern
                    else [pattern] if pattern in arrays else [])
            if not keys and spec.required and "*" not in pattern:
                raise AtlasFormatError(f"{where}: array {pattern!r} is missing")
            for key in keys:
                _check_array(where, key, arrays[key], spec, dims)
            matched.update(keys)
        extra = sorted(set(arrays) - matched)
        if extra:
            raise AtlasFormatError(f"{where}: arrays {extra} are not part of the section (it "
                                   f"holds {sorted(self.arrays)})")


def _check_array(where: str, key: str, array, spec: Array, dims: dict) -> None:
    if not isinstance(array, np.ndarray):
        raise AtlasFormatError(f"{where}: array {key!r} is a {type(array).__name__}, not a "
                               "numpy array")
    if array.dtype == object:
        raise AtlasFormatError(f"{where}: array {key!r} has dtype object, which cannot be saved "
                               "without pickle; use numbers or fixed-width text (astype(str))")
    kind_ok = (array.dtype.kind == "U" if spec.dtype == "str"
               else array.dtype == np.dtype(spec.dtype))
    if not kind_ok:
        raise AtlasFormatError(f"{where}: array {key!r} has dtype {array.dtype}, the schema "
                               f"says {spec.dtype}")
    if array.ndim != len(spec.shape):
        raise AtlasFormatError(f"{where}: array {key!r} has shape {array.shape}, the schema "
                               f"says {_shape_text(spec.shape)}")
    for size, dim in zip(array.shape, spec.shape):
        if dim == "*":
            continue
        expected = dim if isinstance(dim, int) else dims.setdefault(dim, size)
        if size != expected:
            raise AtlasFormatError(f"{where}: array {key!r} has shape {array.shape}, the schema "
                                   f"says {_shape_text(spec.shape)} with {dim} = {expected}")


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


_PARAMS = Meta(dict, "the parameters the result was computed with")
_GRAPHS = Meta(dict, "{class name: graph JSON} (see below)")

SCHEMAS: dict[str, Schema] = {s.name: s for s in [
    Schema("exemplar_concepts", "notebookcarto.analyses.concepts:ExemplarConcepts",
           "analyses.exemplar_concepts(atlas, concept_table, concept_names)",
           "image-level concept labels of the atlas's images",
           "which labelled concepts each neuron's top images contain",
           arrays={"shares": Array("float64", ("neurons", "concepts"),
                                   "share of the neuron's top images holding each concept"),
                   "base_rates": Array("float64", ("concepts",),
                                       "share of all images holding each concept")},
           meta={"concepts": Meta(list, "concept names")}),
    Schema("patches", "notebookcarto.analyses.patches:Patches",
           "analyses.example_patches(atlas, model, data)", "the data set the atlas was built on",
           "example patches of every neuron, cropped over its receptive field",
           arrays={"patches": Array("uint8", ("neurons", "n_patches", "size", "size", 3),
                                    "the patches, best first"),
                   "heatmaps": Array("uint8", ("neurons", "n_patches", "size", "size"),
                                     "the neuron's map over each patch, 255 = its best top "
                                     "value", required=False),
                   "values": Array("float32", ("neurons", "n_patches"),
                                   "spatial max of each patch's image (NaN: none)"),
                   "images": Array("int64", ("neurons", "n_patches"),
                                   "image id of each patch (-1: none)")},
           meta={"size": Meta(int), "n_patches": Meta(int), "layers": Meta(list),
                 "input_shape": Meta(list, "(C, H, W) the fields were measured for"),
                 "heatmap_layers": Meta(list), "crop": Meta(str, '"clip" or "pad"'),
                 "fill": Meta((list, type(None)), "null or the [r, g, b] padding"),
                 "params": _PARAMS}),
    Schema("clusters", "notebookcarto.analyses.clustering:Clusters",
           "analyses.cluster_neurons(atlas, model, data)",
           "the data set the atlas was built on (stage 2)",
           "neuron clusters (candidate pairs by MinHash-LSH over top-image sets, a threshold "
           "from the data, Leiden; refined by where neurons fire) and the neurons' residual "
           "streams; adds the columns `cluster` and `stream` (the stream's name, \"\" for none)",
           arrays={"cluster": Array("int64", ("neurons",), "cluster id, -1 for none"),
                   "candidate": Array("int64", ("neurons",), "the stage-1 groups"),
                   "stream": Array("int64", ("neurons",), "residual stream id, -1 for none",
                                   required=False)},
           meta={"params": _PARAMS, "n_clusters": Meta(int),
                 "stages": Meta(list, "the residual stages, each a list of layers; stream ids "
                                "run stage by stage, channel by channel", required=False)}),
    Schema("embedding", "notebookcarto.analyses.embedding:Embedding",
           "analyses.embed_neurons(atlas)", "", "the neuron embedding and its 2-D projection",
           arrays={"vectors": Array("float32", ("neurons", "dim")),
                   "xy": Array("float32", ("neurons", 2)),
                   "snapshot_vectors": Array("float32", ("snapshots", "neurons", "dim")),
                   "snapshot_xy": Array("float32", ("snapshots", "neurons", 2))},
           meta={"params": _PARAMS, "epochs": Meta(list, "the epoch of each snapshot"),
                 "history": Meta(list, "loss per epoch")}),
    Schema("influence", "notebookcarto.analyses.influence:Influence",
           "analyses.count_influence(atlas, model, data)", "labels",
           "Summit's influence counts I of layer pairs",
           arrays={"counts/*": Array("int64", ("classes", "*", "*"),
                                     "`counts/<later>|<earlier>`: (classes, C_later, "
                                     "C_earlier), Summit's I")},
           meta={"pairs": Meta(list, "[[earlier, later], ...]"), "estimator": Meta(str),
                 "top_inputs": Meta(int), "params": _PARAMS}),
    Schema("attribution_graphs", "notebookcarto.analyses.attribution_graph:AttributionGraphs",
           "analyses.attribution_graphs(atlas)", "`influence`",
           "one Summit attribution graph per class", meta={"params": _PARAMS, "graphs": _GRAPHS}),
    Schema("cluster_graphs", "notebookcarto.analyses.cluster_graph:ClusterGraphs",
           "analyses.cluster_graphs(atlas)", "`clusters` (edges from `influence` if present)",
           "one graph of neuron clusters per class", meta={"params": _PARAMS,
                                                           "graphs": _GRAPHS}),
    Schema("class_embedding", "notebookcarto.analyses.class_embedding:ClassEmbedding",
           "analyses.embed_classes(atlas)", "labels",
           "Summit's class embedding per layer and the class similarity",
           arrays={"xy": Array("float32", ("layers", "classes", 2)),
                   "similarity": Array("float32", ("classes", "classes"),
                                       "cosine of the classes' count vectors in A over "
                                       "`similarity_layers`")},
           meta={"layers": Meta(list), "params": _PARAMS,
                 "similarity_layers": Meta(list, "the layers of the similarity (default the "
                                           "deepest; absent: all of `layers`)",
                                           required=False)}),
    Schema("dissection", "notebookcarto.analyses.dissection:Dissection",
           "analyses.dissect(model, concept_data, atlas.layers)", "concept data",
           "Network Dissection of some layers; adds the columns `concept`, `category`, `iou`",
           arrays={"thresholds/*": Array("float32", ("*",), "per layer: T_k of every unit"),
                   "intersection/*": Array("int64", ("*", "concepts"), "per layer: I"),
                   "area/*": Array("int64", ("*", "categories"), "per layer: A per category"),
                   "top_images/*": Array("int64", ("*", "top_n"), "per layer: top image ids"),
                   "top_values/*": Array("float32", ("*", "top_n"),
                                         "per layer: their spatial maxima"),
                   "ground": Array("int64", ("concepts",), "G: pixels of each concept")},
           meta={"layers": Meta(list), "concepts": Meta(list),
                 "concept_categories": Meta(list), "categories": Meta(list),
                 "params": _PARAMS}),
    Schema("dissection_gallery", "notebookcarto.analyses.dissection:DissectionGallery",
           "analyses.dissection_gallery(model, concept_data, dissection)", "`dissection`",
           "top images of dissected units with their masks overlaid",
           arrays={"images/*": Array("uint8", ("*", "n_images", "height", "width", 3),
                                     "per layer: the overlays"),
                   "image_ids/*": Array("int64", ("*", "n_images"), "per layer: image ids "
                                                                       "(-1: none)")},
           meta={"layers": Meta(list), "params": _PARAMS}),
    Schema("explanation", "notebookcarto.explain.result:Explanation",
           "explain.explain(model, data, images, atlas=atlas)",
           "the model and the data the atlas was built on (`dissection`, `clusters` label "
           "the units)",
           "explanations of single predictions for chosen images: I-GOS / iGOS++ masks and "
           "other heatmaps, their deletion and insertion curves, and the units of one layer "
           "that carried each prediction",
           arrays={"image_ids": Array("int64", ("images",), "image ids in the atlas's data"),
                   "targets": Array("int64", ("images",), "the class explained"),
                   "labels": Array("int64", ("images",), "the data's label (-1: none)"),
                   "predictions": Array("int64", ("images",), "the model's class"),
                   "probabilities": Array("float32", ("images",),
                                          "softmax of the target on the whole image"),
                   "images": Array("uint8", ("images", "height", "width", 3),
                                   "the images as shown"),
                   "saliency/*": Array("float32", ("images", "*", "*"),
                                       "`saliency/<method>`: higher = more salient, any "
                                       "resolution (mask methods: 1 - mask on its cells; "
                                       "upsample with aligned corners)"),
                   "fractions": Array("float32", ("steps",),
                                      "share removed / inserted at each step"),
                   "deletion/*": Array("float32", ("images", "steps"),
                                       "`deletion/<method>`: target probability per step"),
                   "insertion/*": Array("float32", ("images", "steps"),
                                        "`insertion/<method>`: target probability per step"),
                   "deletion_auc/*": Array("float32", ("images",), "trapezoid AUC (lower is "
                                                                   "better)"),
                   "insertion_auc/*": Array("float32", ("images",), "trapezoid AUC (higher "
                                                                    "is better)"),
                   "units/channels": Array("int64", ("images", "units"),
                                           "top units of `layer`, best first (-1: none)",
                                           required=False),
                   "units/neurons": Array("str", ("images", "units"), "their neuron ids",
                                          required=False),
                   "units/contributions": Array("float32", ("images", "units"),
                                                "gradient x activation for the target",
                                                required=False),
                   "units/maps": Array("float32", ("images", "units", "*", "*"),
                                       "their activation maps", required=False),
                   "units/thresholds": Array("float32", ("images", "units"),
                                             "map level above which is the unit's region",
                                             required=False),
                   "units/labels": Array("str", ("images", "units"), "dissection labels",
                                         required=False),
                   "units/clusters": Array("int64", ("images", "units"), "cluster ids",
                                           required=False),
                   "units/cluster_labels": Array("str", ("images", "units"),
                                                 "the clusters' names", required=False),
                   "units/coverage": Array("float32", ("images", "units"),
                                           "share of the `coverage_of` saliency inside the "
                                           "region", required=False),
                   "units/total": Array("float32", ("images",),
                                        "contribution of all the layer's units",
                                        required=False)},
           meta={"methods": Meta(list, "names of the saliency maps"),
                 "mask_methods": Meta(list, "those that are I-GOS masks"),
                 "protocol": Meta(dict, "deletion / insertion protocol (`name`: \"cells\" "
                                        "or \"pixels\")"),
                 "layer": Meta((str, type(None)), "the layer of the units (null: none)"),
                 "coverage_of": Meta((str, type(None)), "the mask method of the coverage"),
                 "params": _PARAMS}),
    Schema("sag", "notebookcarto.explain.sag_result:SAG",
           "explain.structured_attention(model, data, images)",
           "the model and the data the atlas was built on",
           "structured attention graphs of chosen images: the small sets of patches that each "
           "keep the prediction (roots) and the nodes grown from them by deleting patches, "
           "laid out in layers",
           arrays={"image_ids": Array("int64", ("images",), "image ids in the atlas's data"),
                   "targets": Array("int64", ("images",), "the class explained"),
                   "probabilities": Array("float32", ("images",),
                                          "softmax of the target on the whole image"),
                   "images": Array("uint8", ("images", "height", "width", 3),
                                   "the images as shown"),
                   "heuristic": Array("float32", ("images", "grid", "grid"),
                                      "the I-GOS masks that ranked the patches"),
                   "candidates": Array("int64", ("images",), "distinct roots found"),
                   "node_image": Array("int64", ("nodes",), "the image row of each node"),
                   "node_patches": Array("bool", ("nodes", "patches"),
                                         "the patches it shows (row-major on the grid)"),
                   "node_probability": Array("float32", ("nodes",),
                                             "the target's softmax with only them shown"),
                   "node_depth": Array("int64", ("nodes",), "0 for a root"),
                   "positions": Array("float32", ("nodes", 2), "layout x, y in [0, 1]"),
                   "roots": Array("int64", ("roots",), "the root nodes"),
                   "edge_parent": Array("int64", ("edges",), "parent node"),
                   "edge_child": Array("int64", ("edges",), "child node"),
                   "edge_patch": Array("int64", ("edges",), "the patch the child lacks")},
           meta={"grid": Meta(int, "patches per side"), "params": _PARAMS}),
    Schema("xnn", "notebookcarto.explain.xnn_result:XNN",
           "explain.xnn(model, data, layer, target_class, atlas=atlas)",
           "the model and the data the atlas was built on (`dissection` labels the neurons)",
           "XNN x-features of one layer per explained class: the explanation networks, the "
           "x-features' heatmaps on shown images, their nearest neurons and the faithfulness "
           "of the class score rebuilt from them",
           arrays={"classes": Array("int64", ("explained",), "the classes explained"),
                   "encoder": Array("float32", ("explained", "features", "channels"),
                                    "x = relu(encoder @ (a / scale) + encoder_bias)"),
                   "encoder_bias": Array("float32", ("explained", "features")),
                   "decoder": Array("float32", ("explained", "channels", "features"),
                                    "unit-norm bases: a / scale ~ decoder @ x + decoder_bias"),
                   "decoder_bias": Array("float32", ("explained", "channels")),
                   "head": Array("float32", ("explained", "features"),
                                 "logit ~ head . pool(x) + head_bias"),
                   "head_bias": Array("float32", ("explained",)),
                   "image_ids": Array("int64", ("images",), "the images shown"),
                   "images": Array("uint8", ("images", "height", "width", 3),
                                   "the images as shown"),
                   "heatmaps": Array("float32", ("explained", "images", "features", "*", "*"),
                                     "x-feature maps at the layer's resolution"),
                   "scores": Array("float32", ("explained", "images"), "the model's logit"),
                   "reconstructed": Array("float32", ("explained", "images"),
                                          "the logit rebuilt from the x-features"),
                   "neurons": Array("str", ("explained", "features", "top"),
                                    "nearest neurons, largest decoder weight first"),
                   "neuron_weights": Array("float32", ("explained", "features", "top")),
                   "neuron_labels": Array("str", ("explained", "features", "top"),
                                          "their concepts (\"\": none)"),
                   "faithfulness_r2": Array("float32", ("explained",),
                                            "R^2 of the rebuilt logit on held-out images"),
                   "train_r2": Array("float32", ("explained",), "on the training images"),
                   "train_ids": Array("int64", ("*",), "images trained on"),
                   "held_out_ids": Array("int64", ("*",), "images held out"),
                   "history": Array("float32", ("explained", "steps"), "loss per step"),
                   "seconds": Array("float32", ("explained",), "training time per class")},
           meta={"layer": Meta(str), "scale": Meta(float, "root mean square of the "
                                                          "activations' norm over positions"),
                 "pool": Meta(str, '"mean" or "max"'),
                 "capture_seconds": Meta(float, "time reading the activations"),
                 "params": _PARAMS}),
    Schema("feature_visualizations", "notebookcarto.featvis.result:FeatureVisualizations",
           "featvis.visualize(model, targets, data=data, atlas=atlas)",
           "the data the atlas was built on (VITAL's references; `clusters` for cluster "
           "targets)",
           "feature visualisations (VITAL or the Lucent-style baseline) of neurons, classes "
           "and clusters, one image per target",
           arrays={"images": Array("uint8", ("targets", "height", "width", 3),
                                   "the images, de-normalised for display"),
                   "inputs": Array("float32", ("targets", "channels", "height", "width"),
                                   "the images in the model's input space"),
                   "activation": Array("float32", ("targets",),
                                       "the target's activation on its image (spatial max; "
                                       "the logit for a class)"),
                   "reference_max": Array("float32", ("targets",),
                                          "its maximum over the reference images (NaN: none)"),
                   "loss": Array("float32", ("targets",), "the method's final loss"),
                   "reference_ids": Array("int64", ("targets", "n_reference"),
                                          "image ids matched or measured against (-1: none)")},
           meta={"targets": Meta(list, 'keys: neuron ids, "class:<k>", "cluster:<n>" or '
                                       '"cluster:<n>@<layer>" (the graphs\' node ids)'),
                 "kinds": Meta(list, '"neuron", "class" or "cluster" per target'),
                 "layers": Meta(list, 'the layer per target ("" for a class)'),
                 "labels": Meta(list, "text to show per target"),
                 "seeds": Meta(list, "the seed of each target's generator"),
                 "method": Meta(str, '"vital" or "lucent"'),
                 "space": Meta((dict, type(None)), "the input normalisation {mean, std} or null"),
                 "params": _PARAMS}),
]}


def schema_of(name: str) -> Schema | None:
    return SCHEMAS.get(name)


def result_type(name: str) -> type:
    """The result class of section ``name``."""
    module, _, cls = SCHEMAS[name].result.partition(":")
    return getattr(importlib.import_module(module), cls)


def markdown() -> str:
    """docs/atlas-sections.md, generated from ``SCHEMAS``."""
    lines = [
        "# Atlas sections", "",
        "<!-- generated from notebookcarto/atlas/sections.py: notebookcarto.atlas.sections."
        "markdown() -->", "",
        "Each analysis returns a result; `atlas.attach(result)` stores it as a section, "
        "`atlas.get(ResultType)` (or the section name) gives it back, and `Atlas.load` rebuilds "
        "it. A section is JSON-ready `meta` and numpy `arrays`, checked against the schema below "
        "when a result is attached and when an atlas is loaded. Dimensions: `neurons` and "
        "`classes` are the atlas's (`atlas.neuron_ids`, `atlas.class_names` order); other names "
        "agree within a section; `*` is any size.", ""]
    for s in SCHEMAS.values():
        cls = s.result.rpartition(":")[2]
        lines += [f"## `{s.name}`", "", f"{s.doc[0].upper()}{s.doc[1:]}.", "",
                  f"Made by `{s.call}` → `{cls}`" + (f"; needs {s.needs}." if s.needs else "."),
                  ""]
        if s.arrays:
            lines += ["| array | dtype | shape | |", "| --- | --- | --- | --- |"]
            lines += [f"| `{k}` | {a.dtype} | {_shape_text(a.shape)} | "
                      f"{a.doc}{'' if a.required else ' (optional)'} |"
                      for k, a in s.arrays.items()]
            lines.append("")
        lines += ["| meta | type | |", "| --- | --- | --- |"]
        for k, m in s.meta.items():
            types = m.type if isinstance(m.type, tuple) else (m.type,)
            lines.append(f"| `{k}` | {' or '.join(_JSON[t] for t in types)} | {m.doc} |")
        lines.append("")
    lines += [
        "## Graph JSON", "",
        "Attribution and cluster graphs alike:", "", "```json",
        '{"class": "yellow stars on sky", "layers": ["block1", "block2"],',
        ' "nodes": [{"id": "block2:7", "layer": "block2", "count": 120, "pagerank": 0.04,',
        '            "x": 0.3, "y": 1.0, "x_all": 0.25, "shown": true, "members": ["block2:7"],',
        '            "top_inputs": ["block1:3"]}],',
        ' "edges": [{"source": "block1:3", "target": "block2:7", "weight": 57.0,',
        '            "shown": true}]}', "```", "",
        '`id` is a neuron id for neuron nodes and `"cluster:<n>@<layer>"` for cluster nodes (a '
        "cluster spanning several layers has one node per layer; `members` lists the neurons; "
        "cluster graph nodes also carry `kind`, `cluster`, `size` and `active`, edges a `kind`: "
        '`"influence"` or `"coactivation"`); `source` is in the earlier (shallower) layer. '
        "`shown` marks the default view: at most `max_nodes` nodes a layer (by PageRank in "
        "attribution graphs, by `count` in cluster graphs) and `max_edges` edges into a layer "
        "(each shown node's heaviest in-edge first); the nodes and edges with `shown: false` "
        "are kept for a view that shows everything (graphs saved before `shown` existed show "
        "everything). `x`, `y` lay out the default view with deep layers on top (larger `y`); "
        "`x_all` lays out all nodes. On deep networks a graph spans at most `max_layers` layers "
        "(params), stage outputs first.", ""]
    return "\n".join(lines)
