"""The Atlas: tables built from the statistics, and its versioned, atomic on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from notebookcarto.atlas import Atlas, AtlasFormatError
from notebookcarto.analyses import Clusters, Embedding, ExemplarConcepts, cluster_table
from notebookcarto.atlas import store

N_IMAGES, H, W = 40, 9, 11
CLASSES = ["cat", "dog", "bird"]


pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 7, 3, stride=2)  # no ReLU: (B, 7, 4, 5) for 9 x 11 images
        self.fc = nn.Linear(7, len(CLASSES))

    def forward(self, x):
        return self.fc(self.conv2(self.relu1(self.conv1(x))).amax((2, 3)))


LAYERS = ["relu1", "conv2", "fc"]


def loader(x, y=None, size=12):
    return [x[i:i + size] if y is None else (x[i:i + size], y[i:i + size])
            for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(7)
    model = Net().eval()
    x = torch.randn(N_IMAGES, 3, H, W)
    y = torch.arange(N_IMAGES) % len(CLASSES)
    return model, x, y


@pytest.fixture(scope="module")
def atlas(data):
    model, x, y = data
    return Atlas.build(model, loader(x, y), LAYERS, class_names=CLASSES, top_n=5, tau=0.5,
                       data_info={"name": "random", "n": N_IMAGES}, progress=False)


@pytest.fixture(scope="module")
def activations(data):
    model, x, _ = data
    acts = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o.detach())) for n in LAYERS]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return acts


def with_sections(atlas: Atlas) -> Atlas:
    """A copy of the atlas with two results attached: clusters and exemplar concepts."""
    copy = Atlas(atlas.stats, class_names=atlas.class_names, model_info=atlas.model_info,
                 data_info=atlas.data_info)
    n = len(copy.neuron_ids)
    labels = np.arange(n) % 3 - 1
    copy.attach(Clusters(labels, labels.copy(), copy.neuron_ids, cluster_table(copy, labels),
                         {"rows": 2, "nested": {"a": [1, 2]}}))
    shares = np.random.default_rng(0).random((n, 2))
    copy.attach(ExemplarConcepts(pd.DataFrame(shares, index=copy.neuron_ids,
                                              columns=["red", "sky"]),
                                 pd.Series([0.5, 0.25], index=["red", "sky"])))
    return copy


def beside(folder: Path) -> list[str]:
    """What a folder holds, less the writers' lock file (``.notebookcarto.lock``, empty, kept)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def assert_atlas_equal(a: Atlas, b: Atlas):
    sa, sb = a.stats.state_dict(), b.stats.state_dict()
    assert sa["config"] == sb["config"]
    assert set(sa["tensors"]) == set(sb["tensors"])
    for key in sa["tensors"]:
        ta, tb = sa["tensors"][key], sb["tensors"][key]
        assert ta.dtype == tb.dtype, key
        assert torch.equal(ta, tb), key
    assert a.class_names == b.class_names
    assert a.model_info == b.model_info and a.data_info == b.data_info
    assert set(a.results) == set(b.results)
    for name, result in a.results.items():
        assert type(b.get(name)) is type(result), name
        section, other = result.to_section(), b.get(name).to_section()
        assert section["meta"] == other["meta"], name
        assert set(section["arrays"]) == set(other["arrays"]), name
        for key, array in section["arrays"].items():
            loaded = other["arrays"][key]
            assert np.asarray(array).dtype == loaded.dtype, (name, key)
            np.testing.assert_array_equal(loaded, array)
    pd.testing.assert_frame_equal(a.neurons, b.neurons)
    pd.testing.assert_frame_equal(a.classes, b.classes)


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------
def test_build_records_model_and_layers(atlas, data):
    model, _, _ = data
    assert atlas.layers == LAYERS
    assert atlas.model_info == {"class": "Net",
                                "parameters": sum(p.numel() for p in model.parameters())}
    assert atlas.data_info == {"name": "random", "n": N_IMAGES}
    assert atlas.class_names == CLASSES
    assert atlas.stats.n_images == N_IMAGES
    assert repr(atlas) == f"Atlas(3 layers, 16 neurons, {N_IMAGES} images, 3 classes)"


