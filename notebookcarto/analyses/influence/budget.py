"""The memory budget of an influence pass and the chunking it implies.

The budget bounds the pass's working memory: the forward pass's activations, the maps kept for
the estimators, autograd's saved tensors (dense gradient estimator only) and the estimators'
intermediate tensors. Fixed costs are outside it: the process, the model, the user's data,
the model's snapshot that every pass takes (``ModelGuard``: a copy of the parameters) and the
counts themselves (sparse: at most ``top_inputs`` entries per image and later channel).

From the probe's measures (the forward pass's peak of live module outputs for one image,
autograd's saved bytes per image, the maps' sizes) the plan takes, per forward pass, as many
images as fill half the budget (the user's batches are split as needed), and gives the rest
to the estimators, chunked within it: images per ``conv_influence`` call and values per
grouped-conv chunk (conv estimator), later channels per batched backward pass (dense gradient
estimator), crops per batched pass (gradient estimator on crops). The plan chosen is
reported as ``Chunking`` (``stats.config["chunking"]``, ``Influence.params["chunking"]``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

__all__ = ["DEFAULT_BUDGET", "Chunking", "format_bytes", "parse_budget"]

DEFAULT_BUDGET = "2GB"
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "kib": 2 ** 10, "m": 2 ** 20,
          "mb": 2 ** 20, "mib": 2 ** 20, "g": 2 ** 30, "gb": 2 ** 30, "gib": 2 ** 30,
          "t": 2 ** 40, "tb": 2 ** 40, "tib": 2 ** 40}
_SMALLEST = 2 ** 20
# the forward pass's measured peak is that of its live module outputs: temporaries inside
# modules (a conv's workspace, an elementwise op's result) add some
_FORWARD_MARGIN = 1.5
# the torch back end's grouped conv holds about three float32 copies of its output at its
# peak on CPU (the output, the copy oneDNN reorders it into, the maxima's input)
_GROUPED_CONV_BYTES = 12


def parse_budget(value) -> int:
    """Bytes of a memory budget: a number of bytes or a text such as ``"2GB"``, ``"512 MB"``,
    ``"1.5GiB"`` (KB, MB, GB and TB are powers of 1024, as in /proc and ``free``)."""
    if isinstance(value, bool):
        raise TypeError(f"memory_budget must be bytes or a text such as '2GB', got {value!r}")
    if isinstance(value, (int, float)):
        nbytes = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        unit = match and match.group(2).lower()
        if not match or unit not in _UNITS:
            raise ValueError(f"memory_budget={value!r}: give bytes or a text such as '2GB', "
                             f"'512MB' or '1.5GiB'")
        nbytes = float(match.group(1)) * _UNITS[unit]
    else:
        raise TypeError(f"memory_budget must be bytes or a text such as '2GB', got "
                        f"{type(value).__name__}")
    if not math.isfinite(nbytes) or nbytes < _SMALLEST:
        raise ValueError(f"memory_budget={value!r} is below 1 MB: give at least '1MB' (the "
                         "default is '2GB')")
    return int(nbytes)


def format_bytes(n: float) -> str:
    """``1536 * 2**20`` -> ``"1.5 GB"``."""
    for unit, size in (("GB", 2 ** 30), ("MB", 2 ** 20), ("KB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


@dataclass
class Chunking:
    """How a pass splits its work to stay within ``budget`` bytes.

    ``images``: images per forward pass (the user's batches are split into parts this big);
    ``per_image``: the estimated bytes per image of the forward pass and the maps kept;
    ``work``: bytes left to the estimators' intermediates; ``conv_images``: images per
    ``conv_influence`` call, by conv call; ``conv_elements``: values per grouped-conv chunk
    (torch back end); ``dense_rows``: later channels per batched backward pass, by later layer
    (dense gradient estimator); ``local_rows``: crops per batched pass, by pair
    ("later|earlier"); ``gradient``: "local" (on crops, with the crop size) or "dense" per
    gradient pair.
    """

    budget: int
    images: int
    per_image: int
    work: int
    conv_images: dict = field(default_factory=dict)
    conv_elements: int = 0
    dense_rows: dict = field(default_factory=dict)
    local_rows: dict = field(default_factory=dict)
    gradient: dict = field(default_factory=dict)

    @classmethod
    def plan(cls, budget: int, batch: int, *, forward: int, kept: int, dense: int,
             conv: dict, dense_row: dict, local_row: dict, channels: dict,
             gradient: dict) -> "Chunking":
        """The plan for ``budget`` bytes and user batches of up to ``batch`` images.

        Per image: ``forward`` (the forward pass's peak), ``kept`` (maps kept for the
        estimators), ``dense`` (autograd's saved tensors and one backward row, 0 without dense
        gradient pairs). Per unit of estimator work: ``conv`` {conv call: bytes per image},
        ``dense_row`` {later layer: bytes per image and later channel}, ``local_row``
        {"later|earlier": bytes per crop}. ``channels`` {later layer or pair key: later
        channels}; ``gradient`` {pair key: description}.
        """
        per_image = int(forward * _FORWARD_MARGIN) + kept + dense
        if per_image > budget:
            raise ValueError(f"memory_budget={format_bytes(budget)} is too small for this model "
                             f"at this input size: one image needs about "
                             f"{format_bytes(per_image)} of working memory (the forward pass "
                             f"{format_bytes(forward * _FORWARD_MARGIN)}, maps kept for the "
                             f"estimators {format_bytes(kept)}, autograd "
                             f"{format_bytes(dense)}). Pass memory_budget="
                             f"'{format_bytes(2 * per_image).replace(' ', '')}' or more")
        images = max(1, min(batch, budget // 2 // max(1, per_image)))
        work = budget - images * per_image
        plan = cls(budget, int(images), per_image, int(work), gradient=dict(gradient))
        # the conv estimator: half the work for its per-image tensors, half for the chunks
        for name, cost in conv.items():
            plan.conv_images[name] = int(max(1, min(images, work // 2 // max(1, cost))))
        plan.conv_elements = int(max(2 ** 10, work // 2 // _GROUPED_CONV_BYTES))
        for name, cost in dense_row.items():
            rows = work // max(1, images * cost)
            plan.dense_rows[name] = int(max(1, min(channels[name], rows)))
        for name, cost in local_row.items():
            rows = work // max(1, cost)
            plan.local_rows[name] = int(max(1, min(images * channels[name], rows, 2 ** 16)))
        return plan

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: budget, images per pass and the estimators' chunks."""
        parts = [f"budget {format_bytes(self.budget)}", f"{self.images} images a pass "
                 f"(about {format_bytes(self.per_image)} each)"]
        if self.conv_images:
            low = min(self.conv_images.values())
            parts.append(f"conv: {low}+ images a call")
        if self.dense_rows:
            parts.append("dense gradient: " + ", ".join(f"{n} channels a backward pass of {k}"
                                                        for k, n in self.dense_rows.items()))
        if self.local_rows:
            parts.append("gradient on crops: " + ", ".join(
                f"{n} crops a pass" for n in sorted(set(self.local_rows.values()))))
        return "; ".join(parts)
