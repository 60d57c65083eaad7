"""The Lightning callback, on a tiny LightningModule on CPU, writes the same series as the plain
loop; a checkpoint carries the monitor's state, and resuming from it rewinds the series to it."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitor_setups import CLASSES, SmallCNN, batch, probe
from notebookcarto.monitor import Monitor, Series, lightning_callback

pl = pytest.importorskip("pytorch_lightning", reason="the Lightning callback is optional: pip "
                         "install 'notebookcarto[lightning]' to test it")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*treespec:FutureWarning")]

STEPS = 8


class Module(pl.LightningModule):
    """SmallCNN; the batch of each step comes from the step number (``monitor_setups.batch``),
    so a resumed fit sees exactly the batches the plain loop does."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = SmallCNN()

    def forward(self, x):
        return self.net(x)

    def loss(self, step: int):
        x, y = batch(step, swap=None)
        return nn.functional.cross_entropy(self(x), y)

    def training_step(self, _, batch_idx):
        return self.loss(self.global_step + 1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def new_monitor(path, **options):
    return Monitor(path, probe(per_colour=4), ["net.conv1", "net.conv2"], every=2,
                   class_names=CLASSES, top_n=4, **options)


def plain(path):
    module = Module()
    opt = module.configure_optimizers()
    monitor = new_monitor(path)
    module.train()
    monitor.observe(module, 0)
    for step in range(1, STEPS + 1):
        loss = module.loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        monitor.observe(module, step)
    monitor.close()
    return module


def fit(module, monitor, max_steps, ckpt_path=None):
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[lightning_callback(monitor)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many "
                                "workers|checkpoint|epoch).*")
        trainer.fit(module, torch.utils.data.DataLoader(range(100), batch_size=None),
                    ckpt_path=ckpt_path)
    return trainer


def content(series, step):
    atlas = series.load(step)
    out = {f"{n}/top": layer.top.index.numpy() for n, layer in atlas.stats.layers.items()}
    out.update({f"{n}/values": layer.top.values.numpy()
                for n, layer in atlas.stats.layers.items()})
    out["confusion"] = atlas.stats.accuracy.confusion.numpy()
    return out


def assert_same_series(a: Series, b: Series):
    assert a.steps() == b.steps() == list(range(0, STEPS + 1, 2))
    for step in a.steps():
        left, right = content(a, step), content(b, step)
        for key in left:
            assert np.array_equal(left[key], right[key]), (step, key)


def test_the_callback_writes_the_series_of_the_plain_loop(tmp_path):
    reference = plain(tmp_path / "plain")
    module = Module()
    monitor = new_monitor(tmp_path / "lightning")
    fit(module, monitor, STEPS)
    assert_same_series(Series(tmp_path / "plain"), Series(tmp_path / "lightning"))
    for name, value in reference.state_dict().items():
        assert torch.equal(value, module.state_dict()[name]), name


def test_resuming_from_a_lightning_checkpoint_rewinds_and_continues(tmp_path):
    plain(tmp_path / "plain")
    path, ckpt = tmp_path / "lightning", tmp_path / "step3.ckpt"
    trainer = fit(Module(), new_monitor(path), 3)
    trainer.save_checkpoint(ckpt)  # the monitor's state: last snapshot at step 2
    fit(Module(), new_monitor(path, resume=True), 6, ckpt_path=ckpt)  # a run that goes on ...
    assert Series(path).steps() == [0, 2, 4, 6]
    fit(Module(), new_monitor(path, resume=True), STEPS, ckpt_path=ckpt)  # ... is resumed
    assert_same_series(Series(tmp_path / "plain"), Series(path))
