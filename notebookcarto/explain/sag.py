"""Structured attention graphs (SAG): the several small sets of image patches that each suffice
for a prediction, and how the prediction falls as patches leave them.

Shitole, Li, Kahng, Tadepalli, Fern: "One Explanation is Not Enough: Structured Attention Graphs
for Image Classification", NeurIPS 2021 (code: viv92/structured-attention-graphs). A saliency
map (I-GOS) shows one region even when the model has several routes to its answer; a SAG shows
each route. The image is cut into a grid of patches (7 x 7 at 224 px) and shown on a baseline
(black); a set of patches is *inserted* when the image shows there and the baseline elsewhere.

1. Heuristic: an I-GOS deletion mask on the patch grid with 2 iterations (``igos.IGOS``); low
   values mark the patches that matter.
2. Beam search over insertion sets from the empty set: every beam's successors add one of the
   ``successors`` (15) patches it lacks with the lowest heuristic values (ties: patch order);
   all successors are ranked by the target's softmax probability; a successor reaching
   ``root_threshold`` (90 %) of the full image's probability becomes a candidate root after
   greedy removal of the patches it does not need, the next ``beam_width`` (3) others are the
   new beams. The search stops when more than ``search_roots`` (10) distinct roots are found,
   or no beam is left.
3. Up to ``max_roots`` (3) roots: the largest set of candidates that pairwise share at most
   ``max_overlap`` (1) patch (exact search over the candidates; ties: the highest total
   probability, then the first found).
4. Each root grows children by deleting one of its first ``children`` (3) patches (row-major)
   at a time; a node grows children while its probability relative to the full image's stays
   above ``node_threshold`` (40 %), and every child is kept, as a leaf when it falls below.

What differs from the released code, by design or as a fix:

- The released ``beamSearch_get_topk_masks_roots`` appends a beam and then breaks on
  ``len(mask_list) > beam_width``, so it keeps beam_width + 1 beams; here exactly
  ``beam_width`` beams are kept.
- Speed: the released code runs one forward pass per candidate set, one image at a time (40 to
  210 s per image, median about 77 s, VGG19 on a GPU). Here each step of the search, of the
  greedy removal and of the tree's growth evaluates every candidate of every beam of every
  image in shared forward passes (chunked to a memory budget), and the heuristic masks of all
  images are optimised together. ``SAGExplainer.attribute_sequential`` is the same search one
  image and one candidate at a time, scoring a set again whenever met, as released (for tests
  and the benchmark); both give the same graphs when the model scores an input the same in any
  batch.
- Patches are hard: a patch is its block of pixels (the released code upsamples the 7 x 7 set
  bilinearly, so a patch bleeds into its neighbours). Successors shared by two beams are
  evaluated and kept once. The greedy removal deletes, each round, the patch whose deletion
  keeps the highest probability, while it stays at or above the threshold (the released code
  scans patches in order, which cannot be batched). A set reaching the threshold counts
  (``>=``; released ``>``). Nodes reached from two parents are one node with two edges (a
  graph, not copies in a tree). Each set is scored once per image; the released code scores a
  set again whenever the search meets it, and so does the one-at-a-time path.

``SAGExplainer(model).attribute(images, target)`` returns a ``SAG`` (``sag_result``);
``structured_attention(model, data, ids)`` reads images by id as ``explain`` does.

I-GOS against SAG, on the planted two-routes net (``notebookcarto.testing.planted_routes``: a
class that fires on a red square or on a striped disc): on an image with both, I-GOS puts its
mask on one concept (the max routes the gradient to the stronger one only): with the
heuristic's 2 iterations on 4 x 4 patches, 0.91 of its saliency (1 - mask) lies on the red
square's cells and 0.09 on the disc's (mean of 8 images); after 15 iterations on 8 x 8 cells,
where the mask must delete both routes, still 0.65 against 0.30. The SAG has two roots, the
four cells of each concept, each keeping over 99 % of the probability alone
(``tests/explain/test_sag.py``).

Speed (``benchmarks/bench_sag.py``, two CPU cores, one thread, the fastest of 3 rounds of
each path in turn): on the CIFAR ResNet-20, 5.7x the one-candidate-at-a-time path as released
(the search alone 7.8x), on the trained playground CNN 3.0 to 4.5x, with identical graphs; a
bare forward pass gains 2.2 to 3x there from one input to 128. The I-GOS heuristic is about a
third of the batched time and gains little: the CPU runs its passes of 20 inputs about as fast
per input as larger ones.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..datasets.items import find_normalization, image_data
from .igos import IGOS, check_batch, make_baselines, scaled_weights
from .model import Scorer, check_targets
from .objective import chunk_rows
from .run import _check_targets, _ids, _logits, _targets, display_images, read_images
from .sag_result import SAG

__all__ = ["SAGExplainer", "default_grid", "patch_map", "select_roots", "structured_attention"]

MAX_PATCHES = 63  # a set of patches is one int64 bit mask


def default_grid(height: int, width: int) -> int:
    """Patches per side: 7 from 224 px (as released), else one per 8 pixels of the shorter
    side, 2 to 7 (4 at 32 px)."""
    side = min(height, width)
    return 7 if side >= 224 else max(2, min(7, side // 8))


class SAGExplainer:
    """Structured attention graphs of many images at once (see the module docstring).

    After ``attribute``: ``grid_`` (the grid used) and ``seconds_`` ({"heuristic", "search"}:
    the time of each stage).

    Args:
        model: the classifier (logits (batch, classes)); left exactly as it was.
        grid: patches per side (default ``default_grid``: 7 at 224 px, 4 at 32 px; at most 7,
            so 49 patches, as a set is a 64-bit mask).
        baseline: what a missing patch shows: "black" (black pixels: zeros, or -mean / std
            with ``mean`` and ``std``), "zeros" (zeros of the model's input), "blur" or a
            tensor of the images' shape.
        mean, std: the input normalisation, for "black" and for the stored images.
        beam_width: beams kept at each step (3).
        successors: patches tried per beam, those with the lowest heuristic mask values (15).
        root_threshold: a set is a root when its probability reaches this share of the full
            image's (0.9), in (0, 1].
        search_roots: the search stops once more than this many roots are found (10).
        max_roots: roots kept (3); ``max_overlap``: patches two kept roots may share (1).
        node_threshold: a node grows children while its probability relative to the full
            image's is above this (0.4), in [0, 1).
        children: the first patches of a node whose deletion makes its children (3; None: all).
        max_patches: the largest set the search tries (default: all patches).
        heuristic: options of the I-GOS heuristic (``igos.IGOS``); default 2 iterations on the
            patch grid with ``scaled_weights(grid)``, the same baseline and one line-search
            step per pass (``trials=1``: the same steps; with 2 iterations the steps tried
            together are mostly wasted).
        chunk_size: inputs per forward pass (default ``objective.chunk_rows``).
        progress: a progress bar over the search's steps.
    """

    def __init__(self, model: nn.Module, *, grid: int | None = None, baseline="black",
                 mean=None, std=None, beam_width: int = 3, successors: int = 15,
                 root_threshold: float = 0.9, search_roots: int = 10, max_roots: int = 3,
                 max_overlap: int = 1, node_threshold: float = 0.4, children: int | None = 3,
                 max_patches: int | None = None, heuristic: dict | None = None,
                 chunk_size: int | None = None, progress: bool = False):
        if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or
                                 not 2 <= grid <= 7):
            raise ValueError(f"grid must be an integer from 2 to 7 (patches per side; a set of "
                             f"patches is a 64-bit mask), got {grid!r}")
        for key, value, low in (("beam_width", beam_width, 1), ("successors", successors, 1),
                                ("search_roots", search_roots, 1), ("max_roots", max_roots, 1),
                                ("max_overlap", max_overlap, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        for key, value in (("children", children), ("max_patches", max_patches),
                           ("chunk_size", chunk_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or
                                      value < 1):
                raise ValueError(f"{key} must be a positive integer or None, got {value!r}")
        if not 0 < root_threshold <= 1:
            raise ValueError(f"root_threshold is a share of the full image's probability, in "
                             f"(0, 1]; got {root_threshold!r} (the released value is 0.9)")
        if not 0 <= node_threshold < 1:
            raise ValueError(f"node_threshold is a share of the full image's probability, in "
                             f"[0, 1); got {node_threshold!r} (the released value is 0.4)")
        if isinstance(baseline, str) and baseline not in ("black", "zeros", "blur"):
            raise ValueError(f"baseline must be 'black', 'zeros', 'blur' or a tensor, got "
                             f"{baseline!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the input normalisation) or neither")
        if heuristic is not None and not isinstance(heuristic, dict):
            raise TypeError(f"heuristic must be a dict of IGOS options, got "
                            f"{type(heuristic).__name__}")
        self.model, self.grid, self.baseline = model, grid, baseline
        self.mean, self.std = mean, std
        self.beam_width, self.successors, self.root_threshold = beam_width, successors, \
            float(root_threshold)
        self.search_roots, self.max_roots, self.max_overlap = search_roots, max_roots, \
            max_overlap
        self.node_threshold, self.children, self.max_patches = float(node_threshold), children, \
            max_patches
        self.heuristic = dict(heuristic or {})
        self.chunk_size, self.progress = chunk_size, progress

    def params(self) -> dict:
        """The parameters, JSON-ready (after ``attribute``: the grid it used)."""
        return {"method": "sag", "grid": getattr(self, "grid_", self.grid),
                "baseline": self.baseline if isinstance(self.baseline, str) else "tensor",
                "beam_width": self.beam_width, "successors": self.successors,
                "root_threshold": self.root_threshold, "search_roots": self.search_roots,
                "max_roots": self.max_roots, "max_overlap": self.max_overlap,
                "node_threshold": self.node_threshold, "children": self.children,
                "max_patches": self.max_patches, "heuristic": dict(self.heuristic)}

    # -- the work -------------------------------------------------------------------------------
    def attribute(self, images: torch.Tensor, target, *, image_ids=None) -> SAG:
        """The SAG of ``images`` (n, C, H, W) for class ``target`` (an int or (n,) ints);
        ``image_ids`` (default 0..n-1) name the images and seed the heuristic's noise."""
        return self._run(images, target, image_ids, sequential=False)

    def attribute_sequential(self, images: torch.Tensor, target, *, image_ids=None) -> SAG:
        """The slow path, for tests and the benchmark: the same search one image at a time,
        one candidate set per forward pass, a set scored again whenever the search meets it,
        the heuristic in the released layout (a pass per path of ``points`` inputs, line-search
        steps one after another), as released."""
        return self._run(images, target, image_ids, sequential=True)

    def _run(self, images, target, image_ids, sequential: bool) -> SAG:
        x, ids, grid = self._check(images, image_ids)
        self.grid_ = grid
        n = len(x)
        with Scorer(self.model) as scorer, torch.no_grad():
            x = x.to(scorer.device)
            logits = scorer.logits(x)
            targets = check_targets(target, n, logits.shape[1]).to(scorer.device)
            full = torch.softmax(logits, 1).gather(1, targets.view(-1, 1))[:, 0]
            base = self._baselines(x)
            chunk = 1 if sequential else (self.chunk_size or chunk_rows(scorer, x))
            patches = patch_map(x.shape[-2:], grid).to(scorer.device)
        start = time.perf_counter()
        masks = self._heuristic(x, base, targets, ids, grid, sequential)
        order = [np.argsort(m.reshape(-1), kind="stable") for m in masks.cpu().numpy()]
        middle = time.perf_counter()
        full_p = full.double().cpu().numpy()
        with Scorer(self.model) as scorer, torch.no_grad():
            def evaluate(items):
                return _probabilities(scorer, x, base, targets, patches, items, chunk)

            if sequential:
                parts = [_Search(self, [i], order, full_p, evaluate, memo=False).run()
                         for i in tqdm(range(n), desc="sag (one at a time)",
                                       disable=not self.progress, leave=False)]
                graphs = [g for part in parts for g in part]
            else:
                graphs = _Search(self, list(range(n)), order, full_p, evaluate).run()
        self.seconds_ = {"heuristic": middle - start, "search": time.perf_counter() - middle}
        return SAG.from_graphs(
            graphs, grid=grid, image_ids=np.asarray(ids, np.int64),
            targets=targets.cpu().numpy().astype(np.int64),
            probabilities=full.float().cpu().numpy(),
            images=display_images(x, self.mean, self.std),
            heuristic=masks.float().cpu().numpy(), params=self.params())

    def _check(self, images, image_ids):
        check_batch(images)
        h, w = images.shape[-2:]
        grid = default_grid(h, w) if self.grid is None else self.grid
        if grid > min(h, w):
            raise ValueError(f"a grid of {grid} x {grid} patches is larger than the images "
                             f"({h} x {w} px): choose grid <= {min(h, w)}")
        ids = list(range(len(images))) if image_ids is None else \
            [int(i) for i in np.asarray(image_ids).reshape(-1)]
        if len(ids) != len(images):
            raise ValueError(f"{len(images)} images but {len(ids)} image ids")
        if self.max_patches is not None and self.max_patches > grid * grid:
            raise ValueError(f"max_patches {self.max_patches} is more than the grid's "
                             f"{grid * grid} patches")
        _logits(self.model, images[:1])  # the model runs on them (a clear error if not)
        return images, ids, grid

    def _baselines(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.baseline, str) and self.baseline == "black":
            if self.mean is None:
                return torch.zeros_like(x)
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            return (-mean / std).expand_as(x).contiguous()
        return make_baselines(x, self.baseline)

    def _heuristic(self, x, base, targets, ids, grid, sequential) -> torch.Tensor:
        options = {"iterations": 2, "trials": 1, **scaled_weights(grid), **self.heuristic,
                   "size": grid}
        igos = IGOS(self.model, **options)
        if not sequential:
            return igos.attribute(x, targets, baselines=base, image_ids=ids)
        released = IGOS(self.model, **{**options, "chunk_size": igos.points, "trials": 1})
        return torch.cat([released.attribute(x[i:i + 1], targets[i:i + 1],
                                             baselines=base[i:i + 1], image_ids=ids[i:i + 1])
                          for i in range(len(x))])


def structured_attention(model: nn.Module, data, images=None, *, targets="prediction",
                         mean=None, std=None, **settings) -> SAG:
    """The SAGs of ``images`` (ids into ``data``, default all; read as ``explain`` reads them)
    for ``targets`` ("prediction", "label" or class indices); ``mean`` / ``std`` default to
    the normalisation found in the data set (for the black baseline and the stored images);
    ``settings`` go to ``SAGExplainer``. ``atlas.attach`` the result (section ``sag``)."""
    if mean is None and std is None:
        found = find_normalization(data)
        mean, std = found if found is not None else (None, None)
    explainer = SAGExplainer(model, mean=mean, std=std, **settings)
    source = image_data(data, model=model)
    ids = _ids(source, images)
    x, y = read_images(source, ids)
    logits = _logits(model, x[:1])
    rule = _check_targets(targets, len(ids), logits.shape[1], y)
    t = _targets(rule, 0, len(ids), _logits(model, x), y) if isinstance(rule, str) else rule
    return explainer.attribute(x, t.cpu(), image_ids=ids)


def patch_map(size, grid: int) -> torch.Tensor:
    """int64 (H, W): the patch (row-major on the ``grid`` x ``grid`` grid) of every pixel;
    patch edges at round(k H / grid)."""
    h, w = (int(s) for s in size)
    rows = torch.bucketize(torch.arange(h), _edges(h, grid), right=True) - 1
    cols = torch.bucketize(torch.arange(w), _edges(w, grid), right=True) - 1
    return rows[:, None] * grid + cols[None, :]


def _edges(side: int, grid: int) -> torch.Tensor:
    return torch.tensor([round(k * side / grid) for k in range(grid)])


def _probabilities(scorer, x, base, targets, patches, items, chunk) -> np.ndarray:
    """The target's probability for each (image row, patch bit mask) in ``items``: the image
    where the set's patches are, the baseline elsewhere; ``chunk`` inputs per forward pass."""
    out = np.empty(len(items))
    bit = torch.arange(patches.max().item() + 1, device=x.device)
    for s in range(0, len(items), chunk):
        part = items[s:s + chunk]
        rows = torch.tensor([r for r, _ in part], device=x.device)
        sets = torch.tensor([b for _, b in part], device=x.device, dtype=torch.int64)
        cells = ((sets[:, None] >> bit) & 1).to(x.dtype)  # (B, patches)
        m = cells[:, patches].unsqueeze(1)  # (B, 1, H, W)
        inputs = base[rows] + m * (x[rows] - base[rows])
        out[s:s + len(part)] = scorer.probabilities(inputs, targets[rows]).double().cpu().numpy()
    return out


def _members(bits: int) -> list[int]:
    return [p for p in range(MAX_PATCHES) if bits >> p & 1]


class _Search:
    """The search for some images in lockstep: each phase gathers the candidate sets of all
    images and scores them with one ``evaluate`` call."""

    def __init__(self, sag: SAGExplainer, rows, order, full, evaluate, memo: bool = True):
        self.s, self.rows, self.order, self.full, self.evaluate = sag, rows, order, full, evaluate
        self.patches = len(order[0])
        self.known = {}  # (row, bits) -> probability: each set is scored once per image
        self.memo = memo  # False: a set is scored again whenever met, as released

    def score(self, items: list) -> list:
        """The probabilities of ``items`` [(row, bits)], scoring only the sets not met before
        (all in one ``evaluate`` call)."""
        if not self.memo:
            return self.evaluate(items).tolist()
        new = list(dict.fromkeys(k for k in items if k not in self.known))
        if new:
            self.known.update(zip(new, self.evaluate(new).tolist()))
        return [self.known[k] for k in items]

    def run(self) -> list[dict]:
        candidates = self.beam_search()
        graphs = []
        for r in self.rows:
            roots = select_roots(candidates[r], self.s.max_roots, self.s.max_overlap)
            graphs.append({"row": r, "candidates": len(candidates[r]), "roots": roots})
        self.grow(graphs)
        return graphs

    def beam_search(self) -> dict:
        s = self.s
        need = {r: s.root_threshold * self.full[r] for r in self.rows}
        beams = {r: [0] for r in self.rows}
        roots = {r: {} for r in self.rows}  # bits -> probability, in the order found
        limit = s.max_patches or self.patches
        bar = tqdm(total=limit, desc="sag", disable=not s.progress or len(self.rows) == 1,
                   leave=False)
        for _ in range(limit):
            active = [r for r in self.rows if beams[r] and len(roots[r]) <= s.search_roots]
            if not active:
                break
            items = []
            for r in active:
                seen = set()
                for b in beams[r]:
                    new = [b | 1 << int(p) for p in self.order[r] if not b >> int(p) & 1]
                    for c in new[:s.successors]:
                        if c not in seen:
                            seen.add(c)
                            items.append((r, c))
            probs = self.score(items)
            found = []
            for r in active:
                beams[r] = []
            ranked = sorted(range(len(items)), key=lambda k: -probs[k])  # stable: ties in order
            for k in ranked:
                r, c = items[k]
                if probs[k] >= need[r]:
                    found.append((r, c, probs[k]))
                elif len(beams[r]) < s.beam_width:  # exactly beam_width (released: one more)
                    beams[r].append(c)
            found.sort(key=lambda f: (self.rows.index(f[0]), -f[2]))
            for r, c, p in self.minimise(found, need):
                roots[r].setdefault(c, p)
            bar.update(1)
        bar.close()
        return {r: list(roots[r].items()) for r in self.rows}

    def minimise(self, found, need) -> list:
        """Greedy removal: each round every set drops the patch whose deletion keeps the highest
        probability, while that stays at or above the threshold (and a patch is left)."""
        state = [list(f) for f in found]
        active = [k for k, (r, c, p) in enumerate(state) if bin(c).count("1") > 1]
        while active:
            items, owner = [], []
            for k in active:
                r, c, _ = state[k]
                for p in _members(c):
                    items.append((r, c & ~(1 << p)))
                    owner.append(k)
            probs = self.score(items)
            best = {}
            for j, k in enumerate(owner):
                if k not in best or probs[j] > probs[best[k]]:
                    best[k] = j
            still = []
            for k in active:
                j = best[k]
                r = state[k][0]
                if probs[j] >= need[r]:
                    state[k][1], state[k][2] = items[j][1], probs[j]
                    if bin(items[j][1]).count("1") > 1:
                        still.append(k)
            active = still
        return state

    def grow(self, graphs: list[dict]) -> None:
        """Each graph's nodes (bits -> probability), depths and edges (parent, child, patch),
        grown level by level, all images' new children scored together."""
        s = self.s
        frontier = []
        for g in graphs:
            g["nodes"] = {c: p for c, p in g["roots"]}
            g["depth"] = {c: 0 for c, _ in g["roots"]}
            g["edges"] = []
            frontier += [(g, c) for c, _ in g["roots"]]
        depth = 0
        while frontier:
            depth += 1
            new, items, seen = [], [], set()
            for g, c in frontier:
                rel = g["nodes"][c] / self.full[g["row"]]
                members = _members(c)
                if rel <= s.node_threshold or len(members) < 2:
                    continue
                for p in members[:s.children]:
                    child = c & ~(1 << p)
                    g["edges"].append((c, child, p))
                    key = (g["row"], child)
                    if child not in g["nodes"] and key not in seen:
                        seen.add(key)
                        items.append(key)
                        new.append((g, child))
            probs = self.score(items)
            for (g, child), p in zip(new, probs):
                g["nodes"][child] = p
                g["depth"][child] = depth
            frontier = new


def select_roots(candidates: list, count: int, overlap: int) -> list:
    """The largest subset (at most ``count``) of ``candidates`` [(bits, probability)] that
    pairwise share at most ``overlap`` patches, exact; ties: highest total probability, then
    the first found."""
    for k in range(min(count, len(candidates)), 0, -1):
        best, score = None, -1.0
        for combo in itertools.combinations(candidates, k):
            if all(bin(a[0] & b[0]).count("1") <= overlap
                   for a, b in itertools.combinations(combo, 2)):
                total = sum(p for _, p in combo)
                if total > score:
                    best, score = list(combo), total
        if best is not None:
            return best
    return []

