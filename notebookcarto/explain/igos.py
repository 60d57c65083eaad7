"""I-GOS and iGOS++: saliency masks optimised along integrated gradients, many images at once.

I-GOS (Qi, Khorram, Li: "Visualizing Deep Networks by Optimizing with Integrated Gradients",
AAAI 2020) finds a mask M in [0, 1]^{s x s} (1 keeps the image, 0 shows a blurred baseline) that
minimises f_c(Phi(I, B, M)) + L1 mean|1 - M| + L2 TV(M): the smallest, smoothest deletion that
destroys the target's softmax score f_c. Its descent direction is the integrated gradient of the
score along the path from the baseline to the masked image (``objective``), with noise at every
path point; the step is found by Armijo backtracking and the mask clamped to [0, 1].

iGOS++ (Khorram, Lawson, Li: "iGOS++: Integrated Gradient Optimized Saliency by Bilateral
Perturbations", CHIL 2021) optimises two masks together, a deletion mask M_d and an insertion
mask M_i whose complement must restore the score from the baseline, and explains with their
product M_d * M_i; the smoothness term is a bilateral TV that lets the mask follow the image's
edges; Nesterov's update (momentum i / (i + 3)) may replace the line search.

Defaults are the released code's (khorrams/IGOS_pp ``args.py``): 28 x 28 cells at 224 px, L1 = 1,
L2 = 20, 20 path points, 15 iterations, step 1000, noise 0.2, Armijo constant 1e-4, decay 0.2,
minimum step 1e-5. L2 and the step were set for 28 x 28 cells; on a coarser mask of s cells the
gradient with respect to one cell grows as (28 / s)^2 (the line search backtracks further) and
the TV of a region of the same relative size as 28 / s, so ``alpha=1000 * (s / 28) ** 2`` and
``l2=20 * s / 28`` keep the released balance (``scaled_weights``); the defaults stay the released
values. The noise is in the units of the model's input: the released 0.2 is in
ImageNet-normalised units, about 0.045 for a model that takes [0, 1] pixels.
Known defects of the released code, done right here: ``main.py`` passes
``iterations=args.ig_iter, ig_iter=args.iterations`` (swapped: it runs 20 iterations of 15 path
points), and never passes ``--opt`` on, so the line search always runs; here ``iterations``,
``points`` and ``optimizer`` mean what they say. Its ``metric()`` mis-sums the last step of the
deletion / insertion AUC and drops the t = 0 point; ``metrics`` does both right. The original
I-GOS (VGG19) started the line search at 200 and divided L1 by 10 at iteration 7 and by 5 at 12;
pass ``alpha=200`` and ``l1_schedule={7: 10, 12: 5}`` for that.

What differs from the published code, by design: many images are explained together, each with
its own mask, its own step size and its own noise generator; the path points of all images run
in shared forward passes chunked to a memory budget; the line search tries ``trials`` step sizes
for all images in one evaluation instead of one after another (the same steps, in the same
order: each image takes the first that satisfies Armijo's condition, or the first step below the
minimum when none does). The noise comes from per-image generators, so a batch gives the same
masks as a loop over its images.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import LayerError
from .baseline import blur, default_mask_size
from .masks import bilateral_tv, tv_norm
from .model import PassCounts, Scorer, check_targets
from .objective import Pass, PathObjective, chunk_rows, image_generators

__all__ = ["IGOS", "IGOSPlusPlus", "MaskExplainer", "OPTIMIZERS", "check_batch", "check_images",
           "make_baselines", "scaled_weights"]

OPTIMIZERS = ("line_search", "nesterov")
RELEASED_SIZE = 28  # cells per side the released L2 and step were set for


def make_baselines(images: torch.Tensor, baseline="blur", *, kernel: int | None = None,
                   sigma: float | None = None) -> torch.Tensor:
    """The baselines of ``images``: "blur" (``baseline.blur``, kernel and sigma scaled with the
    image unless given), "zeros", or a tensor of the images' shape (or one image's)."""
    if isinstance(baseline, str):
        if baseline == "blur":
            return blur(images, kernel, sigma)
        if baseline == "zeros":
            return torch.zeros_like(images)
        raise ValueError(f"baseline must be 'blur', 'zeros' or a tensor, got {baseline!r}")
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"baseline must be 'blur', 'zeros' or a tensor, got "
                        f"{type(baseline).__name__}")
    b = baseline.to(device=images.device, dtype=images.dtype)
    if b.shape == images.shape[1:]:
        b = b.expand_as(images)
    if b.shape != images.shape:
        raise ValueError(f"the baselines have shape {tuple(baseline.shape)} but the images "
                         f"{tuple(images.shape)}: give one baseline per image or one for all")
    return b.contiguous()


def scaled_weights(size: int, l2: float = 20.0, alpha: float = 1000.0) -> dict:
    """``{"l2": ..., "alpha": ...}`` for a mask of ``size`` cells that keep the balance the
    released values (for 28 cells) strike: L2 x s / 28, alpha x (s / 28)^2. Pass them on:
    ``IGOS(model, **scaled_weights(8))``."""
    ratio = size / RELEASED_SIZE
    return {"l2": l2 * ratio, "alpha": alpha * ratio * ratio}


def check_batch(images) -> None:
    """Refuse anything but a non-empty float (B, C, H, W) tensor of images to explain."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or \
            not images.is_floating_point():
        got = (f"{images.dtype} tensor of shape {tuple(images.shape)}"
               if isinstance(images, torch.Tensor) else type(images).__name__)
        raise ValueError(f"images must be a float tensor (B, C, H, W), got {got}")
    if images.shape[0] == 0:
        raise ValueError("no images to explain")


