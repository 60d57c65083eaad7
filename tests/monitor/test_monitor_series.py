"""The series on disk and the monitor's life cycle: snapshots as atlases, append-only, resume
after the last snapshot or from a checkpoint's state, clear errors before training starts,
listeners, write errors, bounded memory."""

import gc
import json
import warnings
from pathlib import Path

import pytest
import torch

from monitor_setups import CLASSES, SmallCNN, make, probe, small_monitor, small_run, train
from notebookcarto import Atlas, mappable_layers
from notebookcarto.datasets import ConceptPlayground
from notebookcarto.monitor import (Monitor, Probe, Schedule, Series, SeriesFormatError,
                                   log_steps)

pytestmark = pytest.mark.usefixtures("one_thread")


# -- schedule and probe --------------------------------------------------------------------------

def test_schedules():
    assert [s for s in range(7) if s in Schedule(3)] == [0, 3, 6]
    assert [s for s in range(7) if s in Schedule([5, 1, 1])] == [1, 5]
    assert [s for s in range(7) if s in Schedule(lambda s: s % 4 == 1)] == [1, 5]
    assert Schedule(Schedule(3)).describe() == {"every": 3}
    for bad, error in [(0, ValueError), (-2, ValueError), (True, TypeError), ("x", TypeError),
                       ([], ValueError), ([1, -1], ValueError), (1.5, TypeError)]:
        with pytest.raises(error):
            Schedule(bad)
    steps = log_steps(1000, 12)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert steps[:4] == [0, 1, 3, 7]  # dense early


def test_the_probe_is_read_once_with_the_data_sets_class_names():
    data = ConceptPlayground(n=10, size=32, seed=2)
    p = Probe(data, batch_size=4)
    assert len(p) == 10 and p.labels.shape == (10,) and p.class_names == data.classes
    assert p.describe()["shape"] == [3, 32, 32] and len(p.sha256) == 64
    images = p.images.clone()
    assert Probe(images).labels is None and Probe(images).sha256 != p.sha256
    with pytest.raises(ValueError, match="more than 5 images"):
        Probe(data, max_images=5)


# -- the series ----------------------------------------------------------------------------------

def test_each_snapshot_is_an_atlas_in_an_append_only_series(tmp_path):
    _, _, monitor = small_run(tmp_path / "run")
    series = Series(tmp_path / "run")
    assert series.steps() == [0, 2, 4, 6, 8]
    atlas = Atlas.load(series.snapshot_path(4))  # any snapshot loads as an Atlas
    assert atlas.layers == ["conv1", "conv2"] and atlas.class_names == CLASSES
    assert atlas.stats.n_images == 20 and atlas.data_info["monitor"]["step"] == 4
    assert atlas.data_info["probe"]["sha256"] == monitor.probe.sha256
    manifest = json.loads((tmp_path / "run" / "series.json").read_text())
    assert manifest["format"] == "notebookcarto.series" and manifest["layers"] == atlas.layers
    assert manifest["schedule"] == {"every": 2} and manifest["top_n"] == 4
    with pytest.raises(FileExistsError, match="only appended"):
        series.append(4, atlas)
    with pytest.raises(KeyError, match="no snapshot of step 5"):
        series.load(5)
    assert "5 snapshots" in repr(series) and "last step 8" in repr(monitor)


def test_the_series_manifest_is_checked(tmp_path):
    series = Series(tmp_path / "run")
    with pytest.raises(SeriesFormatError, match="no series.json"):
        series.read_manifest()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "series.json").write_text("{not json")
    with pytest.raises(SeriesFormatError, match="corrupt"):
        series.read_manifest()
    (tmp_path / "run" / "series.json").write_text(json.dumps(
        {"format": "notebookcarto.series", "version": 99}))
    with pytest.raises(SeriesFormatError, match="newer"):
        series.read_manifest()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Series(tmp_path / "file")


def test_resume_after_the_last_snapshot(tmp_path):
    model, opt, _ = small_run(tmp_path / "run", last=4)
    with pytest.raises(FileExistsError, match="resume=True"):
        small_monitor(tmp_path / "run")
    again = small_monitor(tmp_path / "run", resume=True)
    assert again.observe(model, 4) is None  # already there
    train(model, opt, range(5, 9), monitor=again)
    again.flush()
    assert Series(tmp_path / "run").steps() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="steps must grow"):
        again.observe(model, 2)


