"""``visualize``: feature visualisations of many targets, optimised together in batches.

Everything that can be wrong is checked before the first step: the targets, the method and its
options, the references, the layers, the image size. Then the targets are split into batches
that fit a memory budget (one image per target), each batch is optimised on the device with a
progress bar, and the images come back as a ``FeatureVisualizations`` result. Every target draws
its start and its jitter from its own generator (seeded by the run's seed and the target's key),
so a target's image is the same alone and in any batch, and the global RNG is not touched.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import Capture, mappable_layers, model_device, resolve_layers
from ..datasets.items import find_normalization, image_data, model_input
from .lucent import LucentProblem
from .options import options_for
from .references import class_members, reference_ids, target_seed
from .result import FeatureVisualizations
from .session import Session, probe
from .space import InputSpace
from .tap import LayerTap
from .targets import Target, resolve_targets
from .vital import VitalProblem, layer_weights, references_for

if TYPE_CHECKING:
    from ..atlas import Atlas

__all__ = ["visualize"]

# bytes of device memory per image, as a multiple of one forward pass's outputs (the forward
# graph, its gradients, the LRP pass's copies)
COST_FACTOR = {"vital": 8, "lucent": 4}
# reference images per pass on the CPU: larger passes run slower per image there, their LRP
# intermediates no longer in cache (ResNet-20, 1600 exemplars: 10.9 s at 32, 14.5 s at 116)
CPU_REFERENCE_CHUNK = 32


def visualize(model: nn.Module, targets, *, method: str = "vital", data=None,
              atlas: "Atlas | None" = None, references: dict | None = None, labels=None,
              layers=None, options=None, mean=None, std=None, image_size=None,
              seed: int = 0, batch_size: int | None = None, memory_budget: float | None = None,
              device=None, canonizers=None, progress: bool = True,
              **option_values) -> FeatureVisualizations:
    """Feature visualisations of ``targets`` by ``method``.

    Args:
        model: the network; it is left exactly as it was (parameters, modes, hooks, RNG).
        targets: keys (``"layer:channel"``, ``"class:<k>"``, ``"cluster:<n>"``; see
            ``featvis.targets``), e.g. ``class_targets(atlas) + ["layer3.2:7"]``.
        method: "vital" (Gorgun, Schiele, Fischer 2025) or "lucent" (the Lucent-style baseline,
            Olah et al. 2017).
        data: the images (any source ``ImageData`` reads). VITAL's references come from it:
            a class's images (needs labels) and a neuron's top exemplars (ids from ``atlas``,
            which must have been built on this data). Also sets the image size and, through
            its transform's ``Normalize``, the input space.
        atlas: gives the neurons' top exemplars, class names and clusters.
        references: {key: image tensor (n, 3, H, W) or image ids} to use instead.
        labels: the label of every image of ``data`` (else read in one pass when needed).
        layers: the layers VITAL matches (default: the atlas's layers, else
            ``mappable_layers(model)``).
        options: a ``VitalOptions`` / ``LucentOptions``; ``option_values`` override single
            fields (``steps=200``). Every constant has the released default (``options``).
        mean, std: the input normalisation (default: found in ``data``'s transform, else none).
        image_size: (H, W) when there is no ``data`` (the baseline needs no real images).
        seed: the run's seed; each target's generator is seeded by it and the target's key.
        batch_size: at most this many targets per batch (default: as many as ``memory_budget``
            allows); ``batch_size=1`` optimises one target at a time.
        memory_budget: bytes of device memory a batch may use (default: half the free memory
            on CUDA, 2 GiB on CPU).
        device: where to optimise; default: CUDA when available (on a copy of the model; the
            model itself stays where it is), else the model's device.
        canonizers: zennit canonizers for LRP (default: those for the residual blocks the
            library knows; see ``featvis.relevance``).

    Returns:
        ``FeatureVisualizations`` (attach it with ``atlas.attach(result)``).
    """
    options = options_for(method, options, **option_values)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    resolved = resolve_targets(targets, atlas=atlas)
    data = image_data(data, model=model) if data is not None else None
    references = dict(references or {})
    unknown = [k for k in references if k not in {t.key for t in resolved}]
    if unknown:
        raise KeyError(f"references given for {unknown}, which are not among the targets")
    _check_atlas_data(atlas, data, resolved, references)
    space = InputSpace.of((mean, std) if mean is not None or std is not None
                          else find_normalization(data) if data is not None else None)
    size = _image_size(data, references, image_size)
    run_device = _device(model, device)
    run_model = model if model_device(model) == run_device else copy.deepcopy(model).to(run_device)
    matched = _matched_layers(method, layers, atlas, run_model, resolved)
    hooked = list(dict.fromkeys(matched + [t.layer for t in resolved if t.kind != "class"]))
    if not hooked:  # only classes, by the baseline: Capture wants a layer; any one will do
        hooked = [next(name for name, _ in run_model.named_modules() if name)]
    resolve_layers(run_model, hooked)  # unknown layers: closest names, before any work
    options = options.resolve(min(size), space.imagenet_unit())
    ids = _reference_ids(method, resolved, references, options, seed, atlas, data, labels,
                         progress)

    tap = LayerTap()
    with Capture(run_model, hooked, on_output=tap, detach=False, freeze=True) as capture:
        one = _first_image(data, references, size)
        dtype = model_input(run_model) or torch.float32
        order, widths, same_as = probe(capture, tap, hooked, one.to(run_device, dtype))
        session = Session(run_model, capture, tap, order, widths, same_as, space, size,
                          run_device, dtype, lrp_eps=getattr(options, "lrp_eps", 1e-5),
                          canonizers=canonizers)
        _check_channels(resolved, widths)
        matched = [n for n in order if n in matched]
        _check_layer_weights(options, matched)
        weights = ([layer_weights(t, matched, session.position, options) for t in resolved]
                   if method == "vital" else None)
        _check_weights(resolved, weights, matched)
        per_image = _bytes_per_image(capture, tap, hooked, one.to(run_device, dtype)) * \
            COST_FACTOR[method]
        fits = _images_that_fit(per_image, memory_budget, run_device)
        chunk = max(1, min(len(resolved), fits, batch_size or len(resolved)))
        reference_chunk = (min(fits, CPU_REFERENCE_CHUNK) if run_device.type == "cpu"
                           else fits)
        seeds = [target_seed(seed, t.key) for t in resolved]
        order_of_work = sorted(range(len(resolved)),
                               key=lambda i: (resolved[i].kind == "class",
                                              session.position(resolved[i].layer)
                                              if resolved[i].layer else 0))
        outputs = {}
        batches = [order_of_work[s:s + chunk] for s in range(0, len(order_of_work), chunk)]
        for number, batch in enumerate(batches):
            outputs.update(_run_batch(session, method, options, [resolved[i] for i in batch],
                                      batch, [seeds[i] for i in batch], matched, weights,
                                      data, references, ids, reference_chunk, progress,
                                      f"{method} {number + 1}/{len(batches)}"))
    return _result(resolved, outputs, seeds, ids, method, space, options, matched, seed, size)


# ----------------------------------------------------------------------- checks


def _check_atlas_data(atlas, data, targets, references) -> None:
    inner = [t for t in targets if t.kind != "class" and t.key not in references]
    if atlas is None or data is None or not inner:
        return
    n = atlas.stats.n_images
    if data.dataset is not None and len(data) != n:
        raise ValueError(f"the atlas was built on {n} images but data has {len(data)}: the "
                         "top exemplars are ids into the atlas's data, so pass that data")


def _image_size(data, references, image_size) -> tuple[int, int]:
    if data is not None:
        shape = data.first_shape
    else:
        given = [v for v in references.values() if isinstance(v, torch.Tensor)]
        if given:
            shape = tuple(given[0].shape[1:])
        elif image_size is not None:
            h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
            return int(h), int(w)
        else:
            raise ValueError("no image size: pass data=..., references={key: images} or "
                             "image_size=(H, W)")
    if shape[0] != 3:
        raise ValueError(f"images have {shape[0]} channels; feature visualisation makes RGB "
                         "images (3 channels)")
    return int(shape[1]), int(shape[2])


def _device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return model_device(model)


def _matched_layers(method, layers, atlas, model, targets) -> list:
    if method != "vital":
        return []
    if layers is None:
        layers = atlas.layers if atlas is not None else mappable_layers(model)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("VITAL needs layers to match: pass layers=[...] (module paths)")
    return layers


def _check_channels(targets, widths) -> None:
    for t in targets:
        if t.kind == "class":
            continue
        bad = [c for c in t.channels if c >= widths[t.layer]]
        if bad:
            raise KeyError(f"target {t.key!r}: layer {t.layer!r} has {widths[t.layer]} "
                           f"channels (0..{widths[t.layer] - 1})")


def _json(value):
    """Tuples as lists, all the way down (the result's params are saved as JSON)."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def _check_layer_weights(options, matched) -> None:
    given = getattr(options, "layer_weights", None)
    if given is None:
        return
    missing = [n for n in matched if n not in given]
    extra = [n for n in given if n not in matched]
    if missing or extra:
        raise ValueError(f"layer_weights must give a weight to each matched layer {matched}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; not matched: {extra}" if extra else ""))


def _check_weights(targets, weights, matched) -> None:
    if weights is None:
        return
    for t, w in zip(targets, weights):
        if not any(w):
            raise ValueError(f"target {t.key!r}: every matched layer has weight 0 (matched: "
                             f"{matched}). VITAL matches an inner neuron at the layers before "
                             "its own: pass layers= with earlier layers, or "
                             "layer_weights={layer: weight}")


def _reference_ids(method, targets, references, options, seed, atlas, data, labels,
                   progress) -> dict:
    """{key: int64 ids} for the targets whose references are ids (VITAL needs them; the
    baseline measures the reference maximum where they can be had)."""
    n = getattr(options, "n_reference", 50)
    out = {}
    need_labels = any(t.kind == "class" and t.key not in references for t in targets)
    found = None
    if need_labels and (data is not None or labels is not None):
        found = class_members(data, labels, progress=progress)
    elif need_labels and method == "vital":
        class_members(None)  # raises: class references need data
    for t in targets:
        if t.key in references:
            given = references[t.key]
            if not isinstance(given, torch.Tensor):
                out[t.key] = np.asarray(given, dtype=np.int64).reshape(-1)
            continue
        if data is None:
            if method == "vital":
                raise ValueError(f"target {t.key!r}: VITAL matches real images; pass data= "
                                 f"(and atlas=) or references={{{t.key!r}: images}}")
            continue
        if t.kind == "class" and found is None:
            continue
        try:
            out[t.key] = reference_ids(t, n, seed=seed, atlas=atlas, labels=found)
        except ValueError:
            if method == "vital":
                raise
    return out


def _reference_images(data, references, targets, ids, size):
    """Reference images of each target (n, 3, H, W) on the CPU, or None."""
    out = []
    for t in targets:
        given = references.get(t.key)
        if isinstance(given, torch.Tensor):
            images = given
        elif t.key in ids:
            images = data.images(ids[t.key])
        else:
            out.append(None)
            continue
        if tuple(images.shape[1:]) != (3, *size):
            raise ValueError(f"references of {t.key!r} have shape {tuple(images.shape[1:])}, "
                             f"the visualisations {(3, *size)}: give images of one size")
        out.append(images)
    return out


def _first_image(data, references, size) -> torch.Tensor:
    """One image (1, 3, H, W) to probe the model with."""
    if data is not None:
        return data.images([0])
    given = [v for v in references.values() if isinstance(v, torch.Tensor)]
    return given[0][:1] if given else torch.zeros(1, 3, *size)


def _bytes_per_image(capture, tap, layers, x) -> int:
    """Bytes of every module output of one forward pass of one image."""
    total = 0

    def count(module, args, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in capture.model.modules()]
    try:
        tap.want(layers, stop=False)
        with torch.no_grad():
            capture.forward(x)
    finally:
        for h in handles:
            h.remove()
        tap.want(())
    return max(total, 1)


def _images_that_fit(per_image: int, budget, device) -> int:
    """How many images one pass may hold within the memory budget (at least 1)."""
    if budget is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = free / 2
        else:
            budget = 2 * 1024 ** 3
    if budget <= 0:
        raise ValueError(f"memory_budget must be positive, got {budget}")
    return max(1, int(budget // per_image))


# ----------------------------------------------------------------------- one batch


def _run_batch(session, method, options, targets, positions, seeds, matched, weights, data,
               references, ids, chunk, progress, desc) -> dict:
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    images = _reference_images(data, references, targets, ids, session.size)
    if method == "vital":
        refs = references_for(session, targets, images, matched,
                              [weights[p] for p in positions], options, chunk, progress,
                              f"{desc}: references")
        problem = VitalProblem(session, targets, refs, matched, generators, options)
        best = [r.max_activation for r in refs]
    else:
        problem = LucentProblem(session, targets, generators, options)
        best = [_max_activation(session, t, imgs, chunk) for t, imgs in zip(targets, images)]
    bar = tqdm(range(options.steps), desc=desc, disable=not progress, leave=False)
    for i in bar:
        problem.step(i)
        if i % 25 == 0 or i == options.steps - 1:
            bar.set_postfix(loss=f"{float(problem.last_loss.mean()):.4g}")
    final = problem.inputs()
    with torch.no_grad():
        activation = session.activations(final, targets).float().cpu().numpy()
    display = session.space.display(final)
    loss = problem.last_loss.float().cpu().numpy()
    return {p: (display[b], final[b].float().cpu().numpy(), activation[b], best[b], loss[b])
            for b, p in enumerate(positions)}


def _max_activation(session, target, images, chunk) -> float:
    if images is None:
        return math.nan
    best = -math.inf
    with torch.no_grad():
        for start in range(0, images.shape[0], chunk):
            x = images[start:start + chunk].to(session.device, session.dtype)
            best = max(best, float(session.activations(x, [target] * x.shape[0]).max()))
    return best


def _result(targets: list[Target], outputs, seeds, ids, method, space, options, matched, seed,
            size) -> FeatureVisualizations:
    n = len(targets)
    width = max([len(v) for v in ids.values()] + [0])
    reference_ids = np.full((n, width), -1, dtype=np.int64)
    for i, t in enumerate(targets):
        got = ids.get(t.key)
        if got is not None:
            reference_ids[i, :len(got)] = got
    rows = [outputs[i] for i in range(n)]
    params = _json(dataclasses.asdict(options))
    params.update(seed=int(seed), image_size=list(size), layers=list(matched))
    return FeatureVisualizations(
        targets=[t.key for t in targets], kinds=[t.kind for t in targets],
        layers=[t.layer or "" for t in targets], labels=[t.label for t in targets],
        images=np.stack([r[0] for r in rows]), inputs=np.stack([r[1] for r in rows]),
        activation=np.asarray([r[2] for r in rows], np.float32),
        reference_max=np.asarray([r[3] for r in rows], np.float32),
        loss=np.asarray([r[4] for r in rows], np.float32), reference_ids=reference_ids,
        seeds=[int(s) for s in seeds], method=method, space=space.to_json(), params=params)
