"""XNN: a few x-features that explain one class score from one layer's activations.

Qi, Li: "Embedding deep networks into visual explanations". No code was released; this follows
the paper's parts (x-features, faithfulness, SRAE, pull-away) with a small explanation network
trained on a layer's activations a (C channels at each position):

- x-features: x = relu(W_e a + b_e) at every position, k of them (3 to 5), so each x-feature
  has a heatmap over the image; pooled over positions (mean, as a global average pool, or max).
  The embedding is one rectified 1x1 layer: each x-feature stays a readable mix of channels,
  enough where the score is additive in the channels (a deeper embedding is not offered).
- faithfulness: the class score is reconstructed from the pooled x-features, s_hat = v . pool(x)
  + c, by the mean squared error to the model's logit s (standardised over the training images);
  reported as R^2 of s_hat on held-out images.
- SRAE (sparse reconstruction autoencoder): the activations are reconstructed from the
  x-features, a_hat = D x + b_d with unit-norm columns of D (each x-feature's basis in channel
  space), with an L1 penalty on x.
- pull-away: the mean squared cosine between the bases of distinct x-features, which keeps them
  near-orthogonal (distinct).

Activations are divided by the root mean square of their norm over positions of the training
images (``scale``), so the loss weights depend neither on the layer's units nor on its width:
the reconstruction loss is the squared error summed over channels, averaged over positions (1
for none), the sparsity the L1 norm of the x-features per position. An x-feature that is zero
on a whole batch gets no gradient; in the first 80% of the steps such features are restarted
every 25 steps on the positions the others reconstruct worst (as sparse autoencoders commonly
do). The x-features are ordered by how much of the score they carry (|v_j| times the spread of
pool(x_j)). Each x-feature's nearest neurons are the channels of largest weight in its basis,
named by atlas neuron ids ``"layer:channel"``.

The model is left exactly as it was (``notebookcarto.capture``) and all randomness (the held-out
split, initialisation, batches) comes from ``torch.Generator``s seeded by ``seed``. The
activations of all the images are held in memory (on the model's device while training).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..capture import Capture, model_device, resolve_layers
from ..datasets.items import find_normalization, image_data
from .model import check_logits
from .run import _ids, display_images
from .units import unit_labels
from .xnn_result import XNN

__all__ = ["POOLS", "xnn"]

POOLS = ("mean", "max")
REVIVE_EVERY = 25  # steps between restarts of dead x-features (in the first 80% of steps)


def xnn(model: nn.Module, data, layer: str, target_class, *, features: int = 3, images=None,
        holdout: float = 0.25, show=8, steps: int = 1000, restarts: int = 2, lr: float = 0.03,
        batch_size: int = 64, faithfulness: float = 1.0, reconstruction: float = 1.0,
        sparsity: float = 0.1, pull_away: float = 1.0, pool: str = "mean",
        top_neurons: int = 5, seed: int = 0, atlas=None, mean=None, std=None,
        capture_batch: int = 64, progress: bool = True) -> XNN:
    """Train an explanation network of ``features`` x-features for each class of
    ``target_class`` on the activations of ``layer``.

    Args:
        model: the classifier (left exactly as it was); the training runs on its device.
        data: anything ``notebookcarto.datasets.image_data`` reads that gives images by id,
            normally the data the atlas was built on (ids are the atlas's image ids).
        layer: a layer with spatial maps (B, C, H, W).
        target_class: a class index, or several (one explanation network each, trained on the
            same activations).
        features: x-features per class (the paper uses 3 to 5).
        images: ids of the images to train and test on (default all; images of the class and
            others); their activations are held in memory on the model's device.
        holdout: share of them held out for the faithfulness R^2 (at least 2 images).
        show: ids of images (among ``images``) whose heatmaps are kept, or a number: that many
            held-out images of highest score per class.
        steps, lr, batch_size: Adam steps, step size and images per step.
        restarts: networks trained per class from different starts; the one of lowest loss
            (over its last tenth of steps) is kept (a start can end where every x-feature is
            evidence against the class, a worse fit).
        faithfulness, reconstruction, sparsity, pull_away: the weights of the four losses.
        pool: "mean" or "max", how x-features are pooled over positions for the score.
        top_neurons: nearest neurons kept per x-feature.
        seed: seeds the generators of the held-out split and, with the class and the
            restart, of each network's initialisation and batches (a class gets the same
            x-features whether explained alone or with others).
        atlas: names the nearest neurons' concepts (its dissection) and checks that ``layer``
            is one of its layers with the model's channel count.
        mean, std: the normalisation to undo for the stored images (default: the one found in
            the data set's transform, else none).
        capture_batch: images per forward pass when reading activations.

    Returns an ``XNN`` (``atlas.attach`` it). Bad settings, an unknown layer, a layer without
    spatial maps and classes out of range are refused before any training.
    """
    _check_settings(features=features, steps=steps, restarts=restarts, batch_size=batch_size,
                    top_neurons=top_neurons, capture_batch=capture_batch)
    weights = {"faithfulness": faithfulness, "reconstruction": reconstruction,
               "sparsity": sparsity, "pull_away": pull_away}
    for key, value in [*weights.items(), ("lr", lr)]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                not np.isfinite(value):
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or \
            not 0 < holdout < 1:
        raise ValueError(f"holdout must be a share between 0 and 1, got {holdout!r}")
    resolve_layers(model, [layer])  # KeyError with the closest names
    source = data
    data = image_data(data, model=model)
    ids = np.asarray(_ids(data, images), np.int64)
    n_held = int(round(holdout * len(ids)))
    if n_held < 2 or len(ids) - n_held < 2:
        raise ValueError(f"{len(ids)} images split {len(ids) - n_held} / {n_held} for "
                         f"training / held out: give more images (at least 2 each)")
    a, logits = _activations(model, data, ids[:1], layer, 1)  # checked before the work starts
    channels = a.shape[1]
    classes = _classes(target_class, logits.shape[1])
    if features > channels:
        raise ValueError(f"features={features} exceeds the {channels} channels of layer "
                         f"{layer!r}: ask for at most {channels}")
    if atlas is not None and layer not in atlas.layers:
        raise ValueError(f"layer {layer!r} is not one of the atlas's layers {atlas.layers}: "
                         "explain an atlas layer, or leave atlas out")
    labels, _ = unit_labels(atlas, layer, channels)
    shown = _show_positions(show, ids)
    if mean is None and std is None:
        found = find_normalization(source)
        mean, std = found if found is not None else (None, None)

    start = time.perf_counter()
    acts, logits = _activations(model, data, ids, layer, capture_batch, progress)
    capture_seconds = time.perf_counter() - start
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ids), generator=gen)
    held, train = order[:n_held], order[n_held:]
    shown = _best_held_out(show, held, logits, classes) if shown is None else shown
    device = model_device(model)
    a_train = acts[train].to(device)
    scale = float(a_train.square().sum(1).mean().sqrt().clamp(min=1e-12))
    a_train /= scale

    fits = []
    for c in classes:
        start = time.perf_counter()
        tries = []
        for r in range(restarts):  # each its own generator: the same alone or with others
            own = torch.Generator().manual_seed((seed * 100_003 + c) * 101 + r)
            tries.append(_train(a_train, logits[train, c].to(device), features, pool,
                                weights, steps, lr, batch_size, own,
                                progress and f"xnn class {c}, try {r + 1}/{restarts}"))
        net, history = min(tries, key=lambda t: t[1][-max(1, steps // 10):].mean())
        fits.append((net, history, time.perf_counter() - start))

    images = (display_images(data.images(ids[shown]), mean, std) if len(shown)
              else np.zeros((0, *data.images(ids[:1]).shape[-2:], 3), np.uint8))
    return _result(layer, classes, fits, acts, logits, ids, train, held, shown, scale, pool,
                   labels, top_neurons, images, capture_seconds,
                   dict(features=features, holdout=holdout, steps=steps, restarts=restarts, lr=lr,
                        batch_size=batch_size, pool=pool, top_neurons=top_neurons, seed=seed,
                        **weights))


class _Net(nn.Module):
    """The explanation network: encoder, unit-norm decoder bases and the score head."""

    def __init__(self, a: torch.Tensor, k: int, gen: torch.Generator):
        """Each x-feature starts along the deviation from the mean of the activations ``a``
        (n, C, h, w) at a position drawn as k-means++ draws its centres (with probability by
        the squared distance to the nearest centre drawn before, the mean first), firing where
        the activations lie beyond the mean in that direction."""
        super().__init__()
        mean = a.mean((0, 2, 3))
        centred = a - mean.view(1, -1, 1, 1)
        nearest = centred.square().sum(1)  # (n, h, w)
        picks = []
        for _ in range(k):
            at = int(torch.multinomial(nearest.flatten().cpu().double() + 1e-12, 1,
                                       generator=gen))
            i, y, x = np.unravel_index(at, nearest.shape)
            picks.append(centred[i, :, y, x])
            distance = (centred - picks[-1].view(1, -1, 1, 1)).square().sum(1)
            nearest = torch.minimum(nearest, distance)
        rows = F.normalize(torch.stack(picks), dim=1)
        self.encoder = nn.Parameter(rows.clone())
        self.encoder_bias = nn.Parameter(-(rows @ mean))
        self.bases = nn.Parameter(rows.T.clone())
        self.decoder_bias = nn.Parameter(mean.clone())
        self.head = nn.Parameter(torch.zeros(k, device=a.device))
        self.head_bias = nn.Parameter(torch.zeros((), device=a.device))

    def decoder(self) -> torch.Tensor:
        return F.normalize(self.bases, dim=0)

    @torch.no_grad()
    def revive(self, x: torch.Tensor, a: torch.Tensor, a_hat: torch.Tensor, opt) -> None:
        """Restart the x-features that are zero on the whole batch (``x`` (B, k, h, w)) on the
        positions of largest residual a - a_hat (a different one each): basis and encoder row
        along the residual, bias so the feature gives it exactly there; head and Adam state
        cleared. A dead rectified feature gets no gradient otherwise."""
        dead = (x.amax((0, 2, 3)) <= 0).nonzero().flatten().tolist()
        if not dead:
            return
        flat = [t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) for t in (a, a - a_hat)]
        norms = flat[1].norm(dim=1)
        for j, at in zip(dead, norms.argsort(descending=True, stable=True).tolist()):
            unit = flat[1][at] / norms[at].clamp(min=1e-12)
            self.encoder[j], self.bases[:, j], self.head[j] = unit, unit, 0.0
            self.encoder_bias[j] = norms[at] - unit @ flat[0][at]
        for p in (self.encoder, self.encoder_bias, self.bases, self.head):
            for moment in opt.state.get(p, {}).values():
                if moment.shape == p.shape:
                    if p is self.bases:
                        moment[:, dead] = 0
                    else:
                        moment[dead] = 0

    def embed(self, a: torch.Tensor) -> torch.Tensor:
        """x-feature maps (B, k, h, w) of activations (B, C, h, w)."""
        return torch.relu(torch.einsum("kc,bchw->bkhw", self.encoder, a)
                          + self.encoder_bias.view(1, -1, 1, 1))


def _pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    return x.mean((2, 3)) if pool == "mean" else x.amax((2, 3))


def _train(a, s, k, pool, weights, steps, lr, batch_size, gen, desc):
    """Fit one explanation network to activations ``a`` (n, C, h, w) and scores ``s`` (n,);
    returns it (scores in their own units) and the loss per step."""
    mu, sd = s.mean(), s.std().clamp(min=1e-12)
    z = (s - mu) / sd
    net = _Net(a, k, gen)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = torch.zeros(steps)
    batch = min(batch_size, a.shape[0])
    pairs = k * (k - 1)
    bar = tqdm(range(steps), desc=desc or "xnn", disable=not desc, leave=False)
    for step in bar:
        pick = torch.randperm(a.shape[0], generator=gen)[:batch].to(a.device)
        ab, zb = a[pick], z[pick]
        with torch.enable_grad():
            x = net.embed(ab)
            z_hat = _pool(x, pool) @ net.head + net.head_bias
            d = net.decoder()
            a_hat = torch.einsum("ck,bkhw->bchw", d, x) + net.decoder_bias.view(1, -1, 1, 1)
            gram = d.T @ d  # cosines of the bases (unit columns)
            pull = (gram - torch.diag(gram.diagonal())).square().sum() / max(pairs, 1)
            loss = (weights["faithfulness"] * F.mse_loss(z_hat, zb)
                    + weights["reconstruction"] * (a_hat - ab).square().sum(1).mean()
                    + weights["sparsity"] * x.sum(1).mean() + weights["pull_away"] * pull)
            opt.zero_grad()
            loss.backward()
        opt.step()
        history[step] = loss.detach()
        if step % REVIVE_EVERY == REVIVE_EVERY - 1 and step < 0.8 * steps:
            net.revive(x.detach(), ab, a_hat.detach(), opt)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(history[step]):.4f}")
    bar.close()
    with torch.no_grad():  # the head in the score's units
        net.head.mul_(sd)
        net.head_bias.mul_(sd).add_(mu)
    return net.requires_grad_(False), history.numpy()


def _activations(model, data, ids, layer, batch, progress=False):
    """Activations (n, C, h, w) of ``layer`` and logits (n, classes) of images ``ids``, float32
    on the CPU; a ValueError for a layer without spatial maps."""
    acts, logits = [], []
    device = model_device(model)
    with Capture(model, [layer], copy=True, freeze=True) as capture, torch.no_grad():
        for s in tqdm(range(0, len(ids), batch), desc="xnn activations",
                      disable=not progress, leave=False):
            x = data.images(ids[s:s + batch]).to(device)
            out = check_logits(capture.forward(x), x.shape[0])
            a = capture.outputs[layer]
            if a.ndim != 4:
                raise ValueError(f"layer {layer!r} gives outputs of shape {tuple(a.shape)}, not "
                                 "spatial maps (B, C, H, W): x-features are maps over the "
                                 "image; choose a convolutional layer")
            acts.append(a.float().cpu())
            logits.append(out.float().cpu())
    return torch.cat(acts), torch.cat(logits)


def _classes(target_class, num_classes: int) -> list[int]:
    values = np.asarray(target_class).reshape(-1)
    if values.size == 0 or not np.issubdtype(values.dtype, np.integer) or \
            isinstance(target_class, bool):
        raise ValueError(f"target_class must be a class index or a list of them, got "
                         f"{target_class!r}")
    if len(np.unique(values)) != len(values):
        raise ValueError(f"target classes repeat: {values.tolist()}")
    bad = values[(values < 0) | (values >= num_classes)]
    if len(bad):
        raise ValueError(f"target class {int(bad[0])} is out of range: the model has "
                         f"{num_classes} classes (0..{num_classes - 1})")
    return [int(v) for v in values]


def _show_positions(show, ids) -> np.ndarray | None:
    """Positions (in ``ids``) of the image ids ``show``; None when ``show`` is a number."""
    if isinstance(show, (int, np.integer)) and not isinstance(show, bool):
        if show < 0:
            raise ValueError(f"show must be a number >= 0 or image ids, got {show!r}")
        return None
    wanted = np.asarray(show).reshape(-1)
    if not np.issubdtype(wanted.dtype, np.integer):
        raise TypeError(f"show must be a number or integer image ids, got {show!r}")
    where = {int(i): p for p, i in enumerate(ids)}
    missing = [int(i) for i in wanted if int(i) not in where]
    if missing:
        raise ValueError(f"images {missing[:8]} to show are not among the images trained on: "
                         "show some of those (held-out ones are fairest)")
    return np.asarray(list(dict.fromkeys(where[int(i)] for i in wanted)), np.int64)


def _best_held_out(show: int, held, logits, classes) -> np.ndarray:
    """Positions of each class's ``show`` held-out images of highest logit, without repeats."""
    picked = []
    for c in classes:
        best = held[torch.argsort(-logits[held, c], stable=True)[:show]].tolist()
        picked += [p for p in best if p not in picked]
    return np.asarray(picked, np.int64)


def _r2(s_hat: torch.Tensor, s: torch.Tensor) -> float:
    total = (s - s.mean()).square().sum()
    return float(1 - (s_hat - s).square().sum() / total) if total > 0 else float("nan")


def _result(layer, classes, fits, acts, logits, ids, train, held, shown, scale, pool, labels,
            top_neurons, images, capture_seconds, params) -> XNN:
    k, channels = fits[0][0].encoder.shape
    top = min(top_neurons, channels)
    per = {name: [] for name in ("encoder", "encoder_bias", "decoder", "decoder_bias", "head",
                                 "head_bias", "heatmaps", "scores", "reconstructed", "neurons",
                                 "neuron_weights", "neuron_labels", "faithfulness_r2",
                                 "train_r2")}
    for (net, _, _), c in zip(fits, classes):
        net = net.cpu()
        x = net.embed(acts / scale)
        pooled = _pool(x, pool)
        s_hat, s = pooled @ net.head + net.head_bias, logits[:, c]
        # order the x-features by the share of the score they carry
        carried = (net.head.abs() * pooled[train].std(0)).numpy()
        order = np.argsort(-carried, kind="stable")
        d = net.decoder()[:, order]
        weights, channel = torch.sort(d, dim=0, descending=True, stable=True)
        channel = channel[:top].T.numpy()
        values = dict(encoder=net.encoder[order], encoder_bias=net.encoder_bias[order],
                      decoder=d, decoder_bias=net.decoder_bias, head=net.head[order],
                      head_bias=net.head_bias, heatmaps=x[shown][:, order],
                      scores=s[shown], reconstructed=s_hat[shown],
                      neurons=np.char.add(f"{layer}:", channel.astype(str)),
                      neuron_weights=weights[:top].T, neuron_labels=labels["concept"][channel],
                      faithfulness_r2=_r2(s_hat[held], s[held]),
                      train_r2=_r2(s_hat[train], s[train]))
        for name, value in values.items():
            per[name].append(value.numpy() if isinstance(value, torch.Tensor) else value)
    arrays = {name: np.stack(v) for name, v in per.items()}
    return XNN(layer=layer, classes=np.asarray(classes, np.int64), scale=scale, pool=pool,
               image_ids=ids[shown], images=images,
               train_ids=np.sort(ids[train.numpy()]), held_out_ids=np.sort(ids[held.numpy()]),
               history=np.stack([f[1] for f in fits]).astype(np.float32),
               seconds=np.asarray([f[2] for f in fits], np.float32),
               capture_seconds=capture_seconds, params=params,
               **{name: (v.astype(str) if v.dtype.kind == "U" else v.astype(np.float32))
                  for name, v in arrays.items()})


def _check_settings(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
