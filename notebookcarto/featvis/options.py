"""The parameters of each method, with the released defaults and how they scale to small inputs.

Every constant of the two optimisations is a field here. Fields left at ``None`` are filled by
``resolve(size, ...)`` from the released value, scaled where the original assumes a larger image:

| field | released | here (``None`` means) |
| --- | --- | --- |
| VITAL ``jitter`` | 30 px at 224 px | ``round(30 * size / 224)`` (4 px at 32 px) |
| VITAL ``lr``, ``init_std`` | 1.0, in ImageNet-normalised pixels | 1.0 times the model's input units per ImageNet-normalised unit (1 for ImageNet-normalised data, 0.226 for [0, 1] pixels) |
| VITAL ``tv_l2`` | classes: 0 (ResNet-50), 0.003 (ViT-L/16); inner neurons: 3e-7 | classes 0.003, inner 3e-4 (see below) |
| VITAL ``l2`` | classes: 0 (ResNet-50); inner neurons: 3e-7 | the same |
| VITAL ``layer_weights`` | classes: 1 per layer; inner: 0.1 for the first, 1 for the rest, 0 for the target's own layer | the same rule over the matched layers |
| Lucent ``pad``, ``jitter``, ``jitter2`` | 12, 8, 4 px at 128 px | ``round(v * size / 128)`` (3, 2, 1 px at 32 px) |

The TV prior: at 224 px a ResNet-50's own first layers suppress pixel noise, and its released
settings have no (classes) or a negligible (3e-7, inner neurons) TV prior. At 32 px a small CNN
leaves the start's high frequencies in place (they barely move its features), and the images
keep a checkerboard of noise. Measured on the playground CNN (600 steps): for classes the
released ViT-L/16 value 0.003 removes it (an independent model recognised 2 of 8 class images
without it, 7 of 8 with it); for inner neurons, whose relevance-weighted loss is far smaller,
0.003 smooths everything away and 3e-4 keeps the exemplars' object parts (activation 0.6-1.0 of
the exemplars' maximum). Pass ``tv_l2=0`` / ``tv_l2=3e-7`` for the released ResNet-50 values.

Sources: VITAL (Gorgun, Schiele, Fischer, 2025), released code adagorgun/VITAL (``class_fvis``,
``inner_fvis``): pixel parameterisation from N(0, 1), Adam (lr 1.0, betas 0.5/0.9), cosine
schedule with 100 warm-up steps, 2000 steps, pixels clamped each step, roll jitter, 50 reference
images. Lucent (greentfrapp/lucent, a PyTorch port of Lucid; Olah, Mordvintsev, Schubert,
"Feature Visualization", Distill 2017): Fourier parameterisation (sd 0.01, 1/f decay),
decorrelated colour, sigmoid, Adam lr 0.05, 512 steps, transforms pad 12 / jitter 8 / scale
0.9-1.1 / rotate +-10 deg / jitter 4.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

__all__ = ["METHODS", "LucentOptions", "VitalOptions", "options_for"]

# Lucid's colour correlation (square root of the ImageNet colour covariance, by SVD).
COLOR_CORRELATION = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


@dataclass
class VitalOptions:
    """VITAL's constants (released defaults; ``None``: see the module docstring).

    Attributes:
        steps, lr, betas, eps: Adam over the pixels, ``steps`` steps (``lr`` in the model's
            input units).
        warmup: linear warm-up steps of the cosine schedule.
        init_std: std of the N(0, std) start in the model's input space.
        jitter: largest roll (px) in each direction, drawn per image and step.
        flip: random horizontal flips (off in the released runs).
        clamp: clamp the pixels to the valid input range after every step.
        n_reference: real images per target (the class's images, or the neuron's top
            exemplars).
        feat_dist: weight of the summed sort-matching loss.
        layer_weights: {layer: weight} of the matched layers, or None (the released rule).
        tv_l1, tv_l2, l2: weights of the total-variation (L1 mean, L2 norm) and the image's L2
            norm priors.
        lrp_eps: LRP stabiliser.
        norm_eps: added to the denominator of the min-max normalisations of relevance.
    """

    steps: int = 2000
    lr: float | None = None
    betas: tuple = (0.5, 0.9)
    eps: float = 1e-8
    warmup: int = 100
    init_std: float | None = None
    jitter: int | None = None
    flip: bool = False
    clamp: bool = True
    n_reference: int = 50
    feat_dist: float = 1.0
    layer_weights: dict | None = None
    tv_l1: float = 0.0
    tv_l2: float | None = None
    l2: float | None = None
    lrp_eps: float = 1e-5
    norm_eps: float = 1e-6

    method = "vital"

    def check(self) -> None:
        _positive(self, "steps", "n_reference")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup must lie in 0..steps-1 ({self.steps - 1}), got "
                             f"{self.warmup}: the cosine schedule needs steps after the warm-up")
        if len(tuple(self.betas)) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in ("tv_l1", "tv_l2", "l2", "feat_dist", "init_std", "lrp_eps", "norm_eps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.jitter is not None and self.jitter < 0:
            raise ValueError(f"jitter must be >= 0 pixels, got {self.jitter}")

    def resolve(self, size: int, unit: float = 1.0) -> "VitalOptions":
        """A copy with the size-dependent fields filled for ``size`` px images whose input
        space has ``unit`` model units per ImageNet-normalised unit."""
        out = dataclasses.replace(self, betas=tuple(float(b) for b in self.betas))
        if out.jitter is None:
            out.jitter = int(round(30 * size / 224))
        if out.lr is None:
            out.lr = 1.0 * unit
        if out.init_std is None:
            out.init_std = 1.0 * unit
        return out

    def priors(self, kind: str) -> tuple[float, float, float]:
        """(tv_l1, tv_l2, l2) for a target of ``kind`` ("class" or an inner kind)."""
        inner = kind != "class"
        tv_l2 = (3e-4 if inner else 3e-3) if self.tv_l2 is None else self.tv_l2
        l2 = (3e-7 if inner else 0.0) if self.l2 is None else self.l2
        return self.tv_l1, tv_l2, l2


@dataclass
class LucentOptions:
    """The Lucent-style baseline's constants (Lucent's defaults; ``None``: scaled by size/128).

    Attributes:
        steps, lr: Adam steps and learning rate.
        sd: std of the initial Fourier coefficients.
        decay_power: the spectrum is scaled by 1 / f**decay_power.
        magic: Lucid's divisor of the inverse FFT ("reduces saturation").
        decorrelate: map the channels through Lucid's colour correlation before the sigmoid.
        pad, pad_value: constant padding (px) and its grey value in [0, 1].
        jitter, jitter2: largest translation (px) before and after scale and rotation.
        scales, angles: the scale factors and rotations (degrees) drawn from.
        color_correlation: the 3x3 colour correlation matrix (normalised by its largest
            column norm before use).
    """

    steps: int = 512
    lr: float = 0.05
    sd: float = 0.01
    decay_power: float = 1.0
    magic: float = 4.0
    decorrelate: bool = True
    pad: int | None = None
    pad_value: float = 0.5
    jitter: int | None = None
    jitter2: int | None = None
    scales: tuple = tuple(1 + (i - 5) / 50.0 for i in range(11))
    angles: tuple = tuple(list(range(-10, 11)) + 5 * [0])
    color_correlation: tuple = field(default=COLOR_CORRELATION)

    method = "lucent"

    def check(self) -> None:
        _positive(self, "steps", "lr", "sd", "magic")
        if not self.scales or not self.angles:
            raise ValueError("scales and angles must each hold at least one value")
        for name in ("pad", "jitter", "jitter2"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 pixels, got {value}")

    def resolve(self, size: int, unit: float = 1.0) -> "LucentOptions":
        """A copy with the pixel constants scaled to ``size`` px (Lucent optimises [0, 1]
        pixels, so ``unit`` does not matter)."""
        out = dataclasses.replace(self, scales=tuple(float(s) for s in self.scales),
                                  angles=tuple(float(a) for a in self.angles),
                                  color_correlation=tuple(tuple(float(v) for v in row)
                                                          for row in self.color_correlation))
        for name, released in (("pad", 12), ("jitter", 8), ("jitter2", 4)):
            if getattr(out, name) is None:
                setattr(out, name, int(round(released * size / 128)))
        return out


METHODS = {"vital": VitalOptions, "lucent": LucentOptions}


def _positive(options, *names) -> None:
    for name in names:
        value = getattr(options, name)
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def options_for(method: str, options=None, **overrides):
    """The options of ``method`` ("vital" or "lucent"): ``options`` (an options object) with
    ``overrides`` applied, checked. Unknown names raise ``TypeError`` naming the closest."""
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), list(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown method {method!r}: choose 'vital' or 'lucent'{hint}")
    cls = METHODS[method]
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise TypeError(f"method={method!r} takes {cls.__name__}, got "
                        f"{type(options).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise TypeError(f"unknown option(s) {unknown} for method={method!r}{hint}. Options: "
                        f"{', '.join(names)}")
    options = dataclasses.replace(options, **overrides)
    options.check()
    return options
