"""Neuron-influence aggregation (Summit: Hohman, Park, Robinson, Chau, "Summit: Scaling Deep
Learning Interpretability by Visualizing Activation and Attribution Summarizations", IEEE VIS
2019): class-wise counts I[y][j][i] of how often channel i of an earlier layer is among the top
inputs of channel j of a later layer (the top ``top_inputs``; Summit's k = 5).

Two estimators of the per-image influence inf_{i->j}(x), both streamed in one pass over a loader
(``collect_influence``) into ``InfluenceCounts`` reducers (mergeable, serialisable):

``"conv"`` (Summit's): for layers joined by a convolution with kernel K, inf_{i->j} is the maximum
    over positions of the conv's input map i convolved with the kernel slice K[j, i] alone: no sum
    over inputs, no bias, no activation. It measures how strongly input i alone can drive output j
    somewhere in the image. ``backend="torch"``: one grouped convolution (groups = input
    channels) on the model's device, chunked over input channels (and images) so memory stays
    below ``chunk_elements``; ``backend="numba"`` (the default on CPU): a fused compiled loop
    computes the same maxima without the C_in x C_out intermediate maps, several times faster
    there.
    The input is what the conv really reads: per-channel operations between the earlier layer
    and the conv (max-pooling, BatchNorm, activations) are included, which the original skipped
    for the max-pools before mixed4a / mixed5a. A BatchNorm right after the conv has its
    per-output-channel scale folded into the kernel (``fold_bn``): a positive scale does not
    change the ranking of inputs, but a negative one turns the maximum into a minimum, which the
    original ignored. ``stride`` subsamples the conv's output positions (the original used 3 to
    save work; default 1 = every position). When the later layer is a residual block, the joining
    conv is the block's first conv: the estimate then ranks inputs of that conv's output channel
    j (a hidden channel of the block with the same index), ignoring the shortcut and the second
    conv; prefer ``"gradient"`` there.

``"gradient"`` (for any pair of layers joined by anything: residual blocks, inception modules,
    transformer blocks): inf_{i->j} is the first-order contribution of earlier channel i to
    a_j, the spatial maximum of later channel j: sum over positions q of X_i(q) * d a_j / d X_i(q)
    (activation times gradient, at the argmax of channel j). For a piecewise-linear network this
    splits a_j exactly into its inputs' contributions plus the biases' share. Computed with
    batched vector-Jacobian products (``torch.autograd.grad(is_grads_batched=True)``, i.e. vmap
    over output channels), chunked over output channels. It costs about one backward pass
    through the block per later channel.

Both count, per image and later channel j, the top ``top_inputs`` earlier channels, but only
those with a positive influence: Summit's top-k also counted ties at zero (dead maps, dead output
channels).

Modules: ``estimators`` (the two per-image estimators), ``kernel`` (the compiled CPU loop of the
conv estimator), ``joins`` (the probe pass that finds each pair's joining conv), ``run`` (the
streaming pass), ``count`` (``count_influence``, the analysis of an atlas) and ``result`` (its
``Influence`` result). The counts' streaming container, ``InfluenceStats``, lives in
``notebookcarto.stats.influence``.
"""

from ...stats.influence import InfluenceStats
from .count import count_influence
from .estimators import CHUNK_ELEMENTS, conv_influence, default_chunk, gradient_influence
from .result import Influence
from .run import ESTIMATORS, collect_influence

__all__ = ["CHUNK_ELEMENTS", "ESTIMATORS", "Influence", "InfluenceStats", "collect_influence",
           "conv_influence", "count_influence", "default_chunk", "gradient_influence"]