def check_images(images, model: nn.Module, size: int | None) -> tuple[torch.Tensor, int]:
    """``images`` on the model's device and the mask size, checked before any work."""
    check_batch(images)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), images.dtype)
    if images.dtype != dtype:
        raise ValueError(f"the images are {images.dtype} but the model's parameters {dtype}: "
                         f"convert them with images.to({dtype})")
    h, w = images.shape[-2:]
    size = default_mask_size(h, w) if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"the mask size must be an integer >= 2 (cells per side), got {size!r}")
    if size > min(h, w):
        raise ValueError(f"a mask of {size} x {size} cells is larger than the images ({h} x "
                         f"{w} px): choose size <= {min(h, w)} (the default is "
                         f"{default_mask_size(h, w)})")
    return images, size


class MaskExplainer:
    """The optimiser shared by ``IGOS`` and ``IGOSPlusPlus``: parameters in ``__init__``, work
    in ``attribute``; after it, ``masks_`` (n, K, s, s), ``steps_`` (n, iterations: the step each
    image took), ``counts_`` (the inputs the model ran on), ``size_`` and
    ``chunk_`` describe the last call.

    Args:
        model: the classifier; it must return logits (batch, classes); left as it was.
        size: cells per side of the mask (default ``baseline.default_mask_size``: 28 at
            224 px, 8 at 32 px).
        iterations, points: optimisation steps (15) and integrated-gradient path points (20).
        l1, l2: weights of mean|1 - M| (1) and of the TV (20).
        alpha: the line search's first step (1000), also Nesterov's step.
        noise: standard deviation of the Gaussian noise added at every path point, in the
            model's input units (0.2).
        optimizer: "line_search" (Armijo backtracking) or "nesterov".
        armijo, decay, min_step: the line search's constant (1e-4), step factor (0.2) and
            smallest step (1e-5).
        trials: steps tried per evaluation of the line search, for all images at once (4;
            more trials cost forward passes that a step accepted early does not need, fewer
            cost more, smaller passes; 1 is the released one-after-another search).
        l1_schedule: {iteration: divisor} dividing L1 from that iteration on (the original
            I-GOS: ``{7: 10, 12: 5}``).
        baseline: "blur" (``baseline.blur``, kernel and sigma scaled with the image unless
            ``blur_kernel`` / ``blur_sigma``), "zeros" or a tensor.
        seed: seed of the per-image noise generators (with each image's id).
        chunk_size: model inputs per forward pass (default: as many as fit in ``memory``
            bytes, see ``objective.chunk_rows``).
        progress: a progress bar over the iterations.
    """

    name: ClassVar[str] = ""
    passes: ClassVar[tuple] = ()
    n_masks: ClassVar[int] = 1
    grad_scale: ClassVar[float] = 1.0

    def __init__(self, model: nn.Module, *, size: int | None = None, iterations: int = 15,
                 points: int = 20, l1: float = 1.0, l2: float = 20.0, alpha: float = 1000.0,
                 noise: float = 0.2, optimizer: str = "line_search", armijo: float = 1e-4,
                 decay: float = 0.2, min_step: float = 1e-5, trials: int = 4,
                 l1_schedule: dict | None = None, baseline="blur",
                 blur_kernel: int | None = None, blur_sigma: float | None = None,
                 seed: int = 0, chunk_size: int | None = None, memory: int | None = None,
                 progress: bool = False):
        for key, value, low in (("iterations", iterations, 1), ("points", points, 1),
                                ("trials", trials, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        for key, value in (("alpha", alpha), ("min_step", min_step)):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value!r}")
        for key, value in (("l1", l1), ("l2", l2), ("noise", noise), ("armijo", armijo)):
            if not value >= 0:
                raise ValueError(f"{key} must be >= 0, got {value!r}")
        if not 0 < decay < 1:
            raise ValueError(f"decay (the line search's step factor) must be in (0, 1), got "
                             f"{decay!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or
                                       not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got "
                             f"{chunk_size!r}")
        self.model = model
        self.size, self.iterations, self.points = size, iterations, points
        self.l1, self.l2, self.alpha, self.noise = float(l1), float(l2), float(alpha), \
            float(noise)
        self.optimizer, self.armijo, self.decay, self.min_step = optimizer, float(armijo), \
            float(decay), float(min_step)
        self.trials = trials
        self.l1_schedule = {int(k): float(v) for k, v in (l1_schedule or {}).items()}
        self.baseline, self.blur_kernel, self.blur_sigma = baseline, blur_kernel, blur_sigma
        self.seed, self.chunk_size, self.memory, self.progress = seed, chunk_size, memory, \
            progress

    def params(self) -> dict:
        """The parameters, JSON-ready (after ``attribute``: the mask size it used)."""
        return {"method": self.name, "size": getattr(self, "size_", self.size),
                "iterations": self.iterations, "points": self.points, "l1": self.l1,
                "l2": self.l2, "alpha": self.alpha,
                "noise": self.noise, "optimizer": self.optimizer, "armijo": self.armijo,
                "decay": self.decay, "min_step": self.min_step, "trials": self.trials,
                "l1_schedule": {str(k): v for k, v in self.l1_schedule.items()},
                "baseline": self.baseline if isinstance(self.baseline, str) else "tensor",
                "blur_kernel": self.blur_kernel, "blur_sigma": self.blur_sigma,
                "seed": self.seed}

    # -- the regulariser of each method ---------------------------------------------------------
    def regulariser(self, images: torch.Tensor, masks: torch.Tensor, l1: float) -> torch.Tensor:
        """(B,) regularisation of masks (B, K, s, s) over images (B, C, H, W)."""
        raise NotImplementedError

    def explanation(self, masks: torch.Tensor) -> torch.Tensor:
        """The mask that explains, (B, s, s), from the optimised masks (B, K, s, s)."""
        return masks[:, 0]

    # -- the work -------------------------------------------------------------------------------
    def attribute(self, images: torch.Tensor, target, *, baselines=None,
                  image_ids=None) -> torch.Tensor:
        """Masks (n, s, s) explaining why the model gives ``images`` (n, C, H, W) the class
        ``target`` (an int or (n,) ints): low values mark what matters (1 - mask is the
        saliency). ``baselines`` overrides the method's ``baseline``; ``image_ids`` (default
        0..n-1) seed each image's noise, so an image gets the same mask in any batch."""
        images, size = check_images(images, self.model, self.size)
        self.size_ = size
        n = images.shape[0]
        ids = torch.arange(n) if image_ids is None else torch.as_tensor(image_ids).view(-1)
        if ids.shape != (n,):
            raise ValueError(f"{n} images but {ids.numel()} image ids")
        base = make_baselines(images, self.baseline if baselines is None else baselines,
                              kernel=self.blur_kernel, sigma=self.blur_sigma)
        with Scorer(self.model) as scorer:
            x = images.to(scorer.device)
            base = base.to(scorer.device)
            classes = _probe(scorer, x)
            targets = check_targets(target, n, classes).to(scorer.device)
            chunk = self.chunk_size or chunk_rows(scorer, x, memory=self.memory)
            scorer.counts = PassCounts()
            objective = PathObjective(scorer, x, base, targets, self.passes, points=self.points,
                                      noise=self.noise,
                                      generators=image_generators(ids, self.seed, x.device),
                                      chunk=chunk)
            masks, steps = self._optimise(objective, x, size)
            self.counts_ = scorer.counts
        self.masks_, self.steps_, self.chunk_ = masks.detach(), steps, chunk
        return self.explanation(self.masks_)

    def _optimise(self, objective: PathObjective, images: torch.Tensor, size: int):
        n = images.shape[0]
        everyone = torch.arange(n, device=images.device)
        masks = torch.ones(n, self.n_masks, size, size, device=images.device,
                           dtype=images.dtype)
        steps = torch.zeros(n, self.iterations, dtype=torch.float64)
        l1, previous = self.l1, torch.zeros_like(masks)
        for it in tqdm(range(self.iterations), desc=self.name, disable=not self.progress,
                       leave=False):
            l1 /= self.l1_schedule.get(it, 1.0)
            leaf = masks.clone().requires_grad_(True)
            objective(leaf.unsqueeze(1), everyone, grad_scale=self.grad_scale)
            self.regulariser(images, leaf, l1).sum().backward()
            grad = leaf.grad.detach()
            if self.optimizer == "line_search":
                step = self._line_search(objective, images, masks, grad, l1)
                masks = (masks - step.view(-1, 1, 1, 1) * grad).clamp_(0, 1)
            else:  # Nesterov's accelerated gradient, as released
                momentum = it / (it + 3)
                ahead = masks - self.alpha * grad
                masks = (ahead + momentum * (ahead - previous)).clamp_(0, 1)
                previous = ahead
                step = torch.full((n,), self.alpha)
            steps[:, it] = step.double().cpu()
        return masks, steps

    def _line_search(self, objective, images, masks, grad, l1) -> torch.Tensor:
        """Armijo backtracking for every image at once: steps alpha * decay^j, j = 0, 1, ...;
        each image takes the first with loss <= loss(M) - armijo * step * |g|^2, or the first
        step below ``min_step`` when none does (as released). ``trials`` steps are tried per
        evaluation, for all images still searching."""
        n = masks.shape[0]
        everyone = torch.arange(n, device=masks.device)
        with torch.no_grad():
            base = objective(masks.unsqueeze(1), everyone)[:, 0] + \
                self.regulariser(images, masks, l1)
            slope = -self.armijo * grad.pow(2).flatten(1).sum(1)
            candidates = [self.alpha]
            while candidates[-1] >= self.min_step:
                candidates.append(candidates[-1] * self.decay)
            alphas = torch.tensor(candidates, device=masks.device, dtype=masks.dtype)
            last = len(candidates) - 1  # the first step below the minimum: never evaluated
            chosen = alphas[last].expand(n).clone()
            active = everyone
            for g0 in range(0, last, self.trials):
                a = alphas[g0:min(g0 + self.trials, last)]
                trial = (masks[active, None] - a.view(1, -1, 1, 1, 1) * grad[active, None])
                trial = trial.clamp_(0, 1)
                t = trial.shape[1]
                loss = objective(trial, active) + self.regulariser(
                    images[active].repeat_interleave(t, 0), trial.flatten(0, 1), l1).view(-1, t)
                ok = loss <= base[active, None] + a.view(1, -1) * slope[active, None]
                found = ok.any(1)
                first = ok.to(torch.int8).argmax(1)
                chosen[active[found]] = a[first[found]]
                active = active[~found]
                if len(active) == 0:
                    break
        return chosen


def _probe(scorer: Scorer, images: torch.Tensor) -> int:
    """The number of classes, from one forward pass on the first image (which also checks the
    model's output before any work)."""
    with torch.no_grad():
        try:
            logits = scorer.logits(images[:1])
        except LayerError:
            raise
        except RuntimeError as err:
            raise ValueError(f"the model could not run on images of shape "
                             f"{tuple(images.shape[1:])} ({err}): give images of the size and "
                             "channels the model takes") from None
    scorer.counts.forward -= 1
    return logits.shape[1]


class IGOS(MaskExplainer):
    """I-GOS (Qi, Khorram, Li, AAAI 2020): one deletion mask; loss f_c(Phi(I, B, M)) + L1
    mean|1 - M| + L2 TV(M), TV with squared differences on the mask's grid. See the module
    docstring for the parameters and what differs from the released code.

    ``IGOS(model).attribute(images, target)`` -> masks (n, s, s)."""

    name = "igos"
    passes = (Pass("deletion", (0,), 1.0),)
    n_masks = 1

    def regulariser(self, images, masks, l1):
        m = masks[:, 0]
        return l1 * (1 - m).abs().flatten(1).mean(1) + self.l2 * tv_norm(m)


class IGOSPlusPlus(MaskExplainer):
    """iGOS++ (Khorram, Lawson, Li, CHIL 2021): a deletion mask M_d and an insertion mask M_i,
    explained by M_d * M_i.

    Descent direction (as released, ``methods.iGOS_pp``): half the integrated gradients of
    S_del(M_d M_i) - S_ins(M_d M_i) + S_del(M_d) - S_ins(M_i), plus the gradient of
    L1 mean|1 - M_d M_i| + L2 BTV(I, M_d M_i) (``masks.bilateral_tv``, beta = ``tv_beta``,
    sigma = ``bilateral_sigma``); the line search's loss is the same sum, not halved, plus the
    regulariser. Each iteration runs 4 x ``points`` forward and backward passes per image, and
    4 x ``points`` forward passes per line-search trial. ``optimizer="nesterov"`` uses
    Nesterov's update with momentum i / (i + 3) and step ``alpha`` (the released code defines it
    but never passes the choice on).

    ``IGOSPlusPlus(model).attribute(images, target)`` -> masks (n, s, s)."""

    name = "igospp"
    passes = (Pass("deletion", (0, 1), 1.0), Pass("insertion", (0, 1), -1.0),
              Pass("deletion", (0,), 1.0), Pass("insertion", (1,), -1.0))
    n_masks = 2
    grad_scale = 0.5

    def __init__(self, model: nn.Module, *, tv_beta: float = 2.0,
                 bilateral_sigma: float = 0.01, **options):
        super().__init__(model, **options)
        if not bilateral_sigma > 0:
            raise ValueError(f"bilateral_sigma must be > 0, got {bilateral_sigma!r}")
        self.tv_beta, self.bilateral_sigma = float(tv_beta), float(bilateral_sigma)

    def params(self) -> dict:
        return {**super().params(), "tv_beta": self.tv_beta,
                "bilateral_sigma": self.bilateral_sigma}

    def regulariser(self, images, masks, l1):
        m = masks[:, 0] * masks[:, 1]
        return l1 * (1 - m).abs().flatten(1).mean(1) + self.l2 * bilateral_tv(
            images, m, beta=self.tv_beta, sigma=self.bilateral_sigma)

    def explanation(self, masks):
        return masks[:, 0] * masks[:, 1]