def test_load_state_dict_rewinds_to_the_checkpoint(tmp_path):
    model, opt, monitor = small_run(tmp_path / "run", last=3)
    state = monitor.state_dict()
    assert state["last_step"] == 2
    train(model, opt, range(4, 9), monitor=monitor)
    monitor.flush()
    assert Series(tmp_path / "run").steps() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="resume=True"):
        monitor.load_state_dict(state)
    resumed = small_monitor(tmp_path / "run", resume=True)
    resumed.load_state_dict(state)
    assert Series(tmp_path / "run").steps() == [0, 2]
    assert resumed.last_step == 2
    other = Monitor(tmp_path / "run", probe(per_colour=3), ["conv1", "conv2"], every=2,
                    class_names=CLASSES, top_n=4, resume=True)
    with pytest.raises(ValueError, match="another probe"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="lacks it"):
        resumed.load_state_dict(dict(state, last_step=6))
    with pytest.raises(ValueError, match="not a monitor state_dict"):
        resumed.load_state_dict({"last_step": 2})


def test_a_resumed_series_must_map_the_same_things(tmp_path):
    model, _, _ = small_run(tmp_path / "run", last=2)
    for change, word in [({"top_n": 3}, "top_n"), ({"class_names": list("abcd")},
                                                   "class_names"),
                         ({"clusters": True, "top_n": 10}, "analyses")]:
        other = small_monitor(tmp_path / "run", resume=True, **change)
        with pytest.raises(ValueError, match=f"another .*{word}"):
            other.observe(model, 4)
    layers = Monitor(tmp_path / "run", probe(per_colour=4), ["conv2"], every=2,
                     class_names=CLASSES, top_n=4, resume=True)
    with pytest.raises(ValueError, match="another layers"):
        layers.observe(model, 4)


# -- clear errors before training starts ---------------------------------------------------------

