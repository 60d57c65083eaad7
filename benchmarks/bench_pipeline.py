"""The README's whole pipeline on a real network: time, memory and the quality of the maps.

On the CIFAR ResNet-20 over the 10,000 CIFAR-10 test images of ../shared (the playground CNN
over 4,000 playground images when ../shared is absent): ``Atlas.build``, ``example_patches``,
``cluster_neurons``, ``embed_neurons``, ``count_influence``, ``attribution_graphs``,
``cluster_graphs`` and ``embed_classes``, each with its defaults, as a new user would run them.
``--depth 56`` maps a randomly initialised CIFAR ResNet-56 instead (for size and memory; its
clusters mean nothing).

Per step: seconds and peak resident memory (sampled every 10 ms). Quality:

* ``largest_cluster_share``: the largest cluster's share of all neurons; ``clustered_share``:
  the share of neurons in some cluster.
* ``purity_ratio``: the mean majority-class share of the clusters' pooled exemplars (the union
  of the members' top images), over that of random neuron groups of the same sizes and layers
  (mean over 100 shuffles).
* ``stream_share``: the mean share of a cluster's members that lie on its most common residual
  stream (same stage, same channel; the stage read from the layer name, ``layer2.*``).
* ``graph_nodes_max`` / ``graph_edges_max`` (and ``graph_nodes_min``): nodes and edges of the
  default view of every class's attribution graph.
* ``a_prefix_min``: the smallest mean prefix length of Summit's A over the layers.

Goals on 2 CPU cores: total_s <= 180, peak_mb <= 3000, largest cluster <= 10 % of the neurons,
purity_ratio >= 1.3, stream_share <= 0.6, every default graph 20-100 nodes and <= 400 edges,
a_prefix_min >= 3.

Run from the repo root:  .venv/bin/python benchmarks/bench_pipeline.py
Last line: total_s=... peak_mb=... largest_cluster_share=... clustered_share=... purity_ratio=...
stream_share=... graph_nodes_max=... graph_edges_max=... a_prefix_min=...
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import contextmanager

import numpy as np
import torch

from timing import shared_folder

from notebookcarto import Atlas, analyses


class PeakMemory:
    """Resident memory of this process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def reset(self):
        self.peak = self.now()

    def stop(self):
        self._stop.set()
        self._thread.join()


def load(depth: int | None):
    """(model, data set, labels of every image, description)."""
    folder = shared_folder()
    if folder is None:
        from notebookcarto.datasets import ConceptPlayground
        from notebookcarto.models import load_or_train

        train, test = ConceptPlayground(n=5000, seed=0), ConceptPlayground(n=4000, seed=1)
        cache = os.path.join(tempfile.gettempdir(), "notebookcarto-bench", "playground_cnn.pt")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        model, _ = load_or_train(cache, train_set=train, progress=False)
        labels = np.array([test.label(i) for i in range(len(test))])
        return model.eval(), test, labels, "playground CNN, 4,000 playground images"
    from notebookcarto.datasets import cifar10_test
    from notebookcarto.models import load_resnet20
    from notebookcarto.models.resnet_cifar import CifarResNet

    data = cifar10_test(folder / "data" / "cifar10-test")
    labels = np.array([label for _, label in data.samples])
    if depth:
        torch.manual_seed(0)
        return (CifarResNet(depth).eval(), data, labels,
                f"CIFAR ResNet-{depth} (random init), 10,000 CIFAR-10 test images")
    model = load_resnet20(folder / "models" / "resnet20-cifar10.th").eval()
    return model, data, labels, "CIFAR ResNet-20, 10,000 CIFAR-10 test images"


def purity(groups, sets, labels) -> float:
    """Mean majority-class share of the pooled exemplars of each group (neuron indices)."""
    shares = []
    for members in groups:
        pooled = np.unique(sets[members])
        pooled = pooled[pooled >= 0]
        shares.append(np.bincount(labels[pooled]).max() / len(pooled))
    return float(np.mean(shares))


def purity_ratio(groups, sets, labels, layer_of, shuffles: int = 100, seed: int = 0) -> float:
    """``purity`` of the groups over that of random groups of the same sizes and layers."""
    rng = np.random.default_rng(seed)
    by_layer = {layer: np.flatnonzero(layer_of == layer) for layer in np.unique(layer_of)}
    random = []
    for _ in range(shuffles):
        drawn = []
        for members in groups:
            layers, counts = np.unique(layer_of[members], return_counts=True)
            drawn.append(np.concatenate([rng.choice(by_layer[layer], count, replace=False)
                                         for layer, count in zip(layers, counts)]))
        random.append(purity(drawn, sets, labels))
    return purity(groups, sets, labels) / float(np.mean(random))


