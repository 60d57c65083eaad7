"""Explanations of single predictions: where the model looked, and which mapped concepts
carried the decision.

| what | call | gives |
| --- | --- | --- |
| I-GOS (Qi, Khorram, Li, AAAI 2020) | ``IGOS(model).attribute(images, target)`` | masks |
| iGOS++ (Khorram, Lawson, Li, CHIL 2021) | ``IGOSPlusPlus(model).attribute(...)`` | masks |
| deletion / insertion (RISE, Petsiuk et al.) | ``deletion_insertion(model, ...)`` | ``Curves`` |
| units behind a prediction (Bau et al.) | ``unit_contributions``, ``rank_units`` | ``Units`` |
| all of it for chosen images | ``explain(model, data, images, atlas=atlas)`` | ``Explanation`` |
| images worth explaining | ``select_images(model, data)`` | DataFrame |
| structured attention graphs (Shitole et al., NeurIPS 2021) | ``structured_attention(model, data, ids)``, ``SAGExplainer(model).attribute(...)`` | ``SAG`` |
| XNN x-features (Qi, Li: "Embedding deep networks into visual explanations") | ``xnn(model, data, layer, target_class)`` | ``XNN`` |

``atlas.attach(explain(...))`` keeps the result (section ``explanation``); ``Explainer`` keeps the
settings for explaining more images on demand (``Explainer.update(atlas, ids)``). Masks are
optimised for many images at once, each with its own mask, step size and noise (the published
code explains one image at a time); see ``igos`` for the released defaults and the defects of
the released code that are fixed here, and ``metrics`` for the two named protocols.
"""

from .baseline import blur, default_mask_size, scaled_blur
from .igos import IGOS, OPTIMIZERS, IGOSPlusPlus, MaskExplainer, make_baselines
from .metrics import (CellProtocol, Curves, PixelProtocol, auc, deletion_insertion,
                      random_heatmaps, to_heatmaps)
from .model import PassCounts
from .result import Explanation
from .run import METHODS, Explainer, explain, select_images
from .sag import SAGExplainer, structured_attention
from .sag_result import SAG
from .units import Units, coverage, rank_units, unit_contributions, unit_labels
from .xfeatures import xnn
from .xnn_result import XNN

__all__ = ["METHODS", "OPTIMIZERS", "CellProtocol", "Curves", "Explainer", "Explanation",
           "IGOS", "IGOSPlusPlus", "MaskExplainer", "PassCounts", "PixelProtocol", "Units",
           "SAG", "SAGExplainer", "structured_attention",
           "XNN", "auc", "blur", "coverage", "default_mask_size", "deletion_insertion",
           "explain", "make_baselines", "random_heatmaps", "rank_units", "scaled_blur",
           "select_images", "to_heatmaps", "unit_contributions", "unit_labels", "xnn"]