def test_build_default_layers_and_no_mappable_layers(data):
    model, x, y = data
    atlas = Atlas.build(model, loader(x, y), top_n=2, progress=False)
    assert atlas.layers == ["relu1"]  # the ReLU after the first convolution
    assert atlas.class_names == ["0", "1", "2"]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 3))
    with pytest.raises(ValueError, match="found no blocks to map"):
        Atlas.build(mlp, loader(x, y), progress=False)


def test_class_names_length_checked(atlas):
    with pytest.raises(ValueError, match="2 class names given for 3 classes"):
        Atlas(atlas.stats, class_names=["a", "b"])


def test_neurons_table(atlas):
    table = atlas.neurons
    ids = [f"{layer}:{c}" for layer, n in (("relu1", 6), ("conv2", 7), ("fc", 3))
           for c in range(n)]
    assert list(table.index) == ids == atlas.neuron_ids
    assert table.index.name == "neuron"
    assert list(table.columns) == ["layer", "channel", "mean", "std", "max", "frequency",
                                   "top_class", "top_class_name", "top_class_count", "a_total"]
    for layer in LAYERS:
        rows = table[table.layer == layer]
        stats = atlas.stats.layers[layer]
        m = stats.moments
        assert rows.channel.tolist() == list(range(stats.channels))
        np.testing.assert_allclose(rows["mean"], m.mean.numpy())
        np.testing.assert_allclose(rows["std"], m.std.numpy())
        np.testing.assert_array_equal(rows["max"], m.maximum.numpy())
        np.testing.assert_allclose(rows["frequency"], m.frequency.numpy())
        counts = stats.aggregation.counts.numpy()
        np.testing.assert_array_equal(rows.top_class, counts.argmax(0))
        assert rows.top_class_name.tolist() == [CLASSES[k] for k in counts.argmax(0)]
        np.testing.assert_array_equal(rows.top_class_count, counts.max(0))
        np.testing.assert_array_equal(rows.a_total, counts.sum(0))
    # a neuron's maximum is the max over its top images
    assert table.loc["conv2:4", "max"] == atlas.top_images("conv2:4")["value"].iloc[0]


def test_neurons_and_classes_without_labels(data):
    model, x, _ = data
    atlas = Atlas.build(model, loader(x), LAYERS, top_n=3, progress=False)
    assert list(atlas.neurons.columns) == ["layer", "channel", "mean", "std", "max", "frequency"]
    assert len(atlas.neurons) == 16
    assert len(atlas.classes) == 0 and atlas.class_names == []
    with pytest.raises(ValueError, match="no class-wise statistics"):
        atlas.aggregation("relu1")
    with pytest.raises(ValueError, match="no class-wise statistics"):
        atlas.top_neurons(0)
    with pytest.raises(ValueError, match="no accuracy statistics"):
        atlas.probability_histogram


def test_classes_table(atlas, data):
    model, x, y = data
    table = atlas.classes
    assert table.index.name == "class" and list(table.index) == [0, 1, 2]
    assert list(table.columns) == ["name", "images", "correct", "accuracy"]
    assert table.name.tolist() == CLASSES
    assert table.images.tolist() == np.bincount(y.numpy(), minlength=3).tolist()
    with torch.no_grad():
        predicted = model(x).argmax(1)
    correct = [int(((predicted == y) & (y == k)).sum()) for k in range(3)]
    assert table.correct.tolist() == correct
    np.testing.assert_allclose(table.accuracy, np.array(correct) / table.images.to_numpy())
    np.testing.assert_array_equal(atlas.probability_histogram,
                                  atlas.stats.accuracy.histogram.numpy())
    assert atlas.probability_histogram.sum(1).tolist() == table.images.tolist()


def test_classes_table_without_logits(data):
    model, x, y = data
    features = nn.Sequential(model.conv1, model.relu1)
    atlas = Atlas.build(features, loader(x, y), ["1"], num_classes=3, top_n=2, progress=False)
    assert list(atlas.classes.columns) == ["name", "images"]
    assert atlas.classes.images.sum() == N_IMAGES


