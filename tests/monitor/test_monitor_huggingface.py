"""The Hugging Face callback, on a tiny model in a ``transformers.Trainer`` on CPU: it observes
the steps of the schedule without changing the training, a checkpoint carries the monitor's
state, and resuming from it rewinds the series to it."""

import sys
import warnings

import pytest
import torch
from torch import nn

from monitor_setups import CLASSES, SmallCNN, batch, probe
from notebookcarto.monitor import Monitor, Series, huggingface, huggingface_callback

transformers = pytest.importorskip("transformers", reason="the Hugging Face callback is "
                                   "optional: pip install 'notebookcarto[huggingface]'")
pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")
pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 6


class Model(nn.Module):
    """SmallCNN: logits for ``model(images)`` (the monitor's call), the loss with labels."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = SmallCNN()

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        if labels is None:
            return logits
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def new_monitor(path, **options):
    return Monitor(path, probe(per_colour=4), ["net.conv1", "net.conv2"], every=2,
                   class_names=CLASSES, top_n=4, **options)


def fit(folder, monitor=None, max_steps=STEPS, resume=None):
    x, y = batch(0, swap=None, size=64)
    data = [{"pixel_values": x[i], "labels": y[i]} for i in range(len(y))]
    args = transformers.TrainingArguments(
        output_dir=str(folder), max_steps=max_steps, per_device_train_batch_size=8,
        learning_rate=0.01, save_strategy="steps", save_steps=3, report_to="none",
        use_cpu=True, disable_tqdm=True, logging_strategy="no", seed=0)
    model = Model()
    trainer = transformers.Trainer(model, args, train_dataset=data,
                                   callbacks=[] if monitor is None
                                   else [huggingface_callback(monitor)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=resume)
    return model


def test_the_callback_observes_the_schedule_and_leaves_training_as_it_was(tmp_path):
    plain = fit(tmp_path / "plain")
    watched = fit(tmp_path / "watched", new_monitor(tmp_path / "run"))
    assert Series(tmp_path / "run").steps() == [0, 2, 4, 6]
    for name, value in plain.state_dict().items():
        assert torch.equal(value, watched.state_dict()[name]), name
    saved = tmp_path / "watched" / "checkpoint-3" / huggingface.STATE_FILE
    assert saved.is_file()


def test_resuming_from_a_trainer_checkpoint_rewinds_the_series(tmp_path):
    path = tmp_path / "run"
    fit(tmp_path / "out", new_monitor(path))
    before = Series(path).load(4).stats.layers["net.conv1"].top.index
    fit(tmp_path / "out", new_monitor(path, resume=True),
        resume=str(tmp_path / "out" / "checkpoint-3"))  # the monitor's last snapshot: step 2
    series = Series(path)
    assert series.steps() == [0, 2, 4, 6]
    assert torch.equal(series.load(4).stats.layers["net.conv1"].top.index, before)


def test_without_transformers_the_error_says_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="notebookcarto Monitor"):
        huggingface_callback("monitor")
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(huggingface, "_CLASSES", [])
    with pytest.raises(ImportError, match="notebookcarto\\[huggingface\\]"):
        huggingface_callback(new_monitor(tmp_path / "run"))
