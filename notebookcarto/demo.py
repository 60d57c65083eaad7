"""The built-in demo: map the concepts of a small CNN trained on the concept playground."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from . import analyses
from .analyses.concepts import ExemplarConcepts
from .atlas import Atlas
from .capture import mappable_layers
from .datasets.concept_data import PlaygroundConcepts
from .datasets.playground import ConceptPlayground
from .models.playground_cnn import evaluate, load_or_train

__all__ = ["run_demo", "summary"]

FULL = dict(train=5000, test=4000, epochs=15, dissect=500)
QUICK = dict(train=1200, test=400, epochs=1, dissect=200)


def run_demo(out="carto-demo", *, device: str = "cpu", quick: bool = False, size: int = 32,
             top_n: int = 100, progress: bool = True, echo=print) -> Atlas:
    """Train (or reuse) the playground CNN, map its blocks over held-out playground images
    (statistics, example patches, clusters, embedding, influence and attribution graphs, class
    embedding, dissection), save the atlas to ``out/atlas`` and the linked views to
    ``out/atlas.html``, and print a summary. ``quick`` is a small run for tests."""
    start = time.perf_counter()
    plan = QUICK if quick else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = ConceptPlayground(n=plan["train"], size=size, seed=0)
    test = ConceptPlayground(n=plan["test"], size=size, seed=1)
    checkpoint = out / ("playground_cnn_quick.pt" if quick else "playground_cnn.pt")
    model, _ = load_or_train(checkpoint, train_set=train, epochs=plan["epochs"], device=device,
                             progress=progress)
    model.to(device)
    images, labels = test.tensors(progress=progress)
    data = (images, labels)  # the held-out images as tensors: read in order, by id
    atlas = Atlas.build(model, data, mappable_layers(model), class_names=test.classes,
                        top_n=min(top_n, len(test)), batch_size=256, device=device,
                        progress=progress,
                        data_info={"name": "concept playground", "n": len(test), "size": size,
                                   "seed": 1})
    concepts = atlas.attach(analyses.exemplar_concepts(
        atlas, test.concept_table(progress=progress), test.concept_names))
    step = _Steps(echo, progress)
    with step("example patches"):
        atlas.attach(analyses.example_patches(atlas, model, data, n_patches=9,
                                              progress=progress))
    with step("neuron clusters"):
        # the defaults adapt to the data: a threshold above the background similarity of
        # random neuron pairs, Leiden instead of union-find (no chaining)
        clusters = atlas.attach(analyses.cluster_neurons(atlas, model, data, progress=progress))
    with step("neuron embedding"):
        atlas.attach(analyses.embed_neurons(atlas, progress=progress))
    with step("influence and attribution graphs"):
        atlas.attach(analyses.count_influence(atlas, model, data, progress=progress))
        atlas.attach(analyses.attribution_graphs(atlas, progress=progress))
        atlas.attach(analyses.cluster_graphs(atlas))
        atlas.attach(analyses.embed_classes(atlas))
    with step("network dissection"):
        concept_data = PlaygroundConcepts(ConceptPlayground(n=plan["dissect"], size=size,
                                                            seed=2))
        result = atlas.attach(analyses.dissect(model, concept_data, atlas.layers,
                                               progress=progress))
        atlas.attach(analyses.dissection_gallery(model, concept_data, result, n_images=10))
    atlas.save(out / "atlas")
    with step("HTML export"):
        html = atlas.to_html(out / "atlas.html", title="notebookcarto demo")
    accuracy = evaluate(model, (images, labels), device=device)
    echo(summary(atlas, concepts, accuracy))
    echo(f"{clusters.n_clusters} neuron clusters "
         f"(Jaccard threshold {clusters.params['threshold']:.2f}); "
         f"{int((atlas.neurons['concept'] != '').sum())} dissection detectors")
    echo(f"atlas saved to {out / 'atlas'}, views to {html}, "
         f"in {time.perf_counter() - start:.0f} s")
    return atlas


class _Steps:
    """Times the demo's steps and reports each one."""

    def __init__(self, echo, progress):
        self.echo, self.progress = echo, progress

    @contextlib.contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        yield
        if self.progress:
            self.echo(f"{name}: {time.perf_counter() - start:.1f} s")


def summary(atlas: Atlas, concepts: ExemplarConcepts, accuracy: float,
            per_class: int = 2) -> str:
    """A short text report: accuracy, layers, and each class's top neurons in the deepest layer
    with the concepts their exemplars contain most above their base rate in the data."""
    lines = [f"model accuracy on {atlas.stats.n_images} held-out images: {accuracy:.1%}",
             "layers: " + ", ".join(f"{name} ({layer.channels} ch, map {atlas.stats.shapes[name]})"
                                    for name, layer in atlas.stats.layers.items()),
             f"neurons: {len(atlas.neuron_ids)}", "top neurons per class (deepest layer):"]
    deepest = atlas.layers[-1]
    for k, name in enumerate(atlas.class_names):
        lines.append(f"  {name}")
        for neuron, row in atlas.top_neurons(k, deepest, n=per_class).iterrows():
            found = concepts.describe(neuron)
            text = ", ".join(f"{c} {s:.0%}" for c, s in found) or "no dominant concept"
            lines.append(f"    {neuron:>10}  A={row['count']:<5d} exemplars: {text}")
    return "\n".join(lines)
