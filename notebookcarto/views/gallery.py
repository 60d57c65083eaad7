"""PatchGallery: example patches of the selected neurons or clusters."""

from __future__ import annotations

import traitlets as t

from .base import View

__all__ = ["PatchGallery"]


class PatchGallery(View):
    """The example patches of the selected neurons (a cluster's members when a cluster is
    selected; the hovered neuron while nothing is selected), best first, with the activation
    value (the image's spatial maximum) under each patch. ``heatmap`` overlays the neuron's
    activation map on its patches. At most ``max_neurons`` rows are shown. With feature
    visualisations attached, each neuron's (and a selected cluster's) comes first, beside its
    patches. Its "CSV" button
    downloads the selection (id, layer, channel, cluster, concept, IoU, relevance for the
    selected class); in Python ``view.selection.frame`` is the DataFrame, ``.to_csv()`` the
    CSV.
    """

    _view = t.Unicode("gallery").tag(sync=True)
    heatmap = t.Bool(False).tag(sync=True)
    max_neurons = t.Int(12).tag(sync=True)
    patch_px = t.Int(56).tag(sync=True)

    def __init__(self, atlas, *, heatmap: bool = False, max_neurons: int = 12,
                 patch_px: int = 56, height: int = 360, state=None, data=None):
        if max_neurons < 1 or patch_px < 8:
            raise ValueError(f"max_neurons must be >= 1 and patch_px >= 8, got {max_neurons} "
                             f"and {patch_px}")
        super().__init__(atlas, state=state, data=data, heatmap=heatmap,
                         max_neurons=max_neurons, patch_px=patch_px, height=height)
