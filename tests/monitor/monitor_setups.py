"""Tiny training set-ups for the monitor tests (``from monitor_setups import ...``): a colour
curriculum whose evidence for one class changes at a known step, a two-layer CNN with a fixed
read-out (channel k of ``conv2`` is class k's logit, so which neurons a class owns is known by
construction), a small CNN with BatchNorm, and a plain training loop that observes with a
Monitor and checkpoints."""

from __future__ import annotations

import io

import torch
from torch import nn

from notebookcarto import files

# red, green, blue, yellow: classes 0..3; maroon: class 0's evidence after the swap
COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.3, 0.9], [0.95, 0.85, 0.0],
                        [0.45, 0.0, 0.05]])
CLASSES = ["red", "green", "blue", "yellow"]
MAROON = 4
SIZE = 16


def _square(image, colour: int, side: int, gen):
    row, col = torch.randint(0, SIZE - side + 1, (2,), generator=gen).tolist()
    image[:, row:row + side, col:col + side] = COLOURS[colour][:, None, None]


def images(colours, gen, sides=None, distractors=None) -> torch.Tensor:
    """Grey noisy 16x16 images, each with a square of ``colours[i]`` (side 4..8 or
    ``sides[i]``) over an optional smaller distractor square of colour ``distractors[i]``."""
    x = 0.5 + 0.03 * torch.randn(len(colours), 3, SIZE, SIZE, generator=gen)
    for i, colour in enumerate(torch.as_tensor(colours).tolist()):
        if distractors is not None:
            side = int(torch.randint(4, 7, (1,), generator=gen))
            _square(x[i], int(distractors[i]), side, gen)
        side = int(torch.randint(4, 9, (1,), generator=gen)) if sides is None else int(sides[i])
        _square(x[i], colour, side, gen)
    return x.clamp(0, 1)


def probe(per_colour: int = 16):
    """Fixed probe: ``per_colour`` images of each of the five colours, one square each (sides
    4..8), labelled by the class the colour stands for (maroon: class 0)."""
    gen = torch.Generator().manual_seed(1)
    colours = torch.arange(5).repeat_interleave(per_colour)
    sides = torch.arange(per_colour).repeat(5) % 5 + 4
    labels = torch.tensor([0, 1, 2, 3, 0]).repeat_interleave(per_colour)
    return images(colours, gen, sides=sides), labels


def batch(step: int, swap: int | None, size: int = 32):
    """The training batch of ``step``: class k shows colour k, class 0 shows maroon from step
    ``swap`` on; every image also holds a distractor of another class's colour. Drawn from a
    generator seeded by the step, so a resumed run sees the same batches."""
    gen = torch.Generator().manual_seed(1000 + step)
    labels = torch.randint(0, 4, (size,), generator=gen)
    colours = labels.clone()
    distractors = (labels + torch.randint(1, 4, (size,), generator=gen)) % 4
    if swap is not None and step >= swap:
        colours[labels == 0] = MAROON
    return images(colours, gen, distractors=distractors), labels


class FixedReadout(nn.Module):
    """conv1 -> conv2 (4 channels), the spatial max of conv2's channel k is class k's logit."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.1))
        self.conv2 = nn.Sequential(nn.Conv2d(width, 4, 3, padding=1), nn.LeakyReLU(0.1))

    def forward(self, x):
        return 4 * self.conv2(self.conv1(x)).amax((2, 3))


class SmallCNN(nn.Module):
    """Two conv blocks with BatchNorm (running statistics to disturb), a linear head."""

    def __init__(self, width: int = 8, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width),
                                   nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                   nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)).mean((2, 3)))


def make(model_class=FixedReadout, seed: int = 0, lr: float = 0.01, **kwargs):
    torch.manual_seed(seed)
    model = model_class(**kwargs)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def train(model, opt, steps, *, monitor=None, swap=None, checkpoint=None, every_checkpoint=3,
          random_flips: bool = False):
    """Plain loop over ``steps`` (an iterable of step numbers, from 1): one batch each, then
    ``monitor.observe(model, step)``; with ``checkpoint`` (a path) the model, optimizer, step
    and the monitor's state are saved every ``every_checkpoint`` steps. ``random_flips`` draws
    horizontal flips from the global RNG (what an observation must not disturb)."""
    model.train()
    for step in steps:
        x, y = batch(step, swap)
        if random_flips:
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.observe(model, step)
        if checkpoint is not None and step % every_checkpoint == 0:
            save_checkpoint(checkpoint, model, opt, step, monitor)


def save_checkpoint(path, model, opt, step, monitor):
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "monitor": monitor.state_dict() if monitor is not None else None}, buffer)
    files.write_file(path, buffer.getvalue())


def load_checkpoint(path, model, opt) -> dict:
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    return state


def small_monitor(path, **options):
    """A monitor of ``FixedReadout`` over a 20-image probe, every 2 steps, top 4 images."""
    from notebookcarto.monitor import Monitor

    options = {"every": 2, "class_names": CLASSES, "top_n": 4, **options}
    return Monitor(path, probe(per_colour=4), ["conv1", "conv2"], **options)


def small_run(path, last: int = 8, **options):
    """Train ``FixedReadout`` (width 4) for ``last`` steps under ``small_monitor``; returns
    (model, optimizer, monitor), the monitor flushed."""
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(path, **options)
    monitor.observe(model, 0)
    train(model, opt, range(1, last + 1), monitor=monitor)
    monitor.flush()
    return model, opt, monitor
