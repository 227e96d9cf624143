"""Time and memory of one full label check (kNN + scoring) at N = 10k, 100k, 1M.

Synthetic, clustered data: C classes (1,000 by default), each spread along its own 16-dimensional
subspace of R^d (d = 128) plus small isotropic noise, as learned embeddings are (low intrinsic
dimension); 10% of the labels flipped at random; a model summary (top classes with probabilities)
per sample. Each size runs in its own process, so the peak resident memory is that size's.

Per size: the store's bytes (and the estimate for ImageNet, N = 1.28M), the kNN search alone, the
full check (:func:`fld_train.check.run_check`: kNN + sparse scoring), recall of the true 10 nearest
neighbours on 1,000 random queries (when the index is approximate) and the share of those queries
whose 10-neighbour vote (most common label) is the exact neighbours' vote, and scikit-learn's
``NearestNeighbors`` (cleanlab's kNN backend, cosine metric) on the same data where it finishes
(``--sklearn-max``), as a ratio. ``--cluster-votes`` also times the full check with the k-means
cluster vote (``run_check(cluster_votes=True)``); ``--auto-k`` times the check with ``k="auto"`` (the
default: the neighbour count chosen on a sample first, :func:`fld_train.knn.choose_k`) and shows
the ``k`` chosen. Run it alone on the machine.

    python benchmarks/knn_scale.py --sizes 10000 100000 1000000 --threads 2
    python benchmarks/knn_scale.py --sizes 10000 100000 --sklearn-max 0 --cluster-votes
    python benchmarks/knn_scale.py --sizes 10000 100000 1000000 --sklearn-max 0 --auto-k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _make_store(n: int, classes: int, dim: int, seed: int):
    from fld_train.store import Observations, SampleStore

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    bases = (rng.normal(size=(classes, 16, dim)) * 0.25).astype(np.float32)
    truth = rng.integers(0, classes, n)
    given = truth.copy()
    flip = rng.random(n) < 0.1
    given[flip] = (truth[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
    store = SampleStore(n, classes)
    store.set_given_labels(given)
    k = store.top_k
    for start in range(0, n, 50_000):
        stop = min(start + 50_000, n)
        b, t = stop - start, truth[start:stop]
        emb = centres[t] + np.einsum("br,brd->bd", rng.normal(size=(b, 16)).astype(np.float32), bases[t])
        emb += 0.05 * rng.normal(size=(b, dim)).astype(np.float32)
        top = np.concatenate([t[:, None], rng.integers(0, classes, (b, k - 1))], axis=1)
        p_true = rng.uniform(0.3, 0.9, b)
        probs = np.concatenate([p_true[:, None], np.tile((1 - p_true)[:, None] / k, k - 1)], axis=1)
        g = given[start:stop]
        store.record(Observations(
            indices=np.arange(start, stop), labels=g, given_prob=np.where(g == t, p_true, 0.0),
            margin=np.zeros(b), correct=g == t, top_classes=top, top_probs=probs, embeddings=emb,
            finite=np.ones(b, bool)), epoch=0)
    return store, flip


def _top_vote(labels: np.ndarray, neighbours: np.ndarray, classes: int) -> np.ndarray:
    """Each row's most common neighbour label (ties: the smallest class)."""
    counts = np.zeros((neighbours.shape[0], classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(neighbours.shape[0]), neighbours.shape[1]), labels[neighbours].ravel()), 1)
    return counts.argmax(axis=1)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_size(n: int, classes: int, dim: int, sklearn_max: int, seed: int, cluster_votes: bool = False,
             auto_k: bool = False) -> dict:
    import faiss

    from fld_train import knn
    from fld_train.check import run_check
    from fld_train.store import SampleStore

    store, flip = _make_store(n, classes, dim, seed)
    out = {"n": n, "store_mb": store.nbytes / 1e6, "rss_before_check_mb": _rss_mb(),
           "imagenet_store_mb": SampleStore.estimate_nbytes(1_281_167, 1000, dim) / 1e6}
    t = time.perf_counter()
    neighbours = knn.search(store.embeddings, k=10)
    out["knn_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ev = run_check(store, k=10)
    out["check_s"] = time.perf_counter() - t
    if cluster_votes:
        t = time.perf_counter()
        run_check(store, k=10, cluster_votes=True)
        out["cluster_check_s"] = time.perf_counter() - t
        out["clusters"] = knn.default_clusters(n, classes)
    if auto_k:
        t = time.perf_counter()
        out["auto_k"] = run_check(store).knn_k
        out["auto_check_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = _rss_mb()
    out["index"] = "exact" if n <= knn.EXACT_SEARCH_MAX else "ivf"
    out["flag_f1"] = float(2 * (ev.flagged & flip).sum() / (ev.flagged.sum() + flip.sum()))
    rng = np.random.default_rng(seed + 1)
    queries = rng.choice(n, size=min(n, 1000), replace=False)
    if out["index"] == "ivf":
        x = np.empty((n, dim), dtype=np.float32)
        for s in range(0, n, 100_000):
            x[s:s + 100_000] = knn._normalised(store.embeddings, s, min(s + 100_000, n))
        _, truth = faiss.knn(x[queries], x, 11, metric=faiss.METRIC_INNER_PRODUCT)
        exact = np.stack([tr[tr != q][:10] for q, tr in zip(queries, truth)])
        found = neighbours.indices[queries]
        out["recall_at_10"] = float(np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found)]))
        out["vote_agreement"] = float(np.mean(_top_vote(store.given_labels, exact, classes)
                                              == _top_vote(store.given_labels, found, classes)))
        del x
    if n <= sklearn_max:
        from sklearn.neighbors import NearestNeighbors

        x = store.embeddings.astype(np.float32)
        t = time.perf_counter()
        NearestNeighbors(n_neighbors=11, metric="cosine").fit(x).kneighbors(x)
        out["sklearn_s"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sklearn-max", type=int, default=100_000,
                        help="run scikit-learn's NearestNeighbors up to this N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cluster-votes", action="store_true", help="also time the check with the cluster vote")
    parser.add_argument("--auto-k", action="store_true", help='also time the check with k="auto"')
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.classes, args.dim, args.sklearn_max, args.seed, args.cluster_votes,
                                  args.auto_k)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    rows = []
    for n in args.sizes:  # one process per size, one after the other
        cmd = [sys.executable, __file__, "--one", str(n), "--classes", str(args.classes), "--dim",
               str(args.dim), "--sklearn-max", str(args.sklearn_max), "--seed", str(args.seed)]
        cmd += ["--cluster-votes"] if args.cluster_votes else []
        cmd += ["--auto-k"] if args.auto_k else []
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"\nd={args.dim}, C={args.classes}, {args.threads} threads, k=10\n")
    clusters, auto = args.cluster_votes, args.auto_k
    print("| N | index | kNN s | full check s |" + (" clusters | check with cluster votes s |" if clusters else "")
          + (' check with k="auto" s | k chosen |' if auto else "")
          + " recall@10 | vote = exact | sklearn s | sklearn / ours (kNN) | store MB | peak RSS MB |")
    print("|---|---|---|---|" + ("---|---|" if clusters else "") + ("---|---|" if auto else "") + "---|---|---|---|---|---|")
    for r in rows:
        sk, recall = r.get("sklearn_s"), r.get("recall_at_10")
        sk_cells = ("-", "-") if sk is None else (f"{sk:.1f}", f"{sk / r['knn_s']:.1f}x")
        recall_cell = "exact | 1.000" if recall is None else f"{recall:.3f} | {r['vote_agreement']:.3f}"
        cluster_cells = f"{r['clusters']:,} | {r['cluster_check_s']:.1f} | " if clusters else ""
        cluster_cells += f"{r['auto_check_s']:.1f} | {r['auto_k']} | " if auto else ""
        print(f"| {r['n']:,} | {r['index']} | {r['knn_s']:.1f} | {r['check_s']:.1f} | {cluster_cells}{recall_cell} | "
              f"{sk_cells[0]} | {sk_cells[1]} | {r['store_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    print(f"\nstore for N = 1,281,167, C = 1,000, d = {args.dim}: {rows[0]['imagenet_store_mb']:.0f} MB (computed)")


if __name__ == "__main__":
    main()
