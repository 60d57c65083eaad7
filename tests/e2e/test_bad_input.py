"""Bad input, answered clearly: across building, saving and loading, every analysis and the views,
each case raises the expected exception type, with a message that names the argument (or the
thing) at fault, and where it can be known before any work, before the model ran a batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import atlas_from_aggregation
from notebookcarto import ActivationStats, Atlas, AtlasFormatError, analyses, collect_stats
from notebookcarto.capture import LayerError
from notebookcarto.datasets import ConceptPlayground, ImageData, PlaygroundConcepts
from notebookcarto.models import PlaygroundCNN

N = 24


class World:
    """The model (with a forward counter), data and atlases every case draws on."""

    def __init__(self, tmp: Path):
        self.data = ConceptPlayground(n=N, size=32, seed=5)
        self.x, self.y = self.data.tensors()
        torch.manual_seed(0)
        self.model = PlaygroundCNN(num_classes=len(self.data.classes), width=8).eval()
        self.batches = 0
        self.model.register_forward_pre_hook(self._count)
        self.atlas = Atlas.build(self.model, (self.x, self.y), class_names=self.data.classes,
                                 top_n=4, progress=False)
        self.unlabelled = Atlas.build(self.model, self.x, top_n=4, progress=False)
        self.one_layer = Atlas.build(self.model, (self.x, self.y), ["block1"], top_n=4,
                                     progress=False)
        self.concepts = PlaygroundConcepts(ConceptPlayground(n=8, size=32, seed=6))
        self.dissection = analyses.dissect(self.model, self.concepts, ["block4"], progress=False)
        self.tmp = tmp
        self.saved = tmp / "saved"
        self.atlas.save(self.saved)
        self.batches = 0

    def _count(self, module, args):
        self.batches += 1

    def broken_copy(self, edit, text: str | None = None) -> Path:
        """A copy of the saved atlas with ``edit(path, manifest)`` applied to its manifest, or
        with its manifest replaced by ``text``."""
        import shutil

        path = self.tmp / f"broken-{len(list(self.tmp.iterdir()))}"
        shutil.copytree(self.saved, path)
        manifest = json.loads((path / "manifest.json").read_text())
        if edit is not None:
            edit(path, manifest)
        (path / "manifest.json").write_text(json.dumps(manifest) if text is None else text)
        return path


def _set(manifest, key, value):
    manifest[key] = value


def _pickled(path, manifest):
    import hashlib

    entry = manifest["arrays"]["stats/block1/top/values"]
    np.save(path / entry["file"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    entry["sha256"] = hashlib.sha256((path / entry["file"]).read_bytes()).hexdigest()


class Token(nn.Module):
    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


class FiveD(nn.Module):
    def forward(self, x):
        return x.unsqueeze(2)


def _with_module(w, module, name="extra"):
    model = nn.Sequential(w.model.block1)
    model.add_module(name, module)
    return model


# (case id, call(w), exception type, message pattern, raised before a batch ran)
CASES = [
    # -- data ---------------------------------------------------------------------------------
    ("data-int", lambda w: Atlas.build(w.model, 3), TypeError, "cannot read images from a int", True),
    ("data-str", lambda w: Atlas.build(w.model, "images/"), TypeError, "cannot read images from a str", True),
    ("data-dict", lambda w: Atlas.build(w.model, {"image": w.x}), TypeError, "cannot read images from a dict", True),
    ("data-uint8", lambda w: Atlas.build(w.model, (w.x * 255).byte()), ValueError, r"images must be a float tensor .*torch\.uint8", True),
    ("data-float64", lambda w: Atlas.build(w.model, w.x.double()), ValueError, r"images are torch\.float64 but the model's parameters are torch\.float32", True),
    ("data-3d", lambda w: Atlas.build(w.model, w.x[0]), ValueError, r"images must be a float tensor of shape \(B, C, H, W\)", True),
    # checked when the first convolution is about to run
    ("data-channels-last", lambda w: Atlas.build(w.model, w.x.permute(0, 2, 3, 1).contiguous()), ValueError, "look channels-last", False),
    ("data-one-channel", lambda w: Atlas.build(w.model, w.x[:, :1]), ValueError, r"1 channel\(s\) but the model's first convolution reads 3", False),
    ("data-ndarray", lambda w: Atlas.build(w.model, [w.x.numpy()]), ValueError, "images must be a float tensor .* got ndarray", True),
    ("data-pil", lambda w: Atlas.build(w.model, ConceptPlaygroundPIL(w)), ValueError, "ToTensor", True),
    ("labels-float", lambda w: Atlas.build(w.model, (w.x, w.y.float())), ValueError, "labels must be integer class indices", True),
    ("labels-bool", lambda w: Atlas.build(w.model, (w.x, w.y > 3)), ValueError, "labels must be integer class indices, got torch.bool", True),
    ("labels-length", lambda w: Atlas.build(w.model, (w.x, w.y[:-1])), ValueError, "hold 24 images but 23 labels", True),
    ("labels-2d", lambda w: Atlas.build(w.model, [(w.x, w.y[:, None])]), ValueError, r"expected 24 labels \(one per image\)", True),
    ("labels-range", lambda w: Atlas.build(w.model, (w.x, w.y + 50)), ValueError, "label .* is out of range for 8 classes", False),
    ("labels-negative", lambda w: Atlas.build(w.model, (w.x, w.y - 9)), ValueError, "out of range for 8 classes", False),
    ("labels-some-batches", lambda w: Atlas.build(w.model, [(w.x[:8], w.y[:8]), w.x[8:]]), ValueError, "some batches have labels and others do not", False),
    ("dict-keys", lambda w: Atlas.build(w.model, [{"img": w.x, "target": w.y}]), KeyError, r"keys \['img', 'target'\].*pass image_key=", True),
    ("dict-label-key", lambda w: Atlas.build(w.model, [{"image": w.x}], label_key="cls"), KeyError, "label_key='cls'", True),
    ("dict-custom-keys-ok-then-range", lambda w: Atlas.build(w.model, [{"img": w.x, "cls": w.y + 40}], image_key="img", label_key="cls"), ValueError, "out of range", False),
    ("data-empty", lambda w: Atlas.build(w.model, []), ValueError, "yielded no batches", True),
    ("data-empty-tensor", lambda w: Atlas.build(w.model, w.x[:0]), ValueError, "yielded no batches", True),
    ("data-again", lambda w: ImageData(ImageData(w.x)), TypeError, "already an ImageData", True),
    ("batch-size-zero", lambda w: Atlas.build(w.model, w.x, batch_size=0), ValueError, "batch_size must be a positive integer", True),
    ("batch-size-bool", lambda w: Atlas.build(w.model, w.x, batch_size=True), ValueError, "batch_size", True),
    ("batch-size-float", lambda w: Atlas.build(w.model, w.x, batch_size=8.0), ValueError, "batch_size", True),
    # -- layers -------------------------------------------------------------------------------
    ("layers-empty", lambda w: Atlas.build(w.model, w.x, []), ValueError, "no layers given", True),
    ("layers-unknown", lambda w: Atlas.build(w.model, w.x, ["blok1"]), KeyError, r"unknown layer 'blok1'.*block1", True),
    ("layers-root", lambda w: Atlas.build(w.model, w.x, [""]), KeyError, "unknown layer ''", True),
    ("layers-foreign-module", lambda w: Atlas.build(w.model, w.x, [nn.ReLU()]), KeyError, "not a submodule of this model", True),
    ("layers-int", lambda w: Atlas.build(w.model, w.x, [3]), TypeError, r"layers must be module paths \(str\)", True),
    ("layers-none-item", lambda w: Atlas.build(w.model, w.x, [None]), TypeError, "layers must be module paths", True),
    ("layers-repeat", lambda w: Atlas.build(w.model, w.x, ["block1", "block1"]), ValueError, "layer names repeat", True),
    ("layers-two-spellings", lambda w: Atlas.build(w.model, w.x, ["block1", "block1#0"]), ValueError, "name the same module 'block1' twice", True),
    ("layers-module-and-path", lambda w: Atlas.build(w.model, w.x, [w.model.block1, "block1"]), ValueError, "layer names repeat", True),
    ("layers-bad-call", lambda w: Atlas.build(w.model, w.x, ["block1#x"]), ValueError, "call index", True),
    ("layers-never-run", lambda w: Atlas.build(w.model, w.x, ["block1#1"]), LayerError, r"\['block1#1'\] did not run", False),
    ("layers-number", lambda w: Atlas.build(w.model, w.x, 5), TypeError, "layers must be module paths or modules of the model, got a int", True),
    ("layer-5d", lambda w: collect_stats(_with_module(w, FiveD()), w.x, ["extra"], progress=False), ValueError, r"layer 'extra' gives an output of shape \(24, 8, 1, 32, 32\)", False),
    ("layer-not-tensor", lambda w: collect_stats(_with_module(w, Dicty()), w.x, ["extra"], progress=False), LayerError, r"layer 'extra' returned dict", False),
    # -- statistics options -------------------------------------------------------------------
    ("top-n-zero", lambda w: Atlas.build(w.model, w.x, top_n=0), ValueError, "top_n must be", True),
    ("top-n-float", lambda w: Atlas.build(w.model, w.x, top_n=2.5), ValueError, "top_n must be", True),
    ("tau-zero", lambda w: Atlas.build(w.model, w.x, tau=0), ValueError, "tau", True),
    ("tau-large", lambda w: Atlas.build(w.model, w.x, tau=2), ValueError, "tau", True),
    ("tau-word", lambda w: Atlas.build(w.model, w.x, tau="many"), ValueError, "tau", True),
    ("bins-zero", lambda w: Atlas.build(w.model, w.x, bins=0), ValueError, "bins must be", True),
    ("num-classes-zero", lambda w: Atlas.build(w.model, (w.x, w.y), num_classes=0), ValueError, "num_classes must be", True),
    ("num-classes-small", lambda w: Atlas.build(w.model, (w.x, w.y), num_classes=3), ValueError, "out of range for 3 classes", False),
    ("skip-tokens-negative", lambda w: Atlas.build(w.model, w.x, skip_tokens=-1), ValueError, "skip_tokens must be", True),
    ("index-offset-negative", lambda w: Atlas.build(w.model, w.x, index_offset=-1), ValueError, "index_offset must be", True),
    ("exclude-unknown-layer", lambda w: Atlas.build(w.model, (w.x, w.y), exclude={"nope": [0]}), KeyError, r"exclude names layers \['nope'\]", True),
    ("exclude-bad-channel", lambda w: Atlas.build(w.model, (w.x, w.y), ["block1"], exclude={"block1": [999]}), ValueError, r"exclude: channel 999 of 'block1'", False),
    ("device-word", lambda w: Atlas.build(w.model, w.x, device="gpu"), ValueError, "device='gpu' is not a torch device", True),
    ("device-cuda", lambda w: Atlas.build(w.model, w.x, device="cuda"), ValueError, r"the model is on cpu but device='cuda'", True),
    ("class-names-length", lambda w: Atlas.build(w.model, (w.x, w.y), class_names=["a", "b"]), ValueError, "class_names has 2 names but the model's output has 8 classes", False),
    ("class-names-no-labels", lambda w: Atlas.build(w.model, w.x, class_names=w.data.classes), ValueError, "class_names has 8 names but the data has no labels", False),
    ("class-names-str", lambda w: Atlas.build(w.model, (w.x, w.y), class_names="abc"), TypeError, "class_names must be a list", True),
    ("no-logits-with-labels", lambda w: collect_stats(nn.Sequential(w.model.block1), (w.x, w.y), ["0"], progress=False), ValueError, "pass num_classes=", False),
    ("nan-activations", lambda w: collect_stats(w.model, w.x * float("nan"), ["block1"], progress=False), FloatingPointError, r"layer\(s\) \['block1'\] produced NaN", False),
    ("model-not-module", lambda w: Atlas.build(lambda x: x, w.x), TypeError, "model must be a torch.nn.Module", True),
    # -- save / load --------------------------------------------------------------------------
    ("save-over-folder", lambda w: w.atlas.save(_folder(w)), FileExistsError, "exists and is not an atlas", True),
    ("save-under-file", lambda w: w.atlas.save(_file(w) / "atlas"), NotADirectoryError, "is a file, not a folder", True),
    ("save-under-proc", lambda w: w.atlas.save("/proc/nc-atlas"), OSError, r"could not write /proc/nc-atlas", True),
    ("load-missing", lambda w: Atlas.load(w.tmp / "nowhere"), FileNotFoundError, "no atlas at .*nowhere", True),
    ("load-not-atlas", lambda w: Atlas.load(_folder(w)), AtlasFormatError, "has no manifest.json", True),
    ("load-corrupt-json", lambda w: Atlas.load(_garbled(w)), AtlasFormatError, "corrupt or truncated", True),
    ("load-list-manifest", lambda w: Atlas.load(w.broken_copy(None, "[1]")), AtlasFormatError, "not an atlas manifest", True),
    ("load-version-string", lambda w: Atlas.load(w.broken_copy(lambda p, m: _set(m, "version", "2"))), AtlasFormatError, r"no valid format version \(got '2'\)", True),
    ("load-version-missing", lambda w: Atlas.load(w.broken_copy(lambda p, m: m.pop("version"))), AtlasFormatError, r"no valid format version \(got None\)", True),
    ("load-version-new", lambda w: Atlas.load(w.broken_copy(lambda p, m: _set(m, "version", 99))), AtlasFormatError, "format 99, newer than", True),
    ("load-arrays-list", lambda w: Atlas.load(w.broken_copy(lambda p, m: _set(m, "arrays", []))), AtlasFormatError, "'arrays' must map array names", True),
    ("load-entry-malformed", lambda w: Atlas.load(w.broken_copy(lambda p, m: _set(m["arrays"], "stats/block1/top/values", {"file": "x"}))), AtlasFormatError, "malformed", True),
    ("load-array-missing", lambda w: Atlas.load(w.broken_copy(lambda p, m: (p / m["arrays"]["stats/block1/top/values"]["file"]).unlink())), AtlasFormatError, "missing, corrupt or truncated", True),
    ("load-array-corrupt", lambda w: Atlas.load(w.broken_copy(lambda p, m: (p / m["arrays"]["stats/block1/top/values"]["file"]).write_bytes(b"junk"))), AtlasFormatError, "missing, corrupt or truncated", True),
    ("load-pickled", lambda w: Atlas.load(w.broken_copy(_pickled)), AtlasFormatError, "cannot be read without pickle", True),
    ("load-stats-missing", lambda w: Atlas.load(w.broken_copy(lambda p, m: m.pop("stats"))), AtlasFormatError, "inconsistent", True),
    ("load-array-dropped", lambda w: Atlas.load(w.broken_copy(lambda p, m: m["arrays"].pop("stats/block1/top/values"))), AtlasFormatError, "inconsistent", True),
    ("load-channels-edited", lambda w: Atlas.load(w.broken_copy(lambda p, m: m["stats"]["channels"].update(block1=99))), AtlasFormatError, "inconsistent", True),
    ("load-device-cuda", lambda w: Atlas.load(w.saved, device="cuda"), ValueError, "device='cuda' but CUDA is not available", True),
    ("load-device-word", lambda w: Atlas.load(w.saved, device="gpu"), ValueError, "device='gpu' is not a torch device", True),
    # -- the atlas ----------------------------------------------------------------------------
    ("neuron-unknown", lambda w: w.atlas.top_images("nope:1"), KeyError, "unknown neuron 'nope:1'", True),
    ("neuron-channel", lambda w: w.atlas.top_images("block1:999"), KeyError, "layer 'block1' has 8 channels", True),
    ("neuron-no-colon", lambda w: w.atlas.parse_neuron("block1"), KeyError, "unknown neuron 'block1'", True),
    ("layer-unknown", lambda w: w.atlas.aggregation("nope"), KeyError, "unknown layer 'nope'", True),
    ("class-unknown", lambda w: w.atlas.top_neurons("nope"), KeyError, "unknown class 'nope'", True),
    ("class-index", lambda w: w.atlas.top_neurons(99), KeyError, "unknown class 99", True),
    ("classes-missing", lambda w: w.unlabelled.top_neurons(0), ValueError, "no class-wise statistics", True),
    ("aggregation-unlabelled", lambda w: w.unlabelled.aggregation("block1"), ValueError, "no class-wise statistics", True),
    ("histogram-missing", lambda w: w.unlabelled.probability_histogram, ValueError, "no accuracy statistics", True),
    ("neurons-empty", lambda w: Atlas(ActivationStats()).neurons, ValueError, "holds no layers yet", True),
    ("atlas-class-names", lambda w: Atlas(w.atlas.stats, class_names=["a"]), ValueError, "1 class names given for 8 classes", True),
    ("attach-dict", lambda w: w.atlas.attach({"meta": {}, "arrays": {}}), TypeError, "cannot attach a dict", True),
    ("attach-wrong-shape", lambda w: Atlas(w.atlas.stats).attach(analyses.Clusters(np.zeros(3, np.int64), np.zeros(3, np.int64), [], pd.DataFrame())), Exception, "section 'clusters': array 'cluster' has shape", True),
    ("get-unknown", lambda w: w.atlas.get("nope"), KeyError, "unknown kind of result 'nope'", True),
    ("get-missing", lambda w: w.atlas.get(analyses.Clusters), KeyError, r"no 'clusters' result yet: run atlas.attach\(analyses.cluster_neurons", True),
    ("detach-missing", lambda w: w.atlas.detach("embedding"), KeyError, "no 'embedding' result yet", True),
    ("merge-atlas", lambda w: w.atlas.stats.merge(w.atlas), TypeError, r"cannot merge a Atlas into statistics.*atlas\.stats", True),
    ("merge-overlap", lambda w: w.atlas.stats.merge(Atlas.build(w.model, (w.x, w.y), top_n=4, progress=False).stats), ValueError, "overlapping image ids", False),
    ("merge-top-n", lambda w: w.atlas.stats.merge(Atlas.build(w.model, (w.x, w.y), top_n=3, index_offset=N, progress=False).stats), ValueError, "different top_n", False),
    # -- patches ------------------------------------------------------------------------------
    ("patches-n-zero", lambda w: analyses.example_patches(w.atlas, w.model, w.data, n_patches=0), ValueError, "n_patches must be", True),
    ("patches-n-str", lambda w: analyses.example_patches(w.atlas, w.model, w.data, n_patches="9"), ValueError, "n_patches must be", True),
    ("patches-short-data", lambda w: analyses.example_patches(w.atlas, w.model, w.x[:10]), ValueError, "the atlas was built over 24 images but the data set has 10", True),
    ("patches-size", lambda w: analyses.example_patches(w.atlas, w.model, w.data, size=0), ValueError, "size must be a positive number", True),
    ("patches-fill", lambda w: analyses.example_patches(w.atlas, w.model, w.data, fill=300), ValueError, "fill must be a value in 0..255", True),
    ("patches-hwc-uint8", lambda w: analyses.example_patches(w.atlas, w.model, HWC(w)), ValueError, r"images must be a float tensor of shape \(C, H, W\), got torch.uint8 tensor of shape \(32, 32, 3\)", True),
    ("patches-shuffled", lambda w: analyses.example_patches(w.atlas, w.model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(w.x), shuffle=True)), TypeError, "images by id need", True),
    ("patches-rf-missing", lambda w: analyses.example_patches(w.atlas, w.model, w.data, rf={}), KeyError, "no receptive field for layers", True),
    ("neuron-patches-n", lambda w: analyses.neuron_patches(w.atlas, "block1:0", w.data, {}, n_patches=0), ValueError, "n_patches must be", True),
    ("neuron-patches-unknown", lambda w: analyses.neuron_patches(w.atlas, "nope:0", w.data, {}), KeyError, "unknown neuron 'nope:0'", True),
    ("neuron-patches-rf", lambda w: analyses.neuron_patches(w.atlas, "block1:0", w.data, {"block2": None}), KeyError, "no receptive field for layer 'block1'", True),
    ("crop-lengths", lambda w: analyses.crop_patches(w.data, _rf(w), [0, 1], [0], [0, 1]), ValueError, "got 2 image ids, 1 rows and 2 columns", True),
    ("crop-rf-type", lambda w: analyses.crop_patches(w.data, {"block1": 1}, [0], [0], [0]), TypeError, "rf must be a ReceptiveField", True),
    ("crop-position", lambda w: analyses.crop_patches(w.data, _rf(w), [0], [99], [0]), ValueError, r"position \(99, 0\) is outside", True),
    ("rf-shape", lambda w: analyses.receptive_fields(w.model, ["block1"], (3, 0, 16)), ValueError, "input_shape must be", True),
    ("rf-rank", lambda w: analyses.receptive_fields(w.model, ["block1"], (1, 3, 16, 16)), ValueError, "input_shape must be", True),
    ("rf-hwc", lambda w: analyses.receptive_fields(w.model, ["block1"], (32, 32, 3)), ValueError, r"input_shape \(32, 32, 3\) looks like \(H, W, C\)", True),
    ("rf-batch", lambda w: analyses.receptive_fields(w.model, ["block1"], (3, 32, 32), batch=0), ValueError, "batch must be", True),
    ("rf-layer", lambda w: analyses.receptive_fields(w.model, ["nope"], (3, 32, 32)), KeyError, "unknown layer 'nope'", True),
    # -- clusters and embedding ---------------------------------------------------------------
    ("cluster-rows", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x, rows=0), ValueError, "rows must be an integer", True),
    ("cluster-bands", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x, bands=-1), ValueError, "bands must be an integer", True),
    ("cluster-refine-rows", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x, refine_rows=0), ValueError, "refine_rows must be", True),
    ("cluster-no-model", lambda w: analyses.cluster_neurons(w.atlas), ValueError, "pass model=", True),
    ("cluster-refine-images", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x, refine_images=0), ValueError, "refine_images must be", True),
    ("cluster-ratio", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x, ratio=1.5), ValueError, "ratio must be", True),
    ("cluster-backend", lambda w: analyses.cluster_neurons(w.atlas, refine=False, backend="gpu"), ValueError, "backend must be one of", True),
    ("cluster-empty-atlas", lambda w: analyses.cluster_neurons(Atlas(ActivationStats()), refine=False), ValueError, "holds no statistics yet", True),
    ("cluster-short-data", lambda w: analyses.cluster_neurons(w.atlas, w.model, w.x[:10]), ValueError, "has 10 images but the atlas saw 24", True),
    ("embed-dim", lambda w: analyses.embed_neurons(w.atlas, dim=0, progress=False), ValueError, "dim must be an integer", True),
    ("embed-epochs", lambda w: analyses.embed_neurons(w.atlas, epochs=0, progress=False), ValueError, "epochs must be an integer", True),
    ("embed-lr", lambda w: analyses.embed_neurons(w.atlas, lr=0, progress=False), ValueError, "lr must be > 0", True),
    ("embed-snapshots", lambda w: analyses.embed_neurons(w.atlas, epochs=2, snapshot_epochs=[9], progress=False), ValueError, "snapshot_epochs must lie in 1..2", True),
    ("embed-negatives", lambda w: analyses.embed_neurons(w.atlas, negatives=0, progress=False), ValueError, "negatives must be", True),
    ("nearest-unknown", lambda w: _embedding(w).nearest("nope:0"), KeyError, "unknown neuron 'nope:0'", True),
    # -- influence and graphs -----------------------------------------------------------------
    ("influence-estimator", lambda w: analyses.count_influence(w.atlas, w.model, (w.x, w.y), estimator="lrp"), ValueError, "estimator", True),
    ("influence-unlabelled-atlas", lambda w: analyses.count_influence(w.unlabelled, w.model, (w.x, w.y)), ValueError, "no class-wise statistics", True),
    ("influence-one-layer", lambda w: analyses.count_influence(w.one_layer, w.model, (w.x, w.y)), ValueError, "the atlas has one layer", True),
    ("influence-num-classes", lambda w: analyses.count_influence(w.atlas, w.model, (w.x, w.y), num_classes=3), ValueError, "num_classes=3 but the atlas has 8", True),
    ("influence-self-pair", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block1")]), ValueError, "joins a layer to itself", True),
    ("influence-unknown-pair", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "nope")]), KeyError, "unknown layer 'nope'", True),
    ("influence-reversed", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block2", "block1")], progress=False), ValueError, "no path from 'block2' to 'block1'", False),
    ("influence-no-labels", lambda w: analyses.collect_influence(w.model, w.x, [("block1", "block2")], progress=False), ValueError, "batch 0 has no labels", True),
    ("influence-stride", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block2")], stride=0), ValueError, "stride must be", True),
    ("influence-top-inputs", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block2")], top_inputs=0), ValueError, "top_inputs must be", True),
    ("influence-backend", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block2")], backend="cuda"), ValueError, "backend must be one of", True),
    ("influence-no-pairs", lambda w: analyses.collect_influence(w.model, (w.x, w.y), []), ValueError, "no layer pairs given", True),
    ("influence-pair-str", lambda w: analyses.collect_influence(w.model, (w.x, w.y), ["block1"]), ValueError, "each pair must be", True),
    ("influence-pair-repeat", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block2")] * 2), ValueError, "layer pairs repeat", True),
    ("influence-device", lambda w: analyses.collect_influence(w.model, (w.x, w.y), [("block1", "block2")], device="gpu"), ValueError, "device='gpu' is not a torch device", True),
    ("graphs-no-influence", lambda w: analyses.attribution_graphs(w.atlas, progress=False), KeyError, r"no 'influence' result yet: run atlas.attach\(analyses.count_influence", True),
    ("graph-class", lambda w: analyses.attribution_graph(_with_influence(w), "nope"), KeyError, "unknown class 'nope'", True),
    ("graph-direction", lambda w: analyses.attribution_graph(_with_influence(w), 0, direction="up"), ValueError, "direction must be one of", True),
    ("graph-damping", lambda w: analyses.attribution_graph(_with_influence(w), 0, damping=1.5), ValueError, "damping must be in", True),
    ("graph-mass", lambda w: analyses.attribution_graph(_with_influence(w), 0, mass=0), ValueError, "mass", True),
    ("graph-option", lambda w: analyses.attribution_graphs(_with_influence(w), top_inputs=3, progress=False), TypeError, "unexpected keyword argument 'top_inputs'", True),
    ("graph-layers", lambda w: analyses.attribution_graph(_with_influence(w), 0, layers=["block1", "zz"]), KeyError, r"graph layer\(s\) \['zz'\] are not in the atlas", True),
    ("cluster-graph-no-clusters", lambda w: analyses.cluster_graph(w.atlas, 0), KeyError, "no 'clusters' result yet", True),
    ("cluster-graph-fraction", lambda w: analyses.cluster_graph(_with_clusters(w), 0, top_fraction=0), ValueError, "top_fraction must be in", True),
    ("cluster-graph-class", lambda w: analyses.cluster_graph(_with_clusters(w), "nope"), KeyError, "unknown class 'nope'", True),
    ("classes-unlabelled", lambda w: analyses.embed_classes(w.unlabelled), ValueError, "no class-wise statistics, so classes cannot be embedded", True),
    ("classes-few", lambda w: analyses.embed_classes(atlas_from_aggregation({"a": np.ones((2, 3), np.int64)})), ValueError, "needs at least 3 classes, the atlas has 2", True),
    ("similarity-class", lambda w: analyses.class_similarity(w.atlas, "nope"), KeyError, "unknown class 'nope'", True),
    ("similarity-layer", lambda w: analyses.class_similarity(w.atlas, 0, layers=["zz"]), KeyError, "unknown layer 'zz'", True),
    # -- dissection ---------------------------------------------------------------------------
    ("dissect-method", lambda w: analyses.dissect(w.model, w.concepts, method="2017"), ValueError, "method must be one of", True),
    ("dissect-quantile-zero", lambda w: analyses.dissect(w.model, w.concepts, quantile=0), ValueError, "quantile", True),
    ("dissect-quantile-one", lambda w: analyses.dissect(w.model, w.concepts, quantile=1), ValueError, "quantile", True),
    ("dissect-iou", lambda w: analyses.dissect(w.model, w.concepts, iou_threshold=-1), ValueError, "iou_threshold must be", True),
    ("dissect-batch", lambda w: analyses.dissect(w.model, w.concepts, batch_size=0), ValueError, "batch_size must be a positive integer", True),
    ("dissect-top-n", lambda w: analyses.dissect(w.model, w.concepts, top_n=0), ValueError, "top_n must be a positive integer", True),
    ("dissect-data", lambda w: analyses.dissect(w.model, w.data), TypeError, "data must be a ConceptData", True),
    ("dissect-estimator", lambda w: analyses.dissect(w.model, w.concepts, estimator="median"), ValueError, "estimator must be", True),
    ("dissect-concepts-empty", lambda w: analyses.dissect(w.model, w.concepts, concepts=[]), ValueError, "concepts=", True),
    ("dissect-concepts-unknown", lambda w: analyses.dissect(w.model, w.concepts, concepts=["nope"]), KeyError, "nope", True),
    ("dissect-thresholds", lambda w: analyses.dissect(w.model, w.concepts, ["block1", "block2"], thresholds={"block1": np.zeros(8)}), KeyError, r"thresholds given for \['block1'\] but not for \['block2'\]", True),
    ("dissect-tokens", lambda w: analyses.dissect(_with_module(w, Token()), w.concepts, ["extra"], progress=False), ValueError, "dissection needs spatial maps", False),
    ("gallery-n", lambda w: analyses.dissection_gallery(w.model, w.concepts, w.dissection, n_images=0), ValueError, "n_images must be", True),
    ("unit-gallery-layer", lambda w: analyses.unit_gallery(w.model, w.concepts, w.dissection, "block1:0"), KeyError, "layer 'block1' was not dissected", True),
    ("summary-value", lambda w: analyses.summary_figure(w.dissection, value="units"), ValueError, "value must be", True),
    ("summary-missing", lambda w: analyses.summary_figure(w.atlas), KeyError, "no 'dissection' result yet", True),
    ("summary-type", lambda w: analyses.summary_figure(3), TypeError, "expected a Dissection", True),
    ("cluster-concepts", lambda w: analyses.cluster_concepts(w.atlas.neurons), KeyError, r"lacks the columns \['cluster', 'concept', 'category', 'iou'\]", True),
    ("dissection-other-atlas", lambda w: w.one_layer.attach(w.dissection), ValueError, "dissected layer 'block4' is not in the atlas", True),
    ("exemplar-shape", lambda w: analyses.exemplar_concepts(w.atlas, np.zeros((N, 3), bool), ["a"]), ValueError, r"concept_table must be \(images, 1\)", True),
    ("exemplar-rows", lambda w: analyses.exemplar_concepts(w.atlas, np.zeros((5, 1), bool), ["a"]), ValueError, "concept_table has 5 rows but the atlas saw 24", True),
    ("rotate-layer", lambda w: analyses.rotate_channels(w.model, "nope"), KeyError, "unknown layer 'nope'", True),
    # -- views --------------------------------------------------------------------------------
    ("scatter-color", lambda w: views().ProjectionScatter(w.atlas, color_by="size"), ValueError, "color_by must be", True),
    ("scatter-mode", lambda w: views().ProjectionScatter(w.atlas, mode="class"), ValueError, "mode must be", True),
    ("scatter-filter", lambda w: views().ProjectionScatter(w.atlas, filter="some"), ValueError, "filter must be", True),
    ("sidebar-sort", lambda w: views().ClassSidebar(w.atlas, sort="size"), ValueError, "sort must be", True),
    ("graph-kind", lambda w: views().AttributionGraph(w.atlas, kind="attribution"), ValueError, "kind 'attribution' is not available", True),
    ("gallery-rows", lambda w: views().PatchGallery(w.atlas, max_neurons=0), ValueError, "max_neurons must be", True),
    ("select-unknown", lambda w: setattr(views().PatchGallery(w.atlas), "selection", ["nope:1"]), KeyError, "unknown neuron 'nope:1'", True),
    ("select-cluster", lambda w: setattr(views().PatchGallery(w.atlas), "selection", "cluster:1"), KeyError, "names a cluster but no 'clusters' result", True),
    ("select-index", lambda w: setattr(views().PatchGallery(w.atlas), "selection", [9999]), IndexError, "neuron index 9999 is out of range", True),
    ("select-class", lambda w: setattr(views().PatchGallery(w.atlas), "selected_class", "nope"), KeyError, "unknown class 'nope'", True),
    ("data-image-format", lambda w: views().AtlasData.from_atlas(w.atlas, image_format="jpeg"), ValueError, "image_format must be", True),
    ("html-under-file", lambda w: w.atlas.to_html(_file(w) / "atlas.html"), NotADirectoryError, "is a file, not a folder", True),
    ("html-at-folder", lambda w: w.atlas.to_html(_folder(w)), IsADirectoryError, "it is a folder", True),
]


def views():
    import notebookcarto.views as module

    return module


class Dicty(nn.Module):
    def forward(self, x):
        return {"out": x}


class ConceptPlaygroundPIL(torch.utils.data.Dataset):
    """A data set whose items are PIL images (no ToTensor in its transform)."""

    def __init__(self, w):
        self.data = w.data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return Image.fromarray(self.data.image_uint8(i)), self.data.label(i)


class HWC(torch.utils.data.Dataset):
    """Items as (H, W, 3) uint8 tensors."""

    def __init__(self, w):
        self.w = w

    def __len__(self):
        return N

    def __getitem__(self, i):
        return torch.from_numpy(self.w.data.image_uint8(i))


def _folder(w):
    folder = w.tmp / "precious"
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("keep me")
    return folder


def _file(w):
    file = w.tmp / "a-file"
    file.write_text("x")
    return file


def _garbled(w):
    return w.broken_copy(None, "{not json")


def _rf(w):
    return analyses.receptive_fields(w.model, ["block1"], (3, 32, 32))["block1"]


def _embedding(w):
    return analyses.embed_neurons(w.atlas, epochs=1, progress=False)


def _with_influence(w):
    atlas = Atlas(w.atlas.stats, class_names=w.atlas.class_names)
    counts = {(a, b): np.ones((8, w.atlas.stats.layers[b].channels,
                               w.atlas.stats.layers[a].channels), np.int64)
              for a, b in zip(w.atlas.layers[:-1], w.atlas.layers[1:])}
    atlas.attach(analyses.Influence(counts, "conv", 5))
    return atlas


def _with_clusters(w):
    atlas = Atlas(w.atlas.stats, class_names=w.atlas.class_names)
    labels = np.arange(len(atlas.neuron_ids)) % 4
    atlas.attach(analyses.Clusters(labels, labels, atlas.neuron_ids,
                                   analyses.cluster_table(atlas, labels)))
    return atlas


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield World(tmp_path_factory.mktemp("bad-input"))
    torch.set_num_threads(threads)


def test_the_table_is_large_and_its_ids_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_answered_clearly(world, case):
    _, call, kind, pattern, before = case
    world.batches = 0
    with pytest.raises(kind, match=pattern) as info:
        call(world)
    assert str(info.value).strip(), "the error has no message"
    if before:
        assert world.batches == 0, "the model ran before the error was raised"
