"""A small CNN for the concept playground, with a quick deterministic trainer."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from ..datasets.playground import ConceptPlayground

__all__ = ["ConvBlock", "PlaygroundCNN", "evaluate", "load_or_train", "train_playground_cnn"]

DEFAULTS = dict(epochs=15, batch_size=64, lr=3e-3, weight_decay=5e-4, width=16, seed=0)


class ConvBlock(nn.Sequential):
    """Optional 2x2 max-pool (downsampling), then conv3x3 + BatchNorm + ReLU."""

    def __init__(self, c_in: int, c_out: int, downsample: bool = False):
        layers = [nn.MaxPool2d(2)] if downsample else []
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class PlaygroundCNN(nn.Module):
    """Four conv blocks (``block1``..``block4``), global average pool and ``fc``.

    ``block1`` keeps the input resolution; each later block halves it first
    (32 px input: 32, 16, 8, 4 px). Takes [0, 1] RGB images of any size
    32..128; inputs are centred inside.
    """

    def __init__(self, num_classes: int = 8, width: int = 16):
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f"num_classes and width must be positive, got {num_classes} and {width}")
        self.num_classes, self.width = num_classes, width
        w = width
        self.block1 = ConvBlock(3, w)
        self.block2 = ConvBlock(w, 2 * w, downsample=True)
        self.block3 = ConvBlock(2 * w, 4 * w, downsample=True)
        self.block4 = ConvBlock(4 * w, 4 * w, downsample=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@contextmanager
def _deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # warn_only: on GPUs some ops have no deterministic version; warn, do not fail
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _as_tensors(data, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, ConceptPlayground):
        return data.tensors(progress=progress)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1]
    raise TypeError(
        "expected a ConceptPlayground or an (images, labels) tuple of tensors, "
        f"got {type(data).__name__}"
    )


def train_playground_cnn(
    train_set,
    *,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    width: int = DEFAULTS["width"],
    seed: int = DEFAULTS["seed"],
    device: str = "cpu",
    progress: bool = True,
) -> tuple[PlaygroundCNN, list[dict]]:
    """Train a ``PlaygroundCNN`` with AdamW and a one-cycle schedule.

    Args:
        train_set: a ``ConceptPlayground`` (rendered once with ``tensors()``) or
            an ``(images, labels)`` tuple of tensors (classes = ``labels.max() + 1``).
        seed: the same seed on the same machine (and thread count) gives
            identical weights.

    Returns:
        ``(model, history)``: the model in eval mode and one dict per epoch
        with ``epoch``, ``loss`` and ``train_accuracy``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    x, y = _as_tensors(train_set, progress=progress)
    if len(x) == 0:
        raise ValueError("train_set is empty; pass a data set with at least one image")
    num_classes = len(train_set.classes) if isinstance(train_set, ConceptPlayground) else int(y.max()) + 1
    history = []
    with _deterministic():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = PlaygroundCNN(num_classes, width).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * ((len(x) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
        bar = tqdm(range(epochs), desc="training", disable=not progress)
        for epoch in bar:
            model.train()
            order = torch.randperm(len(x), generator=gen)
            total_loss, correct = 0.0, 0
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                flip = torch.rand(len(idx), generator=gen) < 0.5  # horizontal flips keep every label
                xb = torch.where(flip[:, None, None, None].to(device), xb.flip(-1), xb)
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
            row = dict(epoch=epoch + 1, loss=total_loss / len(x), train_accuracy=correct / len(x))
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_accuracy']:.3f}")
    return model.eval(), history


@torch.no_grad()
def evaluate(model: nn.Module, dataset_or_tensors, device: str = "cpu", batch_size: int = 256) -> float:
    """Classification accuracy of ``model`` on a data set or ``(images, labels)`` tensors."""
    x, y = _as_tensors(dataset_or_tensors)
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        correct += int((model(xb).argmax(1).cpu() == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)


def _settings(train_set, kwargs: dict) -> dict:
    if not isinstance(train_set, ConceptPlayground):
        raise TypeError(
            "load_or_train needs a ConceptPlayground train_set so the cache can be keyed on it, "
            f"got {type(train_set).__name__}"
        )
    unknown = set(kwargs) - set(DEFAULTS) - {"device", "progress"}
    if unknown:
        raise TypeError(f"unknown training settings {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    settings = {k: kwargs.get(k, v) for k, v in DEFAULTS.items()}
    settings["data"] = dict(n=train_set.n, size=train_set.size, seed=train_set.seed, classes=list(train_set.classes))
    return settings


def load_or_train(path, *, train_set: ConceptPlayground, **kwargs) -> tuple[PlaygroundCNN, list[dict]]:
    """Load the checkpoint at ``path`` if it was trained with the same settings,
    otherwise train with ``train_playground_cnn(train_set, **kwargs)`` and save it.

    Returns ``(model, history)``; the model is in eval mode.
    """
    path = os.fspath(path)
    settings = _settings(train_set, kwargs)
    device = kwargs.get("device", "cpu")
    if os.path.exists(path):
        try:
            ckpt = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # unreadable or foreign file: retrain and overwrite
            ckpt = None
        if ckpt is not None and ckpt.get("settings") == settings:
            model = PlaygroundCNN(len(train_set.classes), settings["width"]).to(device)
            model.load_state_dict(ckpt["state_dict"])
            return model.eval(), ckpt["history"]
    start = time.perf_counter()
    model, history = train_playground_cnn(train_set, **kwargs)
    ckpt = dict(settings=settings, state_dict=model.state_dict(), history=history,
                train_seconds=time.perf_counter() - start)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return model, history
