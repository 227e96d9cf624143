"""Does cluster consistency add anything over the kNN vote? Same run, three neighbourhood signals.

One ``action="flag"`` training per seed and setting (the model and data of ``detection.py``); its
final store is scored three ways, differing only in the neighbourhood half of the posterior: the kNN
vote (fld-train's default), the k-means cluster vote (:func:`fld_train.knn.cluster_labels`), and
both averaged. F1 and AUROC against the true noise mask (flagged share on clean labels), mean
over ``--seeds``.

    python benchmarks/cluster_signal.py --dataset digits --noise symmetric:0.2 clustered:0.2 --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import bench_parser, flag_run, mean_rows, start  # a sibling script

from fld_train import knn, scoring
from fld_train.metrics import auroc, precision_recall_f1

SIGNALS = ("kNN", "clusters", "kNN + clusters")


def run_setting(data, spec: str, seed: int) -> dict[str, tuple[float, float, float]]:
    store, labels, mask = flag_run(data, spec, seed)
    votes = knn.neighbour_labels(knn.search(store.embeddings, k=10), labels, 10)
    clusters = knn.cluster_labels(store.embeddings, labels, 10, seed=seed)
    both = votes.average(clusters)
    rows = {}
    for name, neighbours in zip(SIGNALS, (votes, clusters, both)):
        ev = scoring.evaluate(labels, store.model_probs(), neighbours, num_classes=10)
        f1 = precision_recall_f1(ev.flagged, mask)[2] if mask.any() else float("nan")
        rows[name] = (f1, auroc(ev.scores, mask) if mask.any() else float("nan"), float(ev.flagged.mean()))
    return rows


def main() -> None:
    args = bench_parser(__doc__, ["symmetric:0.2"]).parse_args()
    data = start(args)
    print(f"{args.dataset}, mean over seeds {args.seeds}: F1 / AUROC / flagged")
    print("| noise | " + " | ".join(SIGNALS) + " |\n|---|" + "---|" * len(SIGNALS))
    for spec in args.noise:
        rows = mean_rows([run_setting(data, spec, seed) for seed in args.seeds])
        cells = [f"{f1:.3f} / {auc:.3f} / {flagged:.1%}" for f1, auc, flagged in (rows[n] for n in SIGNALS)]
        print(f"| {spec} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