@pytest.mark.parametrize("neuron", ["relu1:0", "relu1:5", "conv2:3", "conv2:6"])
def test_top_images_rows_and_columns(atlas, activations, neuron):
    layer, c = atlas.parse_neuron(neuron)
    table = atlas.top_images(neuron)
    top = atlas.stats.layers[layer].top
    assert table.index.name == "rank" and list(table.columns) == ["image", "value", "row", "col"]
    assert table.image.tolist() == top.index[c].tolist()
    np.testing.assert_array_equal(table.value, top.values[c].numpy())
    width = atlas.stats.shapes[layer][1]
    positions = top.positions[c].numpy()
    np.testing.assert_array_equal(table.row * width + table.col, positions)
    act = activations[layer]
    for image, value, row, col in table.itertuples(index=False):
        assert act[image, c, row, col] == value  # the value sits at (row, col)
        assert act[image, c].max() == value
    assert table.value.is_monotonic_decreasing
    assert (table.col < width).all() and (table.row < atlas.stats.shapes[layer][0]).all()


def test_top_images_vectors_and_unfilled_slots(data):
    model, x, y = data
    atlas = Atlas.build(model, loader(x[:4], y[:4]), ["fc", "conv2"], top_n=10, progress=False)
    table = atlas.top_images("fc:1")
    assert list(table.columns) == ["image", "value", "position"]
    assert len(table) == 4  # empty slots (-1) are left out
    assert sorted(table.image) == [0, 1, 2, 3]
    assert (table.position == 0).all()
    assert len(atlas.top_images("conv2:0")) == 4


def test_top_neurons_order(atlas):
    for cls in (1, "dog", np.int64(1)):
        table = atlas.top_neurons(cls, n=100)
        assert table.index.name == "neuron"
        assert list(table.columns) == ["layer", "channel", "count"]
        expected = []
        for layer in LAYERS:
            counts = atlas.stats.layers[layer].aggregation.counts[1]
            expected += [(f"{layer}:{c}", int(v)) for c, v in enumerate(counts) if v > 0]
        # count descending; ties keep layer / channel order (stable sort)
        expected.sort(key=lambda item: -item[1])
        assert list(zip(table.index, table["count"])) == expected
        assert len(set(table["count"])) < len(table)  # ties were exercised
    top3 = atlas.top_neurons("dog", n=3)
    assert list(top3.index) == [neuron for neuron, _ in expected[:3]]
    only = atlas.top_neurons("bird", layer="conv2", n=100)
    assert set(only.layer) == {"conv2"}
    counts = atlas.stats.layers["conv2"].aggregation.counts[2]
    assert only["count"].sum() == int(counts.sum())
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        atlas.top_neurons("dog", layer="nope")


def test_aggregation_table(atlas):
    table = atlas.aggregation("conv2")
    counts = atlas.stats.layers["conv2"].aggregation.counts.numpy()
    np.testing.assert_array_equal(table.to_numpy(), counts)
    assert list(table.index) == CLASSES and table.index.name == "class"
    assert list(table.columns) == [f"conv2:{c}" for c in range(7)]
    assert table.columns.name == "neuron"
    with pytest.raises(KeyError, match=r"unknown layer 'conv3': this atlas has \['relu1'"):
        atlas.aggregation("conv3")


@pytest.mark.parametrize("neuron, message", [
    ("nope:1", "unknown neuron 'nope:1': ids are 'layer:channel'"),
    ("relu1", "unknown neuron 'relu1'"),
    ("relu1:", "unknown neuron 'relu1:'"),
    ("relu1:x", "unknown neuron 'relu1:x'"),
    ("relu1:-1", "unknown neuron 'relu1:-1'"),
    ("relu1:6", "layer 'relu1' has 6 channels"),
    ("relu1:²", "unknown neuron"),  # a unicode digit that int() refuses
])
def test_parse_neuron_errors(atlas, neuron, message):
    with pytest.raises(KeyError, match=message):
        atlas.parse_neuron(neuron)
    with pytest.raises(KeyError, match=message):
        atlas.top_images(neuron)


def test_parse_neuron(atlas):
    assert atlas.parse_neuron("conv2:6") == ("conv2", 6)
    assert atlas.parse_neuron("relu1:0") == ("relu1", 0)


