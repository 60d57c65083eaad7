"""Neuron-influence aggregation (Summit: Hohman, Park, Robinson, Chau, "Summit: Scaling Deep
Learning Interpretability by Visualizing Activation and Attribution Summarizations", IEEE VIS
2019): class-wise counts I[y][j][i] of how often channel i of an earlier layer is among the top
inputs of channel j of a later layer (the top ``top_inputs``; Summit's k = 5).

Two estimators of the per-image influence inf_{i->j}(x), both streamed in one pass over a loader
(``collect_influence``) into ``InfluenceCounts`` reducers (sparse, mergeable, serialisable):

``"conv"`` (Summit's): for layers joined by a convolution with kernel K, inf_{i->j} is the maximum
    over positions of the conv's input map i convolved with the kernel slice K[j, i] alone: no sum
    over inputs, no bias, no activation. It measures how strongly input i alone can drive output j
    somewhere in the image. A 1x1 kernel needs no convolution (K[j, i] times the max, or the min
    for a negative K[j, i], of map i); other kernels run as one grouped convolution (groups =
    input channels; ``backend="torch"``, the default off the CPU) or in a fused compiled loop
    that keeps only running maxima (``backend="numba"``, the default on CPU). Grouped and
    depthwise convolutions (ResNeXt, MobileNet, EfficientNet) join an output only to the inputs
    of its group; the others are never counted.
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
    Inception blocks, as Summit did them (``joins``): the 1x1 branch and the pool branch join
    the block's input to their slices of its concatenated output directly; the 3x3 and 5x5
    branches go through their 1x1 bottleneck, which adds the pairs (input, bottleneck) and
    (bottleneck, block) for the attribution graph's bottleneck edges (weight max over b of
    min(I[j][b], I[b][i]), the top E per channel). Summit skipped the pool branch's max-pool
    (it paired the block's input with the pool branch's 1x1 conv as if nothing were between);
    here the 1x1 conv reads the max-pooled map, per channel, so input channel i's influence is
    that of its own pooled map: the same channels, the values the conv really sees.

``"gradient"`` (for any pair of layers joined by anything: residual blocks, inception modules,
    transformer blocks): inf_{i->j} is the first-order contribution of earlier channel i to
    a_j, the spatial maximum of later channel j: sum over positions q of X_i(q) * d a_j / d X_i(q)
    (activation times gradient, at the argmax of channel j). For a piecewise-linear network this
    splits a_j exactly into its inputs' contributions plus the biases' share. Where the block
    between is local (convolutions, pooling, residual and inception blocks: checked in the
    probe), the block runs again on crops of the earlier map that hold the rows' receptive
    fields, batched, with one backward pass per (image, later channel) row and one forward pass
    per crop that rows share (``local``): the same numbers at a fraction of the cost.
    Elsewhere (transformer blocks, token maps, global pooling) it uses batched vector-Jacobian
    products over the full maps (``torch.autograd.grad(is_grads_batched=True)``),
    chunked over later channels: about one backward pass through the block per later channel.

Both count, per image and later channel j, the top ``top_inputs`` earlier channels, but only
those with a positive influence: Summit's top-k also counted ties at zero (dead maps, dead output
channels).

Every pass keeps to a memory budget (``memory_budget``, default 2 GB, on CPU and GPU alike):
the user's batches are split into parts and the estimators' work into chunks (``budget``); the
plan chosen is reported in ``config["chunking"]``.

Modules: ``estimators`` (the per-image estimators), ``kernel`` (the compiled CPU loop of the
conv estimator), ``local`` (the gradient estimator on crops), ``probe`` (the probe pass),
``joins`` (each pair's joining convs, inception branches and bottlenecks), ``budget`` (the
memory budget and chunking), ``plan`` (planning a pass from the probe), ``run`` (the streaming
pass), ``count`` (``count_influence``, the analysis of an atlas) and ``result`` (its
``Influence`` result). The counts' streaming container, ``InfluenceStats``, and their sparse
form, ``ClassCounts``, live in ``notebookcarto.stats.influence``.
"""

from ...stats.influence import ClassCounts, InfluenceStats
from .budget import DEFAULT_BUDGET, Chunking, parse_budget
from .count import count_influence
from .estimators import CHUNK_ELEMENTS, conv_influence, default_chunk, gradient_influence
from .result import Influence
from .run import ESTIMATORS, collect_influence

__all__ = ["CHUNK_ELEMENTS", "Chunking", "ClassCounts", "DEFAULT_BUDGET", "ESTIMATORS",
           "Influence", "InfluenceStats", "collect_influence", "conv_influence",
           "count_influence", "default_chunk", "gradient_influence", "parse_budget"]