def stream_share(groups, neuron_ids) -> float:
    """Mean share of a group's members on its most common (stage, channel) stream."""
    keys = np.array([f"{n.rpartition(':')[0].split('.')[0]}:{n.rpartition(':')[2]}"
                     for n in neuron_ids])
    return float(np.mean([np.unique(keys[g], return_counts=True)[1].max() / len(g)
                          for g in groups]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=None,
                        help="map a random CIFAR ResNet of this depth (e.g. 56) instead")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model, data, labels, what = load(args.depth)
    model.to(args.device)
    memory = PeakMemory()
    steps, results = [], {}
    print(f"{what}; {torch.get_num_threads()} torch threads, device {args.device}")

    @contextmanager
    def step(name):
        memory.reset()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        steps.append((name, seconds, memory.peak / 2 ** 20))
        print(f"step={name} s={seconds:.1f} peak_mb={memory.peak / 2 ** 20:.0f}", flush=True)

    total = time.perf_counter()
    classes = getattr(data, "classes", None)
    with step("build"):
        atlas = Atlas.build(model, data, class_names=classes, progress=False)
    with step("example_patches"):
        atlas.attach(analyses.example_patches(atlas, model, data, progress=False))
    with step("cluster_neurons"):
        clusters = atlas.attach(analyses.cluster_neurons(atlas, model, data, progress=False))
    with step("embed_neurons"):
        atlas.attach(analyses.embed_neurons(atlas, progress=False))
    with step("count_influence"):
        atlas.attach(analyses.count_influence(atlas, model, data, progress=False))
    with step("attribution_graphs"):
        graphs = atlas.attach(analyses.attribution_graphs(atlas, progress=False))
    with step("cluster_graphs"):
        cluster_graphs = atlas.attach(analyses.cluster_graphs(atlas))
    with step("embed_classes"):
        embedding = atlas.attach(analyses.embed_classes(atlas))
    total = time.perf_counter() - total
    memory.stop()

    print(atlas)
    ids = atlas.neuron_ids
    layer_of = np.array([n.rpartition(":")[0] for n in ids])
    sets = analyses.clustering.top_sets(atlas).numpy()
    lab = clusters.labels
    groups = [np.flatnonzero(lab == c) for c in range(clusters.n_clusters)]
    sizes = np.array([len(g) for g in groups]) if groups else np.zeros(1, int)
    results["largest_cluster_share"] = sizes.max() / len(ids)
    results["clustered_share"] = (lab >= 0).mean()
    results["purity_ratio"] = purity_ratio(groups, sets, labels, layer_of) if groups else 0.0
    results["stream_share"] = stream_share(groups, ids) if groups else 0.0
    print(f"clusters: {clusters!r}; threshold {clusters.params['threshold']:.3f} (background "
          f"fence {clusters.params['background_fence']:.3f}), R={clusters.params['rows']}, "
          f"B={clusters.params['bands']}, {clusters.params['candidate_pairs']} candidate pairs, "
          f"{clusters.params['edges']} edges")

    def view(graph):
        nodes = [n for n in graph["nodes"] if n.get("shown", True)]
        return len(nodes), sum(e.get("shown", True) for e in graph["edges"])

    sizes = np.array([view(g) for g in graphs.graphs.values()])
    all_nodes = [len(g["nodes"]) for g in graphs.graphs.values()]
    cluster_sizes = np.array([view(g) for g in cluster_graphs.graphs.values()])
    print(f"attribution graphs over {len(next(iter(graphs.graphs.values()))['layers'])} layers: "
          f"default view {sizes[:, 0].min()}-{sizes[:, 0].max()} nodes, up to "
          f"{sizes[:, 1].max()} edges; kept in the data {min(all_nodes)}-{max(all_nodes)} nodes")
    print(f"cluster graphs: default view {cluster_sizes[:, 0].min()}-{cluster_sizes[:, 0].max()} "
          f"nodes, up to {cluster_sizes[:, 1].max()} edges")
    results["graph_nodes_max"] = int(sizes[:, 0].max())
    results["graph_edges_max"] = int(sizes[:, 1].max())
    results["graph_nodes_min"] = int(sizes[:, 0].min())
    results["a_prefix_min"] = float(atlas.summary()["mean_prefix"].min())
    names = atlas.class_names
    for cls in ("cat", "automobile"):
        if cls in names:
            top = embedding.similar(atlas, cls).drop(cls).head(3)
            print(f"most similar to {cls} (layers {embedding.similarity_layers}): "
                  + ", ".join(f"{c} {v:.2f}" for c, v in top.items()))
    peak = max(p for _, _, p in steps)
    print(f"graph_nodes_min={results['graph_nodes_min']}")
    print(f"total_s={total:.1f} peak_mb={peak:.0f} "
          f"largest_cluster_share={results['largest_cluster_share']:.3f} "
          f"clustered_share={results['clustered_share']:.3f} "
          f"purity_ratio={results['purity_ratio']:.2f} "
          f"stream_share={results['stream_share']:.2f} "
          f"graph_nodes_max={results['graph_nodes_max']} "
          f"graph_edges_max={results['graph_edges_max']} "
          f"a_prefix_min={results['a_prefix_min']:.2f}")


if __name__ == "__main__":
    main()