def test_bad_settings_are_refused_before_any_training(tmp_path):
    images, labels = probe(per_colour=4)
    run = tmp_path / "run"
    cases = [
        (dict(top_n=21), ValueError, "top_n must be an integer in 1..20"),
        (dict(clusters={"bogus": 1}), ValueError, "cluster_neurons has no option 'bogus'"),
        (dict(clusters={"progress": True}), ValueError, "sets 'progress'"),
        (dict(clusters=True, top_n=4), ValueError, "min_exemplars"),
        (dict(clusters="yes"), TypeError, "clusters must be"),
        (dict(dissection={"top_n": 3}), ValueError, "needs concept data"),
        (dict(concepts=images), TypeError, "ConceptData"),
        (dict(graphs=["purple"]), KeyError, "purple"),
        (dict(graphs=[]), ValueError, "names no class"),
        (dict(influence={"top_inputs": 3}), ValueError, "pass graphs"),
        (dict(every=0), ValueError, "every must be >= 1"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            Monitor(run, (images, labels), ["conv1", "conv2"], class_names=CLASSES,
                    **{"top_n": 4, **options})
    with pytest.raises(ValueError, match="needs labels|probe needs labels"):
        Monitor(run, images, ["conv1", "conv2"], graphs=[0], top_n=4)
    with pytest.raises(ValueError, match="at least 2"):
        Monitor(run, images[:1], ["conv1"])
    model, _ = make(seed=0, width=4)
    with pytest.raises(KeyError, match="conv3"):
        Monitor(run, (images, labels), ["conv1", "conv3"], top_n=4).observe(model, 0)
    with pytest.raises(ValueError, match="one"):
        Monitor(run, (images, labels), ["conv2"], top_n=4, graphs=[0]).observe(model, 0)
    with pytest.raises(TypeError, match="nn.Module"):
        Monitor(run, (images, labels), ["conv1"], top_n=4).observe("model", 0)
    with pytest.raises(ValueError, match=">= 0"):
        Monitor(run, (images, labels), ["conv1"], top_n=4).observe(model, -1)
    grey = Monitor(run, (images[:, :1], labels), ["conv1"], top_n=4)
    with pytest.raises(ValueError, match="channel"):
        grey.observe(model, 0)  # the first pass fails: still nothing on disk
    assert not Series(run).exists()  # nothing was written


def test_default_layers_and_class_names(tmp_path):
    model, _ = make(SmallCNN, seed=0)
    monitor = Monitor(tmp_path / "run", probe(per_colour=4), every=1, top_n=4)
    monitor.observe(model, 0)
    monitor.flush()
    atlas = Series(tmp_path / "run").load(0)
    assert monitor.layers == mappable_layers(model) == atlas.layers
    assert atlas.class_names == ["0", "1", "2", "3"]


# -- listeners, errors, memory -------------------------------------------------------------------

@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_listeners_hear_of_each_snapshot_on_the_training_thread(tmp_path, background):
    import threading

    heard = []
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run", background=background)
    monitor.on_snapshot(lambda w: heard.append((w.step, w.path.is_dir(),
                                                threading.current_thread().name)))
    monitor.observe(model, 0)
    train(model, opt, range(1, 7), monitor=monitor)
    monitor.flush()
    main = threading.current_thread().name
    assert heard == [(s, True, main) for s in (0, 2, 4, 6)]
    with pytest.raises(TypeError, match="callable"):
        monitor.on_snapshot("print")


def test_an_analysis_warning_is_given_once_per_monitor(tmp_path, monkeypatch):
    """The analyses of every snapshot warn alike (an untrained network's clusters, with other
    numbers each time): the monitor gives each warning once, and a new message still."""
    from notebookcarto.monitor.plan import Plan

    def run(self, model, atlas, probe, distributed):
        step = atlas.data_info["monitor"]["step"]
        warnings.warn(f"random neuron pairs share much (median {0.5 + step / 100:.2f})")
        if step == 4:
            warnings.warn("another warning")
        return {}

    monkeypatch.setattr(Plan, "_run", run)
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor.observe(model, 0)
        train(model, opt, range(1, 7), monitor=monitor)
    monitor.flush()
    assert [str(w.message) for w in caught] == ["random neuron pairs share much (median 0.50)",
                                                "another warning"]


def test_a_failed_write_is_raised_by_the_next_call(tmp_path, monkeypatch):
    model, _ = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run")
    monitor.observe(model, 0)
    monitor.flush()

    def full(self, step, atlas):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Series, "append", full)
    monitor.observe(model, 2)  # written in the background
    with pytest.raises(RuntimeError, match="snapshot of step 2 could not be written.*space"):
        monitor.flush()
    monkeypatch.undo()
    monitor.observe(model, 4)
    monitor.flush()
    assert Series(tmp_path / "run").steps() == [0, 4]


def _writer_threads() -> int:
    import threading

    from notebookcarto.monitor.writer import THREAD_NAME

    return sum(t.name.startswith(THREAD_NAME) for t in threading.enumerate())


def test_one_writer_thread_serves_every_snapshot_until_close(tmp_path):
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run", every=1)
    before = _writer_threads()
    monitor.observe(model, 0)
    train(model, opt, range(1, 5), monitor=monitor)
    assert _writer_threads() == before + 1
    monitor.close()
    assert _writer_threads() == before
    train(model, opt, range(5, 7), monitor=monitor)  # observing after close starts a new one
    with monitor:
        pass
    assert _writer_threads() == before
    assert Series(tmp_path / "run").steps() == list(range(7))


def test_a_write_in_progress_when_python_exits_is_finished(tmp_path):
    """The script observes once, with a slow disk, and returns without flushing: the snapshot
    is complete on disk when the process has ended."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from monitor_setups import make, small_monitor
        from notebookcarto.monitor import Series
        real = Series.append
        def slow(self, step, atlas):
            time.sleep(1.0)
            return real(self, step, atlas)
        Series.append = slow
        model, _ = make(seed=0, width=4)
        monitor = small_monitor({str(tmp_path / "run")!r})
        monitor.observe(model, 0)
        print("returned", flush=True)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "returned" in done.stdout
    assert Series(tmp_path / "run").steps() == [0]
    assert Series(tmp_path / "run").load(0).layers == ["conv1", "conv2"]


def _live_objects() -> tuple[int, int]:
    """(live tensors, live Python objects tracked by the garbage collector)."""
    gc.collect()
    objects = gc.get_objects()
    with warnings.catch_warnings():  # isinstance wakes some of torch's deprecated aliases
        warnings.simplefilter("ignore")
        return sum(isinstance(o, torch.Tensor) for o in objects), len(objects)


def test_memory_stays_bounded_however_many_snapshots(tmp_path):
    model, opt = make(seed=0, width=4)
    monitor = small_monitor(tmp_path / "run", every=1)
    monitor.observe(model, 0)
    train(model, opt, range(1, 6), monitor=monitor)
    monitor.flush()
    tensors, objects = _live_objects()
    train(model, opt, range(6, 21), monitor=monitor)
    monitor.flush()
    assert Series(tmp_path / "run").steps() == list(range(21))
    more_tensors, more_objects = _live_objects()
    assert more_tensors <= tensors  # no tensor kept per snapshot
    assert more_objects - objects < 200, (objects, more_objects)  # 15 snapshots later


def test_a_resumed_series_keeps_the_class_names_it_was_given(tmp_path):
    """A probe without names gets "0", "1", ... from the logits; resuming it without names
    keeps them, one layer may be given as a string."""
    images, labels = probe(per_colour=4)
    model, _ = make(seed=0, width=4)
    first = Monitor(tmp_path / "run", (images, labels), "conv2", every=1, top_n=4)
    first.observe(model, 0)
    first.flush()
    again = Monitor(tmp_path / "run", (images, labels), "conv2", every=1, top_n=4, resume=True)
    again.observe(model, 1)
    again.flush()
    series = Series(tmp_path / "run")
    assert series.steps() == [0, 1]
    assert series.load(1).class_names == ["0", "1", "2", "3"] == again.class_names
