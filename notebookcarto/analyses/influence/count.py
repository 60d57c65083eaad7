"""``count_influence``: Summit's influence counts of an atlas's layer pairs, as an ``Influence``
result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from torch import nn

from .result import Influence
from .run import ESTIMATORS, collect_influence

if TYPE_CHECKING:
    from ...atlas import Atlas

__all__ = ["count_influence"]


def count_influence(atlas: "Atlas", model: nn.Module, data,
                    pairs: Sequence[tuple[str, str]] | None = None, *, estimator: str = "conv",
                    top_inputs: int = 5, progress: bool = True,
                    **options: Any) -> Influence | None:
    """Summit's influence counts I of layer pairs over ``data`` (images with labels, e.g. the
    data the atlas was built on), as an ``Influence`` result.

    ``pairs`` defaults to consecutive atlas layers. ``estimator`` is one of "conv" and
    "gradient" (the graphs read one set of counts); ``top_inputs`` is the number of top earlier
    channels counted per later channel (Summit's k = 5); ``options`` go to
    ``collect_influence`` (``memory_budget``, ``stride``, ``min_influence``, ``fold_bn``,
    ``convs``, ``crops``, ``backend``, ``batch_size``, ...). The class count is the atlas's.

    Over inception blocks (GoogLeNet's nine, as in Summit) the conv estimator adds each
    block's bottleneck pairs (earlier block, ``"<block>.branch2.0"``) and (bottleneck, block),
    likewise for branch3: ``attribution_graphs`` turns them into Summit's bottleneck edges,
    the bottlenecks not being atlas layers. The counts are sparse ``ClassCounts``
    (``counts[y]`` per class, ``np.asarray`` for all); ``params`` holds the pass's joins,
    bottlenecks, how the gradient estimator ran per pair and the chunking its memory budget
    chose. Under ``torch.distributed`` the pass is sharded (``collect_influence``'s
    ``distributed``, ``checkpoint``): every rank gets the counts of all the images, or only rank
    0 with ``distributed="rank0"`` (the others get None).
    """
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"count_influence takes one estimator from {ESTIMATORS}, got "
                         f"{estimator!r}")
    if atlas.stats.num_classes is None:
        raise ValueError("this atlas has no class-wise statistics: build it from data that "
                         "yields (images, labels)")
    if pairs is None:
        if len(atlas.layers) < 2:
            raise ValueError(f"the atlas has one layer ({atlas.layers}): influence needs pairs "
                             "of layers; pass pairs=[(earlier, later), ...]")
        pairs = list(zip(atlas.layers[:-1], atlas.layers[1:]))
    options.setdefault("num_classes", atlas.stats.num_classes)
    if options["num_classes"] != atlas.stats.num_classes:
        raise ValueError(f"num_classes={options['num_classes']} but the atlas has "
                         f"{atlas.stats.num_classes} classes")
    stats = collect_influence(model, data, pairs, estimator=estimator, top_inputs=top_inputs,
                              progress=progress, **options)
    if stats is None:
        return None
    c = stats.config
    params = {key: c[key] for key in ("stride", "min_influence", "fold_bn", "skip_tokens",
                                      "joins", "bottlenecks", "gradient", "chunking",
                                      "n_images", "channels")}
    counts = {(e, l): stats.class_counts(e, l, estimator) for e, l in stats.pairs
              if f"{estimator}/{l}|{e}" in stats.reducers}
    return Influence(counts, estimator, c["top_inputs"], params)