def test_class_index(atlas):
    assert atlas.class_index("bird") == 2
    assert atlas.class_index(0) == 0
    assert atlas.class_index(np.int64(2)) == 2
    for bad in ("fish", 3, -1, "0", 1.0):
        with pytest.raises(KeyError, match=r"unknown class .*0\.\.2"):
            atlas.class_index(bad)


# ------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------
def test_save_load_round_trip(atlas, tmp_path):
    original = with_sections(atlas)
    original.save(tmp_path / "atlas")
    loaded = Atlas.load(tmp_path / "atlas")
    assert_atlas_equal(original, loaded)
    assert loaded.layers == LAYERS and loaded.stats.shapes == atlas.stats.shapes
    # the loaded atlas works like the original
    pd.testing.assert_frame_equal(loaded.top_images("conv2:2"), atlas.top_images("conv2:2"))
    pd.testing.assert_frame_equal(loaded.top_neurons("cat"), atlas.top_neurons("cat"))
    pd.testing.assert_frame_equal(loaded.aggregation("relu1"), atlas.aggregation("relu1"))
    manifest = json.loads((tmp_path / "atlas" / "manifest.json").read_text())
    assert manifest["format"] == store.FORMAT and manifest["version"] == store.VERSION
    assert beside(tmp_path) == ["atlas"]  # nothing left beside it


def test_save_load_round_trip_without_labels(data, tmp_path):
    model, x, _ = data
    atlas = Atlas.build(model, loader(x), ["conv2"], top_n=4, progress=False)
    atlas.save(str(tmp_path / "plain"))  # a str path works too
    loaded = Atlas.load(str(tmp_path / "plain"))
    assert_atlas_equal(atlas, loaded)
    assert loaded.stats.accuracy is None and loaded.class_names == []


def test_loaded_stats_can_be_merged(atlas, data, tmp_path):
    model, x, y = data
    atlas.save(tmp_path / "a")
    loaded = Atlas.load(tmp_path / "a")
    more = Atlas.build(model, loader(x[:12], y[:12]), LAYERS, class_names=CLASSES, top_n=5,
                       tau=0.5, index_offset=N_IMAGES, progress=False)
    loaded.stats.merge(more.stats)
    assert loaded.stats.n_images == N_IMAGES + 12
    assert int(loaded.stats.accuracy.count.sum()) == N_IMAGES + 12


