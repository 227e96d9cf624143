"""Which flag rule: confident learning's, or the combined posterior's argmax? Same run, both rules.

One ``action="flag"`` training per setting; from its store, the combined posterior ``q`` (mean softmax
and kNN label distribution, averaged) is judged two ways:

- ``confident learning``: flag when the most probable class the sample is *confidently* in
  (``q_j >= t_j``, ``t_j`` the mean ``q_j`` over samples labelled ``j``) is not its given label;
- ``posterior argmax``: flag when ``argmax q`` is not the given label (fld-train's rule).

    python benchmarks/flag_rules.py --dataset digits --noise symmetric:0.2 instance:0.3 --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import bench_parser, flag_run, start  # sibling scripts

from fld_train import knn
from fld_train.confident import confident_labels
from fld_train.metrics import precision_recall_f1


def run_setting(data, spec: str, seed: int) -> dict[str, tuple[float, float, float, float]]:
    """``rule -> (flagged share, precision, recall, F1)`` for one flag-mode run."""
    store, labels, mask = flag_run(data, spec, seed)
    dist = knn.neighbour_label_distribution(knn.search(store.embeddings, k=10), labels, 10)
    q = 0.5 * store.model_probs().to_dense(10) + 0.5 * dist  # C = 10: dense is fine here
    confident = confident_labels(q, labels, seen=store.seen)
    rules = {"confident learning": (confident >= 0) & (confident != labels),
             "posterior argmax": q.argmax(axis=1) != labels}
    return {name: (float(flagged.mean()), *precision_recall_f1(flagged, mask)) for name, flagged in rules.items()}


def main() -> None:
    parser = bench_parser(__doc__, ["symmetric:0.2", "instance:0.3"], seeds=False)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = start(args)
    print(f"{args.dataset}, seed {args.seed}")
    print("| noise | rule | flagged | precision | recall | F1 |\n|---|---|---|---|---|---|")
    for spec in args.noise:
        for name, (share, p, r, f1) in run_setting(data, spec, args.seed).items():
            print(f"| {spec} | {name} | {share:.1%} | {p:.3f} | {r:.3f} | {f1:.3f} |", flush=True)


if __name__ == "__main__":
    main()
