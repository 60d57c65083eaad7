"""Stage 1 of neuron clustering (MinHash-LSH, union-find) against the exact all-pairs Jaccard and
against the datasketch package, and the embedding's training throughput.

Synthetic top-image sets (``synthetic_top_sets``): N neurons with 100 images each out of a data set
of 50,000 images; half of the neurons come in groups of 5 noisy copies of a base set (a uniform
0-60 % of each copy's images swapped), so pair similarities spread over (0, 1].

* Stage 1 (signatures, banding, union-find, defaults R = 2, B = 100) at N = 1k, 10k, 100k: best of
  ``--rounds`` runs; slope of log(time) against log(N) (linear: 1).
* At N = 10k: the exact all-pairs Jaccard (a sparse product over all pairs); ``exact_ratio`` is
  its time over stage 1's. ``recall``: share of the pairs with J >= 0.5 that share an LSH bucket.
* datasketch (MinHash.bulk with an integer hash, MinHashLSH with the same B and R, then one query
  per neuron and a union-find over the answers, which is what clustering needs) at N = 10k and
  100k; ``speedup_vs_datasketch`` at the largest N. The input lists are built before timing.
* Embedding: skip-gram pairs per second over the co-activation sentences of the 10k sets.

The stage-1 computation runs on CUDA when available (``--device``); datasketch runs on the CPU.
Run from the repo root:  .venv/bin/python benchmarks/bench_cluster.py
Last line: slope=... speedup_vs_datasketch=... recall=... exact_ratio=... (and more figures)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from notebookcarto.analyses.embedding import auto_batch_size, sentences_from_sets, train_sgns
from notebookcarto.analyses.minhash import (collision_table, exact_jaccard_pairs, lsh_clusters,
                                            synthetic_top_sets)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, rounds=1):
    best, out = float("inf"), None
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def datasketch_clusters(sets: np.ndarray, rows: int, bands: int):
    """datasketch MinHash + MinHashLSH, then a query per neuron and union-find over the answers.
    Returns (seconds per phase, answers of the queries)."""
    from datasketch import MinHash, MinHashLSH

    lists = sets.tolist()  # input preparation, not timed
    times = {}
    start = time.perf_counter()
    hashes = MinHash.bulk(lists, num_perm=rows * bands, hashfunc=int)
    times["minhash"] = time.perf_counter() - start
    start = time.perf_counter()
    lsh = MinHashLSH(num_perm=rows * bands, params=(bands, rows))
    with lsh.insertion_session() as session:
        for key, m in enumerate(hashes):
            session.insert(key, m, check_duplication=False)
    times["insert"] = time.perf_counter() - start
    start = time.perf_counter()
    parent = list(range(len(hashes)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    answers = []
    for key, m in enumerate(hashes):
        found = lsh.query(m)
        answers.append(found)
        for other in found:
            a, b = find(key), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    times["query_union"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times, answers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--universe", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--bands", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, r, b = args.device, args.rows, args.bands
    print(f"device={dev} ({torch.cuda.get_device_name() if dev.startswith('cuda') else 'CPU'}), "
          f"threads={torch.get_num_threads()}, R={r}, B={b}, universe={args.universe}")

    data = {n: synthetic_top_sets(n, universe=args.universe, seed=n)[0] for n in args.sizes}
    lsh_clusters(data[args.sizes[0]], r, b, device=dev)  # warm-up: compiles the loops
    stage1 = {}
    for n in args.sizes:
        stage1[n], (labels, sig, valid) = timed(
            lambda: lsh_clusters(data[n], r, b, device=dev), dev, args.rounds)
        print(f"stage 1  N={n:>7,}: {stage1[n]:7.3f} s  ({stage1[n] / n * 1e6:.1f} us/neuron, "
              f"{int(labels.max()) + 1} clusters holding {int((labels >= 0).sum())} neurons)")
    sizes = np.array(args.sizes, dtype=float)
    slope = np.polyfit(np.log(sizes), np.log([stage1[n] for n in args.sizes]), 1)[0]
    print(f"log-log slope of stage-1 time against N: {slope:.3f}")

    mid = 10_000 if 10_000 in data else args.sizes[len(args.sizes) // 2]
    t_exact, pairs = timed(lambda: exact_jaccard_pairs(data[mid], 0.05), "cpu")
    _, (labels, sig, _) = timed(lambda: lsh_clusters(data[mid], r, b, device=dev), dev)
    table = collision_table(sig, pairs, r, b)
    high = table[table.jaccard >= 0.5]
    recall = float(high.collides.mean())
    lab = labels.cpu().numpy()
    same = float((lab[high.i] == lab[high.j]).mean())
    exact_ratio = t_exact / stage1[mid]
    print(f"exact all-pairs Jaccard N={mid:,}: {t_exact:.2f} s = {exact_ratio:.1f}x stage 1; "
          f"{len(high):,} pairs with J >= 0.5: bucket recall {recall:.4f} (S-curve predicts "
          f"{high.expected.mean():.4f}), same-cluster {same:.4f}")

    speedups, ds_recall = {}, None
    for n in [n for n in args.sizes if n >= mid]:
        times, answers = datasketch_clusters(data[n], r, b)
        speedups[n] = times["total"] / stage1[n]
        index_only = (times["minhash"] + times["insert"]) / stage1[n]
        print(f"datasketch N={n:>7,}: minhash {times['minhash']:.2f} s, insert "
              f"{times['insert']:.2f} s, query + union-find {times['query_union']:.2f} s, "
              f"total {times['total']:.2f} s = {speedups[n]:.1f}x ours "
              f"(minhash + insert alone {index_only:.1f}x)")
        if n == mid:
            ds_recall = float(np.mean([int(j) in answers[i] for i, j in zip(high.i, high.j)]))
            print(f"datasketch bucket recall for J >= 0.5 at N={n:,}: {ds_recall:.4f}")
    top = max(speedups) if speedups else None

    members, lengths = sentences_from_sets(torch.from_numpy(data[mid]))
    start = time.perf_counter()
    _, _, history = train_sgns(members, lengths, mid, epochs=1, device=dev, progress=False)
    sync(dev)
    rate = history[0]["pairs"] / (time.perf_counter() - start)
    print(f"embedding N={mid:,}: {history[0]['pairs']:,} pairs in one epoch, {rate:,.0f} pairs/s "
          f"(batches of {auto_batch_size(None, mid)} pairs)")

    print(f"slope={slope:.3f} speedup_vs_datasketch={speedups.get(top, float('nan')):.1f} "
          f"recall={recall:.4f} exact_ratio={exact_ratio:.1f} "
          f"speedup_vs_datasketch_{mid // 1000}k={speedups.get(mid, float('nan')):.1f} "
          f"datasketch_recall={ds_recall if ds_recall is not None else float('nan'):.4f} "
          f"stage1_s_{top // 1000 if top else 0}k={stage1.get(top, float('nan')):.3f} "
          f"embedding_pairs_per_s={rate:.0f} device={dev}")


if __name__ == "__main__":
    main()