def test_save_replaces_existing_atlas(atlas, tmp_path):
    path = tmp_path / "atlas"
    with_sections(atlas).save(path)
    atlas.save(path)  # no results this time
    loaded = Atlas.load(path)
    assert loaded.results == {}
    assert_atlas_equal(atlas, loaded)
    assert beside(tmp_path) == ["atlas"]
    assert len(list((path / "arrays").iterdir())) == len(atlas.stats.state_dict()["tensors"])


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_save_refuses_non_atlas_path(atlas, tmp_path, kind):
    path = tmp_path / "precious"
    if kind == "folder":
        path.mkdir()
        (path / "notes.txt").write_text("keep me")
        (path / "sub").mkdir()
    else:
        path.write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not an atlas"):
        atlas.save(path)
    if kind == "folder":
        assert sorted(p.name for p in path.iterdir()) == ["notes.txt", "sub"]
        assert (path / "notes.txt").read_text() == "keep me"
    else:
        assert path.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def _crash_after_first_save(monkeypatch):
    real_save, calls = np.save, []

    def save(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > 1:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(store.np, "save", save)
    return calls


def test_crash_while_writing_keeps_previous_atlas(atlas, tmp_path, monkeypatch):
    path = tmp_path / "atlas"
    atlas.save(path)
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    calls = _crash_after_first_save(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        with_sections(atlas).save(path)
    assert len(calls) == 2
    monkeypatch.undo()
    assert beside(tmp_path) == ["atlas"]  # no temp folder left
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    assert_atlas_equal(atlas, Atlas.load(path))


def test_crash_while_writing_a_new_atlas_leaves_nothing(atlas, tmp_path, monkeypatch):
    _crash_after_first_save(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        atlas.save(tmp_path / "new")
    assert beside(tmp_path) == []


# ------------------------------------------------------------------------------------------
# load errors
# ------------------------------------------------------------------------------------------
@pytest.fixture
def saved(atlas, tmp_path) -> Path:
    path = tmp_path / "atlas"
    with_sections(atlas).save(path)
    return path


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path: Path, manifest: dict):
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_load_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no atlas at .*nowhere: the path does not exist"):
        Atlas.load(tmp_path / "nowhere")


def test_load_folder_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasFormatError, match="is not an atlas: it has no manifest.json"):
        Atlas.load(tmp_path / "empty")


@pytest.mark.parametrize("content", ['{"format": "notebookcarto.atlas", "version"', "",
                                     b"\xff\xfe\x00garbage"])
def test_load_corrupt_manifest(saved, content):
    target = saved / "manifest.json"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(AtlasFormatError, match="manifest.json is corrupt or truncated"):
        Atlas.load(saved)


def test_load_manifest_of_something_else(saved):
    _write_manifest(saved, {"format": "something.else", "version": 1})
    with pytest.raises(AtlasFormatError, match="is not an atlas manifest"):
        Atlas.load(saved)
    _write_manifest(saved, [1, 2, 3])
    with pytest.raises(AtlasFormatError, match="is not an atlas manifest"):
        Atlas.load(saved)


def test_load_newer_version(saved):
    manifest = _manifest(saved)
    manifest["version"] = store.VERSION + 1
    _write_manifest(saved, manifest)
    with pytest.raises(AtlasFormatError, match=rf"atlas format {store.VERSION + 1}, newer than "
                                               rf".*\({store.VERSION}\): upgrade notebookcarto"):
        Atlas.load(saved)


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip"])
def test_load_damaged_array(saved, damage):
    manifest = _manifest(saved)
    key = "stats/conv2/top/values"
    file = saved / manifest["arrays"][key]["file"]
    raw = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(raw[: len(raw) // 2])
    elif damage == "delete":
        file.unlink()
    else:
        file.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(AtlasFormatError,
                       match=rf"array '{key}' \(arrays/\d+\.npy\) is missing, corrupt or "
                             "truncated; save the atlas again"):
        Atlas.load(saved)


def test_load_array_that_disagrees_with_manifest(saved):
    manifest = _manifest(saved)
    manifest["arrays"]["stats/relu1/top/index"]["shape"] = [1, 2]
    _write_manifest(saved, manifest)
    with pytest.raises(AtlasFormatError, match=r"'stats/relu1/top/index' has shape .* the "
                                               r"manifest says \[1, 2\]"):
        Atlas.load(saved)


def test_load_manifest_with_malformed_array_entry(saved):
    manifest = _manifest(saved)
    del manifest["arrays"]["stats/relu1/top/index"]["sha256"]
    _write_manifest(saved, manifest)
    with pytest.raises(AtlasFormatError, match="stats/relu1/top/index"):
        Atlas.load(saved)


@pytest.mark.parametrize("edit", ["no stats", "missing array", "wrong channels"])
def test_load_inconsistent_atlas(saved, edit):
    manifest = _manifest(saved)
    if edit == "no stats":
        del manifest["stats"]
    elif edit == "missing array":
        del manifest["arrays"]["stats/conv2/moments/fired"]
    else:
        manifest["stats"]["channels"]["conv2"] = 8
    _write_manifest(saved, manifest)
    with pytest.raises(AtlasFormatError, match="the atlas is inconsistent"):
        Atlas.load(saved)


def test_results_add_neuron_columns_that_survive_save(atlas, tmp_path):
    extended = with_sections(atlas)
    n = len(atlas.neuron_ids)
    extended.save(tmp_path / "a")
    loaded = Atlas.load(tmp_path / "a")
    assert loaded.neurons["cluster"].tolist() == (np.arange(n) % 3 - 1).tolist()
    assert isinstance(loaded.get(Clusters), Clusters) and loaded.get("clusters").n_clusters == 2
    assert loaded.get(Clusters).table.equals(extended.get(Clusters).table)


def test_attach_checks_the_schema_and_get_names_the_analysis(atlas):
    copy = Atlas(atlas.stats, class_names=atlas.class_names)
    n = len(copy.neuron_ids)
    with pytest.raises(KeyError, match=r"no 'clusters' result yet: run atlas.attach\("
                                       r"analyses.cluster_neurons\(atlas, model, data\)\)"):
        copy.get(Clusters)
    with pytest.raises(KeyError, match="unknown kind of result 'nope'"):
        copy.get("nope")
    wrong = Clusters(np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64), copy.neuron_ids,
                     pd.DataFrame(), {})
    with pytest.raises(AtlasFormatError, match=r"section 'clusters': array 'cluster' has shape "
                                               rf"\({n + 1},\), the schema says \(neurons,\) "
                                               rf"with neurons = {n}"):
        copy.attach(wrong)
    doubles = Embedding(np.zeros((n, 3)), np.zeros((n, 2), np.float32),
                        np.zeros((0, n, 3), np.float32), np.zeros((0, n, 2), np.float32), [],
                        copy.neuron_ids)
    with pytest.raises(AtlasFormatError, match="section 'embedding': array 'vectors' has dtype "
                                               "float64, the schema says float32"):
        copy.attach(doubles)
    unsaveable = Clusters(np.zeros(n, np.int64), np.zeros(n, np.int64), copy.neuron_ids,
                          pd.DataFrame(), {"model": object()})
    with pytest.raises(AtlasFormatError, match="section 'clusters': its meta cannot be saved as "
                                               "JSON"):
        copy.attach(unsaveable)
    with pytest.raises(TypeError, match="cannot attach a dict"):
        copy.attach({"meta": {}, "arrays": {}})
    assert not copy.has(Clusters) and copy.results == {}


def test_unknown_sections_are_kept_and_saved_back(atlas, tmp_path):
    path = tmp_path / "atlas"
    atlas.save(path)
    manifest = _manifest(path)
    manifest["sections"]["from_the_future"] = {"note": "kept"}
    _write_manifest(path, manifest)
    Atlas.load(path).save(tmp_path / "again")
    assert _manifest(tmp_path / "again")["sections"]["from_the_future"] == {"note": "kept"}


def test_a_section_that_breaks_its_schema_is_refused_on_load(atlas, tmp_path):
    path = tmp_path / "atlas"
    with_sections(atlas).save(path)
    manifest = _manifest(path)
    del manifest["sections"]["clusters"]["n_clusters"]
    _write_manifest(path, manifest)
    with pytest.raises(AtlasFormatError, match="section 'clusters' cannot be read .*meta lacks "
                                               "'n_clusters'"):
        Atlas.load(path)


def test_an_atlas_of_format_1_loads_its_statistics_and_readable_results(atlas, tmp_path):
    """Format 1 kept moments as sums of x and x^2 and some results in other layouts: the
    statistics convert, results that fit today's schema load, the others are left out with a
    warning that names the call to run again."""
    import hashlib

    path = tmp_path / "old"
    with_sections(atlas).save(path)
    manifest = _manifest(path)
    manifest["version"] = 1

    def put(key, array):
        file = f"arrays/{key.replace('/', '_')}.npy"
        np.save(path / file, array, allow_pickle=False)
        manifest["arrays"][key] = {"file": file, "dtype": str(array.dtype),
                                   "shape": list(array.shape),
                                   "sha256": hashlib.sha256((path / file).read_bytes()).hexdigest()}

    for name in atlas.layers:
        m = atlas.stats.layers[name].moments
        n = float(m.count)
        del manifest["arrays"][f"stats/{name}/moments/mean"]
        del manifest["arrays"][f"stats/{name}/moments/m2"]
        put(f"stats/{name}/moments/total", (m.mean * n).numpy())
        put(f"stats/{name}/moments/total_sq", (m.m2 + n * m.mean ** 2).numpy())
    manifest["sections"]["dissection"] = {"neuron_columns": ["concept"], "summary": []}
    put("sections/dissection/concept", np.array(["red"] * len(atlas.neuron_ids)))
    _write_manifest(path, manifest)
    with pytest.warns(UserWarning, match=r"section 'dissection' was saved by an older "
                                         r"notebookcarto \(format 1\).*analyses.dissect"):
        old = Atlas.load(path)
    for name in atlas.layers:
        ours, theirs = old.stats.layers[name].moments, atlas.stats.layers[name].moments
        torch.testing.assert_close(ours.mean, theirs.mean)
        torch.testing.assert_close(ours.std, theirs.std)
    assert set(old.results) == {"clusters", "exemplar_concepts"}
    assert "concept" not in old.neurons
